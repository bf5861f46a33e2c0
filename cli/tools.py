"""``demo``, ``bench`` and ``backends``: try the tool, time it, see what it can run on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ivy_gpu.cli.common import (
    BACKEND,
    DEBUG,
    QUIET,
    Backend,
    compile_notice,
    console,
    fail,
    progress,
)


def demo(
    output: Path = typer.Option(Path("demo_output"), "--output", "-o", help="Work folder."),
    backend: Backend = BACKEND,
    seed: int = typer.Option(2026, help="Seed of the generated site."),
    quiet: bool = QUIET,
    debug: bool = DEBUG,
) -> None:
    """Generate a synthetic site and video, process it, print measured vs true discharge."""
    from ivy_gpu.pipeline.process import process_video
    from ivy_gpu.synthetic.sites import SiteSpec, make_site

    spec = SiteSpec(
        width_px=1280, height_px=720, duration_s=5.0, flow_angle_deg=12.0, u_max=0.9, seed=seed
    )
    console.print(f"generating a synthetic site in {output} (1280x720, 5 s at 30 fps) ...")
    truth = make_site(output, spec)
    from ivy_gpu.engines.backends import resolve_backend

    try:
        compile_notice(resolve_backend(Backend(backend).value), quiet)
    except ValueError as exc:
        fail(exc, debug)
    with progress(quiet) as bar:
        task = bar.add_task("river.mp4", total=1.0, msg="")

        def on_stage(stage: str, fraction: float, msg: str) -> None:
            bar.update(task, completed=fraction, description=f"river.mp4 [{stage}]", msg=msg)

        try:
            r = process_video(
                output / "site.ivy",
                output / truth["video"],
                truth["wse_m"],
                output / "results",
                spec.alpha,
                backend=Backend(backend).value,
                progress=on_stage,
            )
        except ValueError as exc:
            fail(exc, debug)
    if not r.success:
        fail(RuntimeError(f"demo video failed at {r.error_stage}: {r.error_message}"), debug, 1)
    table = Table(title="ivy_gpu demo: synthetic site with known discharge")
    for col in ("", "measured", "true", "error %"):
        table.add_column(col, justify="right")
    for label, meas, true in (
        ("discharge (m³/s)", r.total_discharge, truth["discharge_m3s"]),
        ("area (m²)", r.total_area, truth["area_m2"]),
    ):
        table.add_row(label, f"{meas:.4f}", f"{true:.4f}", f"{100 * (meas / true - 1):+.2f}")
    console.print(table)
    unc = r.discharge_uncertainty
    console.print(
        f"backend {r.backend}; {r.num_frames} frames; U95 {unc['u95']:.3f} "
        f"({r.quality_rating}; ISO 748 {unc['iso_u95']:.3f}, time {unc['time_u95']:.3f}, "
        f"IVE {unc['ive_u95']:.3f}); stages (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in r.stage_seconds.items()),
        highlight=False,
    )
    console.print(f"results in {output / 'results' / 'river'}", highlight=False)
    from ivy_gpu.synthetic.sites import write_demo_batch

    write_demo_batch(output, truth)
    console.print(
        f"next: ivy-gpu batch {output / 'site.ivy'} {output / 'batch.csv'} -o "
        f"{output / 'batch'} --gauge {output / 'gauge.csv'} --tz=-05:00  (writes report.html)",
        highlight=False,
    )


def bench(
    quick: bool = typer.Option(False, help="Small workloads only (a smoke run)."),
    output: Path = typer.Option(Path("bench_output"), help="Folder for the JSON and Markdown."),
    pipeline: bool = typer.Option(False, help="Also run the end-to-end video benchmark."),
    batch: bool = typer.Option(
        False, "--batch", help="Only the steady-state batch: clips per hour, x decoding."
    ),
    videos: int = typer.Option(4, "--videos", help="Clips timed after the first (--batch)."),
    backend: list[str] = typer.Option(
        None, "--backend", help="Backends to time (--batch; default numba and the GPU's)."
    ),
    decoders: list[int] = typer.Option(
        None, "--decoders", help="Videos decoded at once, each a case (--batch; default 1)."
    ),
) -> None:
    """Run the benchmark suite on generated workloads and write a table.

    --batch runs N+1 generated 1080p 10 s clips through the real batch path (section and
    575-node grid, figures on and off) and writes bench_output/batch_bench.md.
    """
    if batch:
        from ivy_gpu.benchmarks import batch_bench

        if videos < 1:
            fail(ValueError(f"--videos: at least 1, not {videos}"), False)
        if any(d < 1 for d in decoders or ()):
            fail(ValueError(f"--decoders: at least 1 each, not {list(decoders)}"), False)
        depth = tuple(decoders or (1,))
        if quick:
            rows = batch_bench.run(videos, 640, 360, 2.0, backend or None, decoders=depth)
        else:
            rows = batch_bench.run(videos, backend_names=backend or None, decoders=depth)
        text = batch_bench.markdown(rows)
        output.mkdir(parents=True, exist_ok=True)
        (output / "batch_bench.md").write_text(text)
        console.print(text)
        return
    from ivy_gpu.benchmarks.suite import main as run

    console.print(run(quick=quick, out_dir=output, pipeline=pipeline))


def backends() -> None:
    """List the compute backends and whether each is usable here."""
    from ivy_gpu.engines.backends import ENGINES, resolve_backend

    for name, (_, check) in ENGINES.items():
        usable, why = check()
        state = "usable" if usable else "unavailable"
        console.print(f"{name:6s} {state}: {escape(why)}", highlight=False)
    console.print(f"auto -> {resolve_backend('auto')}")
    from ivy_gpu import config
    from ivy_gpu.frames import nvdec

    nvc, why = nvdec.binding()
    said = f"NVDEC (PyNvVideoCodec {getattr(nvc, '__version__', '?')})" if nvc else f"PyAV: {why}"
    try:
        if config.video_decoder() == "pyav":
            said = "PyAV (IVY_GPU_DECODER=pyav)"
    except ValueError as exc:  # a bad IVY_GPU_DECODER: said here, as a video would say it
        said = str(exc)
    console.print(f"decoder for the GPU engine: {escape(said)}", highlight=False)
