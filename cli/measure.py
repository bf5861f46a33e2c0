"""``process`` and ``batch``: videos into discharge."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ivy_gpu import config
from ivy_gpu.cli.common import (
    BACKEND,
    COMPAT,
    D_RHO,
    D_THETA,
    DEBUG,
    FAN_CENTRE,
    FAN_RANGE,
    FAN_STEP,
    FIGURES,
    GAUGE,
    INTERPOLATION,
    JSON,
    LINE_LENGTH,
    MAX_VELOCITY,
    METHOD,
    MIN_VALID,
    QUIET,
    REFINE,
    STABILIZE,
    STAGE_DATUM,
    STRIDE,
    TZ,
    UNITS,
    Backend,
    Compat,
    Interpolation,
    Method,
    Stabilize,
    Units,
    close_client,
    compile_notice,
    console,
    dask_client,
    engine_and_stiv,
    err_console,
    fail,
    load,
    print_json,
    progress,
    quiet_mode,
    result_line,
    units_of,
    wse_lookup,
)


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
    line_length_m: float = LINE_LENGTH,
    fan_centre: float = FAN_CENTRE,
    fan_range: float = FAN_RANGE,
    fan_step: float = FAN_STEP,
    max_velocity: float = MAX_VELOCITY,
    compat: Compat = COMPAT,
    min_valid_fraction: float = MIN_VALID,
    stabilize: Stabilize = STABILIZE,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Process one video into discharge."""
    from ivy_gpu.pipeline.process import process_video

    quiet = quiet_mode(quiet, as_json)
    cfg = load(scaffold, debug)
    backend, stiv = engine_and_stiv(
        backend,
        cfg,
        debug,
        method=method,
        interpolation=interpolation,
        refine=refine,
        d_rho=d_rho,
        d_theta=d_theta,
        stride=stride,
        line_length_m=line_length_m,
        fan_centre=fan_centre,
        fan_range=fan_range,
        fan_step=fan_step,
        max_velocity=max_velocity,
    )
    if not video.is_file():
        fail(ValueError(f"{video}: video file not found"), debug)
    compile_notice(backend, quiet)
    wse_m = wse / units_of(cfg, units).length
    with progress(quiet) as bar:
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
            fail(exc, debug)
    if as_json:
        from ivy_gpu.pipeline.outputs import result_json

        print_json(result_json(r, cfg))
        raise typer.Exit(0 if r.success else 1)
    console.print(result_line(r, cfg.display_units), highlight=False)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    raise typer.Exit(0 if r.success else 1)


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
    figure_workers: int = typer.Option(
        0,
        help="Processes that draw the figures beside the videos computing (0: "
        "IVY_GPU_FIGURE_WORKERS, else 1 below 8 cores, a quarter of them above, at most 4).",
    ),
    units: Units = UNITS,
    gauge: Path = GAUGE,
    tz: str = TZ,
    stage_datum: float = STAGE_DATUM,
    figures: bool = FIGURES,
    backend: Backend = BACKEND,
    method: Method = METHOD,
    interpolation: Interpolation = INTERPOLATION,
    refine: bool = REFINE,
    d_rho: float = D_RHO,
    d_theta: float = D_THETA,
    stride: bool = STRIDE,
    line_length_m: float = LINE_LENGTH,
    fan_centre: float = FAN_CENTRE,
    fan_range: float = FAN_RANGE,
    fan_step: float = FAN_STEP,
    max_velocity: float = MAX_VELOCITY,
    compat: Compat = COMPAT,
    min_valid_fraction: float = MIN_VALID,
    stabilize: Stabilize = STABILIZE,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Process every row of a batch CSV; writes batch_summary.csv after each video.

    Rows without a water-surface elevation take it from the gauge record's stage at their
    time plus --stage-datum. Writes record.nc (CF time series) and report.html at the end.
    """
    from ivy_gpu.pipeline.batch import BatchOrchestrator, read_batch_csv

    quiet = quiet_mode(quiet, as_json)
    cfg = load(scaffold, debug)
    backend, stiv = engine_and_stiv(
        backend,
        cfg,
        debug,
        method=method,
        interpolation=interpolation,
        refine=refine,
        d_rho=d_rho,
        d_theta=d_theta,
        stride=stride,
        line_length_m=line_length_m,
        fan_centre=fan_centre,
        fan_range=fan_range,
        fan_step=fan_step,
        max_velocity=max_velocity,
    )
    csv_units = units_of(cfg, units)
    try:
        lookup = wse_lookup(gauge, stage_datum, tz, csv_units)
        rows = read_batch_csv(csv_file, csv_units.name, lookup)
    except ValueError as exc:
        fail(exc, debug)
    try:
        drawers = config.figure_workers(figure_workers)
    except ValueError as exc:
        fail(exc, debug)
    compile_notice(backend, quiet)
    client = dask_client(workers, scheduler, debug, backend)
    with progress(quiet) as bar:
        task = bar.add_task("batch", total=len(rows), msg="")
        count = [0]

        def on_video(k: int, total: int, r) -> None:
            count[0] += 1
            bar.update(task, completed=count[0], msg=f"{count[0]}/{total}")
            if not as_json:
                console.print(result_line(r, cfg.display_units), highlight=False)

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
                figure_workers=drawers,
            ).run(rows, csv_file)
        except ValueError as exc:
            fail(exc, debug)
        finally:
            close_client(client, scheduler)
    finish_batch(b, cfg, output, as_json)


def finish_batch(b, cfg, output: Path, as_json: bool) -> None:
    """Print a batch's end (or its JSON) and exit: 0 when every video and file is done.

    A report or record asked for and not written fails the batch (the results stay).
    """
    ok = b.failed == 0 and not (b.summary_error or b.report_error or b.record_error)
    if as_json:
        from ivy_gpu.pipeline.outputs import result_json

        print_json(
            {
                "total_videos": b.total_videos,
                "successful": b.successful,
                "failed": b.failed,
                "summary_csv": str(output / "batch_summary.csv"),
                "report_html": None if b.report_error else str(output / "report.html"),
                "summary_error": b.summary_error,
                "report_error": b.report_error,
                "record_nc": None if b.record_error else str(output / "record.nc"),
                "record_error": b.record_error,
                "report_notes": b.report_notes,
                "discharge_m3s": b.get_discharge_summary(),
                "videos": [result_json(r, cfg) for r in b.video_results],
            }
        )
        raise typer.Exit(0 if ok else 1)
    if b.summary_error:
        err_console.print(f"[red]error:[/red] {escape(b.summary_error)}", highlight=False)
    for error in (b.report_error, b.record_error):
        if error:
            err_console.print(f"[red]error:[/red] {escape(error)}", highlight=False)
    for note in b.report_notes:
        err_console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
    s = b.get_discharge_summary()
    console.print(
        f"{b.successful} of {b.total_videos} videos completed, {b.failed} failed; "
        f"summary: {output / 'batch_summary.csv'}"
        + ("" if b.report_error else f", report: {output / 'report.html'}")
        + ("" if b.record_error else f", record: {output / 'record.nc'}"),
        highlight=False,
    )
    if s["count"]:
        console.print(
            f"discharge m³/s: min {s['min']:.4f} max {s['max']:.4f} "
            f"mean {s['mean']:.4f} std {s['std']:.4f}",
            highlight=False,
        )
    raise typer.Exit(0 if ok else 1)
