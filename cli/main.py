"""The ``ivy-gpu`` command line (also installed as ``ivytools-batch``).

Thin over the library: commands parse arguments, call ``ivy_gpu`` and report.
Exit codes: 0 all succeeded, 1 some video failed, 2 bad usage or unreadable
inputs (the scaffold, the batch CSV, a video named on the command line). Errors
are one line naming the file; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="GPU-accelerated STIV and discharge from river videos.",
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _backend_choices() -> type[Enum]:
    from ivy_gpu.engines.backends import BACKENDS

    return Enum("Backend", {n: n for n in ("auto", *BACKENDS)}, type=str)


#: ``--backend`` choices: ``auto`` and every engine of the registry.
Backend = _backend_choices()


class Method(str, Enum):
    """``--method`` choices."""

    acf = "acf"
    gradient = "gradient"


class Units(str, Enum):
    """``--units`` choices for WSE inputs."""

    display = "display"
    si = "si"
    english = "english"


UNITS = typer.Option(
    Units.display,
    "--units",
    help="Units of WSE inputs (--wse, the batch CSV): the scaffold's display units, or si/english.",
)


def _units(cfg, units: Units):
    """The unit system of WSE inputs (``display`` = the scaffold's)."""
    from ivy_gpu.units import unit_system

    name = {"si": "Metric", "english": "English"}.get(Units(units).value, cfg.display_units)
    return unit_system(name)


class Interpolation(str, Enum):
    """``--interpolation`` choices."""

    bilinear = "bilinear"
    nearest = "nearest"


BACKEND = typer.Option(
    Backend.auto, "--backend", "-b", help="Compute backend (auto: the GPU when one is usable)."
)
METHOD = typer.Option(None, "--method", help="STIV method (default: the scaffold's, else acf).")
INTERPOLATION = typer.Option(
    None, "--interpolation", help="Sampling along the search lines (nearest is IVyTools' own)."
)
REFINE = typer.Option(None, "--refine/--no-refine", help="Sub-step angle refinement (default: on).")


class Compat(str, Enum):
    """``--compat`` choices."""

    none = "none"
    ivytools = "ivytools"


COMPAT = typer.Option(
    Compat.none,
    "--compat",
    help="ivytools: STIV sampled exactly as the IVyTools python port (its search lines, "
    "nearest sampling, no refinement); everything else stays corrected.",
)


class Stabilize(str, Enum):
    """``--stabilize`` choices."""

    auto = "auto"
    on = "on"
    off = "off"


STABILIZE = typer.Option(
    None,
    "--stabilize",
    help="Camera-motion correction: auto (correct frames that moved), on, off (only warn). "
    "Default: on when the scaffold asks for it, else auto.",
)
MIN_VALID = typer.Option(
    0.5,
    "--min-valid-fraction",
    help="Fail a video when fewer nodes than this fraction give a valid, unflagged velocity.",
)
STRIDE = typer.Option(
    None,
    "--stride/--no-stride",
    help="Re-measure slow nodes at k frames per step (default: on; off with --compat ivytools).",
)
D_RHO = typer.Option(None, "--d-rho", help="ACF ray step, lags (default 0.5).")
D_THETA = typer.Option(None, "--d-theta", help="ACF ray-angle step, degrees (default 0.5).")
FIGURES = typer.Option(
    True,
    "--figures/--no-figures",
    help="Draw each video's PNG figures; --no-figures writes the tables and results.json only "
    "(faster on large batches).",
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars; log errors only.")
JSON = typer.Option(
    False, "--json", help="One JSON document on stdout instead of text (implies --quiet)."
)


def _quiet(quiet: bool, as_json: bool = False) -> bool:
    """Apply --quiet / --json to the log level; True when progress bars are off."""
    from ivy_gpu.log import configure

    if quiet or as_json:
        configure(quiet=True)
    return quiet or as_json


def _print_json(data: object) -> None:
    from ivy_gpu.pipeline.outputs import json_text

    sys.stdout.write(json_text(data) + "\n")


DEBUG = typer.Option(False, "--debug", help="Show tracebacks.")


def _version(value: bool) -> None:
    if value:
        from ivy_gpu import __version__

        console.print(f"ivy-gpu {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="Log to stderr: -v progress, -vv details."
    ),
) -> None:
    """GPU-accelerated STIV and discharge from river videos."""
    import warnings

    from ivy_gpu.log import IvyGpuWarning, configure

    configure(verbose)
    warnings.filterwarnings("ignore", category=IvyGpuWarning)  # printed by each command


def _fail(exc: Exception, debug: bool, code: int = 2) -> None:
    if debug:  # the traceback, and still the documented exit code
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _engine_and_stiv(backend: Backend, cfg, debug: bool, **overrides):
    """Resolve the backend and the STIV settings before any decoding (exit 2 if unusable)."""
    from ivy_gpu.engines.backends import resolve_backend
    from ivy_gpu.pipeline.process import stiv_params_for

    plain = {k: (v.value if isinstance(v, Enum) else v) for k, v in overrides.items()}
    try:
        return resolve_backend(Backend(backend).value), stiv_params_for(cfg, plain)
    except ValueError as exc:
        _fail(exc, debug)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[msg]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )


def _load(scaffold: Path, debug: bool):
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    try:
        return load_scaffold(scaffold)
    except ValueError as exc:
        _fail(exc, debug)


def _result_line(r, display_units: str = "Metric") -> str:
    from ivy_gpu.units import unit_system

    name = escape(r.video_path.name)
    if r.success:
        u = unit_system(display_units)
        q = f"Q = {r.total_discharge:.4f} m³/s"
        a = f"A = {r.total_area:.4f} m²"
        if u.name == "English":
            q = f"Q = {r.total_discharge * u.discharge:.3f} cfs ({r.total_discharge:.4f} m³/s)"
            a = f"A = {r.total_area * u.area:.3f} ft² ({r.total_area:.4f} m²)"
        return (
            f"[green]completed[/green] {name}: {q}, {a}, {r.num_frames} frames, "
            f"{r.processing_time_seconds:.1f} s"
        )
    return f"[red]failed[/red] {name} at {r.error_stage}: {escape(str(r.error_message))}"


@app.command()
def process(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."),
    video: Path = typer.Argument(..., help="Video file."),
    wse: float = typer.Option(
        ..., "--wse", help="Water-surface elevation, in the scaffold's display units (--units)."
    ),
    units: Units = UNITS,
    output: Path = typer.Option(Path("results"), "--output", "-o", help="Output folder."),
    alpha: float = typer.Option(0.85, help="Surface-to-mean velocity coefficient."),
    start: str = typer.Option(None, help="Start: seconds, MM:SS or HH:MM:SS[.fff]."),
    end: str = typer.Option(None, help="End (exclusive), same formats."),
    frame_step: int = typer.Option(1, help="Keep every k-th frame."),
    max_frames: int = typer.Option(None, help="Stop after this many frames."),
    keep_frames: bool = typer.Option(False, help="Also write the rectified frames (PNG)."),
    figures: bool = FIGURES,
    backend: Backend = BACKEND,
    method: Method = METHOD,
    interpolation: Interpolation = INTERPOLATION,
    refine: bool = REFINE,
    d_rho: float = D_RHO,
    d_theta: float = D_THETA,
    stride: bool = STRIDE,
    compat: Compat = COMPAT,
    min_valid_fraction: float = MIN_VALID,
    stabilize: Stabilize = STABILIZE,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Process one video into discharge."""
    from ivy_gpu.pipeline.process import process_video

    quiet = _quiet(quiet, as_json)
    cfg = _load(scaffold, debug)
    backend, stiv = _engine_and_stiv(
        backend,
        cfg,
        debug,
        method=method,
        interpolation=interpolation,
        refine=refine,
        d_rho=d_rho,
        d_theta=d_theta,
        stride=stride,
    )
    if not video.is_file():
        _fail(ValueError(f"{video}: video file not found"), debug)
    wse_m = wse / _units(cfg, units).length
    with _progress(quiet) as bar:
        task = bar.add_task(video.name, total=1.0, msg="")

        def on_stage(stage: str, fraction: float, msg: str) -> None:
            bar.update(task, completed=fraction, description=f"{video.name} [{stage}]", msg=msg)

        try:
            r = process_video(
                cfg,
                video,
                wse_m,
                output,
                alpha=alpha,
                start_time=start,
                end_time=end,
                frame_step=frame_step,
                max_frames=max_frames,
                backend=backend,
                progress=on_stage,
                keep_frames=keep_frames,
                stiv=stiv,
                compat=Compat(compat).value,
                min_valid_fraction=min_valid_fraction,
                stabilize=None if stabilize is None else Stabilize(stabilize).value,
                figures=figures,
            )
        except ValueError as exc:
            _fail(exc, debug)
    if as_json:
        from ivy_gpu.pipeline.outputs import result_json

        _print_json(result_json(r, cfg))
        raise typer.Exit(0 if r.success else 1)
    console.print(_result_line(r, cfg.display_units), highlight=False)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    raise typer.Exit(0 if r.success else 1)


@app.command()
def batch(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."),
    csv_file: Path = typer.Argument(..., metavar="CSV", help="Batch CSV."),
    output: Path = typer.Option(Path("batch_results"), "--output", "-o", help="Output folder."),
    resume: bool = typer.Option(False, help="Skip videos whose results are complete."),
    stop_on_error: bool = typer.Option(False, help="Stop at the first failed video."),
    workers: int = typer.Option(
        0, help="Run the videos on a local Dask cluster of this many worker processes."
    ),
    scheduler: str = typer.Option(
        None, help="Run the videos on the Dask cluster at this scheduler address."
    ),
    units: Units = UNITS,
    gauge: Path = typer.Option(
        None, "--gauge", help="Gauge record for report.html (NWIS RDB or time,value CSV)."
    ),
    tz: str = typer.Option(
        None, "--tz", help="Zone of measurement times without one (e.g. CST, -05:00)."
    ),
    figures: bool = FIGURES,
    backend: Backend = BACKEND,
    method: Method = METHOD,
    interpolation: Interpolation = INTERPOLATION,
    refine: bool = REFINE,
    d_rho: float = D_RHO,
    d_theta: float = D_THETA,
    stride: bool = STRIDE,
    compat: Compat = COMPAT,
    min_valid_fraction: float = MIN_VALID,
    stabilize: Stabilize = STABILIZE,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Process every row of a batch CSV; writes batch_summary.csv after each video."""
    from ivy_gpu.pipeline.batch import BatchOrchestrator, read_batch_csv

    quiet = _quiet(quiet, as_json)
    cfg = _load(scaffold, debug)
    backend, stiv = _engine_and_stiv(
        backend,
        cfg,
        debug,
        method=method,
        interpolation=interpolation,
        refine=refine,
        d_rho=d_rho,
        d_theta=d_theta,
        stride=stride,
    )
    try:
        rows = read_batch_csv(csv_file, _units(cfg, units).name)
    except ValueError as exc:
        _fail(exc, debug)
    client = None
    if workers or scheduler:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            _fail(
                RuntimeError(
                    "--workers/--scheduler need dask.distributed: pip install 'ivy_gpu[dist]'"
                ),
                debug,
            )
        try:
            client = (
                Client(scheduler)
                if scheduler
                else Client(
                    LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
                )
            )
        except OSError as exc:
            _fail(RuntimeError(f"cannot reach the Dask scheduler {scheduler}: {exc}"), debug)
    with _progress(quiet) as bar:
        task = bar.add_task("batch", total=len(rows), msg="")
        count = [0]

        def on_video(k: int, total: int, r) -> None:
            count[0] += 1
            bar.update(task, completed=count[0], msg=f"{count[0]}/{total}")
            if not as_json:
                console.print(_result_line(r, cfg.display_units), highlight=False)

        try:
            b = BatchOrchestrator(
                cfg,
                output,
                backend=backend,
                stop_on_error=stop_on_error,
                resume=resume,
                progress=on_video,
                stiv=stiv,
                client=client,
                compat=Compat(compat).value,
                min_valid_fraction=min_valid_fraction,
                stabilize=None if stabilize is None else Stabilize(stabilize).value,
                gauge=gauge,
                tz=tz,
                figures=figures,
            ).run(rows, csv_file)
        except ValueError as exc:
            _fail(exc, debug)
        finally:
            if client is not None:
                cluster = client.cluster
                client.close()
                if cluster is not None and not scheduler:
                    cluster.close()
    if as_json:
        from ivy_gpu.pipeline.outputs import result_json

        _print_json(
            {
                "total_videos": b.total_videos,
                "successful": b.successful,
                "failed": b.failed,
                "summary_csv": str(output / "batch_summary.csv"),
                "report_html": None if b.report_error else str(output / "report.html"),
                "summary_error": b.summary_error,
                "report_error": b.report_error,
                "discharge_m3s": b.get_discharge_summary(),
                "videos": [result_json(r, cfg) for r in b.video_results],
            }
        )
        raise typer.Exit(0 if b.failed == 0 and not b.summary_error else 1)
    if b.summary_error:
        err_console.print(f"[red]error:[/red] {escape(b.summary_error)}", highlight=False)
    if b.report_error:
        err_console.print(f"[yellow]warning:[/yellow] {escape(b.report_error)}", highlight=False)
    s = b.get_discharge_summary()
    console.print(
        f"{b.successful} of {b.total_videos} videos completed, {b.failed} failed; "
        f"summary: {output / 'batch_summary.csv'}"
        + ("" if b.report_error else f", report: {output / 'report.html'}"),
        highlight=False,
    )
    if s["count"]:
        console.print(
            f"discharge m³/s: min {s['min']:.4f} max {s['max']:.4f} "
            f"mean {s['mean']:.4f} std {s['std']:.4f}",
            highlight=False,
        )
    raise typer.Exit(0 if b.failed == 0 and not b.summary_error else 1)


@app.command()
def validate(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."),
    csv_file: Path = typer.Argument(None, metavar="[CSV]", help="Batch CSV to check too."),
    units: Units = UNITS,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Dry-run a scaffold (and every row of a batch CSV): everything short of decoding."""
    from ivy_gpu.pipeline.batch import read_batch_csv
    from ivy_gpu.pipeline.validate import check_row, check_site

    _quiet(False, as_json)
    cfg = _load(scaffold, debug)
    wse = cfg.rectification.calibration_wse_m
    try:
        if cfg.calibration_size is None:
            raise ValueError(f"{scaffold}: the scaffold records no calibration frame size")
        if wse is not None:
            check_site(cfg, wse)
    except ValueError as exc:
        _fail(exc, debug)
    report: dict = {
        "scaffold": str(scaffold),
        "method": cfg.rectification.method,
        "display_units": cfg.display_units,
        "calibration_size": cfg.calibration_size,
        "checked_wse_m": wse,
        "rows": [],
    }
    if not as_json:
        at = f", checked at its calibration WSE {wse:.3f} m" if wse is not None else ""
        console.print(
            f"[green]ok[/green] {escape(str(scaffold))}: {cfg.rectification.method}, "
            f"{cfg.display_units} units, calibration frame {cfg.calibration_size}{at}",
            highlight=False,
        )
    rows = []
    if csv_file is not None:
        try:
            rows = read_batch_csv(csv_file, _units(cfg, units).name)
        except ValueError as exc:
            _fail(exc, debug)
    bad = 0
    for row in rows:
        problem = row.error
        if problem is None:
            try:
                check_row(cfg, row.config)
            except ValueError as exc:
                problem = str(exc)
        bad += bool(problem)
        report["rows"].append(
            {"line": row.line, "video_path": str(row.video_path), "ok": not problem,
             "problem": problem}
        )  # fmt: skip
        if as_json:
            continue
        if problem:
            console.print(f"[red]row {row.line}[/red]: {escape(problem)}", highlight=False)
        else:
            console.print(
                f"[green]row {row.line}[/green]: ok {escape(str(row.video_path))}", highlight=False
            )
    if as_json:
        report["ok"] = bad == 0
        _print_json(report)
    elif rows:
        console.print(f"{len(rows) - bad} of {len(rows)} rows ok", highlight=False)
    raise typer.Exit(0 if bad == 0 else 1)


@app.command()
def info(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."), debug: bool = DEBUG
) -> None:
    """Describe a scaffold."""
    from ivy_gpu.scaffold.ivyfile import describe

    console.print(describe(_load(scaffold, debug)), highlight=False)


@app.command()
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
    with _progress(quiet) as bar:
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
            _fail(exc, debug)
    if not r.success:
        _fail(RuntimeError(f"demo video failed at {r.error_stage}: {r.error_message}"), debug, 1)
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
        f"backend {r.backend}; {r.num_frames} frames; U95 ISO {unc['iso_u95']:.3f}, "
        f"IVE {unc['ive_u95']:.3f}; stages (s): "
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


@app.command()
def bench(
    quick: bool = typer.Option(False, help="Small workloads only (a smoke run)."),
    output: Path = typer.Option(Path("bench_output"), help="Folder for the JSON and Markdown."),
    pipeline: bool = typer.Option(False, help="Also run the end-to-end video benchmark."),
) -> None:
    """Run the benchmark suite on generated workloads and write a table."""
    from ivy_gpu.benchmarks.suite import main as run

    console.print(run(quick=quick, out_dir=output, pipeline=pipeline))


@app.command()
def report(
    output: Path = typer.Argument(..., help="A batch output folder (or a folder of runs)."),
    gauge: Path = typer.Option(None, "--gauge", help="Gauge record (NWIS RDB or time,value CSV)."),
    tz: str = typer.Option(None, "--tz", help="Zone of measurement times without one."),
    gauge_units: str = typer.Option(
        "m3/s", "--gauge-units", help="Units of a plain CSV gauge whose header does not say."
    ),
    debug: bool = DEBUG,
) -> None:
    """Rebuild report.html from saved results (no reprocessing)."""
    from ivy_gpu.report.page import build_report

    if gauge_units not in ("m3/s", "cfs"):
        _fail(ValueError(f"--gauge-units: expected m3/s or cfs, got {gauge_units!r}"), debug)
    try:
        path = build_report(output, gauge, tz, gauge_units)
    except ValueError as exc:
        _fail(exc, debug)
    console.print(f"wrote {path}", highlight=False)


@app.command()
def backends() -> None:
    """List the compute backends and whether each is usable here."""
    from ivy_gpu.engines.backends import ENGINES, resolve_backend

    for name, (_, check) in ENGINES.items():
        usable, why = check()
        state = "usable" if usable else "unavailable"
        console.print(f"{name:6s} {state}: {escape(why)}", highlight=False)
    console.print(f"auto -> {resolve_backend('auto')}")


from .site import site_app  # noqa: E402  (the group's commands import from this module)

app.add_typer(site_app, name="site")

if __name__ == "__main__":  # pragma: no cover
    app()
