"""``watch``: a station that processes clips as they arrive."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import typer
from rich.markup import escape

from ivy_gpu.cli.common import (
    BACKEND,
    DEBUG,
    FIGURES,
    GAUGE,
    QUIET,
    STAGE_DATUM,
    TZ,
    UNITS,
    Backend,
    Units,
    close_client,
    compile_notice,
    console,
    dask_client,
    engine_and_stiv,
    err_console,
    fail,
    load,
    result_line,
    units_of,
    wse_lookup,
)


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM (a service manager stopping the station) ends it as Ctrl-C does."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test runner's worker): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def watch(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."),
    incoming: Path = typer.Argument(..., help="The folder the clips arrive in."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (the record)."),
    pattern: str = typer.Option("*.mp4", "--pattern", help="Glob of the clips."),
    gauge: Path = GAUGE,
    tz: str = TZ,
    stage_datum: float = STAGE_DATUM,
    wse: float = typer.Option(
        None, "--wse", help="A fixed water-surface elevation for every clip (WSE units)."
    ),
    settle: float = typer.Option(
        10.0, "--settle", help="Seconds a clip must stay unchanged before it is taken."
    ),
    sidecar: bool = typer.Option(
        False, "--sidecar", help="Take a clip only once <clip>.done exists beside it."
    ),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks at the folder."),
    once: bool = typer.Option(
        False, "--once", help="Process what is complete now, then exit (for cron)."
    ),
    workers: int = typer.Option(0, help="Run the clips on a local Dask cluster of this many."),
    units: Units = UNITS,
    figures: bool = FIGURES,
    backend: Backend = BACKEND,
    quiet: bool = QUIET,
    debug: bool = DEBUG,
) -> None:
    """Process each clip arriving in INCOMING once it is complete; keep the record current.

    A clip's time comes from a YYYYMMDD-HHMMSS stamp in its name (else the container's
    creation time), its WSE from the gauge's stage plus --stage-datum (or --wse). Each new
    clip is added to batch_summary.csv, record.nc and report.html. Stop with Ctrl-C; a
    restart keeps what is done. Exit 0 when every clip succeeded, 1 otherwise.
    """
    from ivy_gpu.pipeline.station import Station

    cfg = load(scaffold, debug)
    backend, stiv = engine_and_stiv(backend, cfg, debug)
    u = units_of(cfg, units)
    if wse is not None and stage_datum is not None:
        fail(ValueError("--wse and --stage-datum: give one"), debug)
    if settle < 0 or poll <= 0:
        fail(ValueError("--settle must be >= 0 and --poll > 0 seconds"), debug)
    try:
        lookup = wse_lookup(gauge, stage_datum, tz, u)
    except ValueError as exc:
        fail(exc, debug)
    compile_notice(backend, quiet)
    client = dask_client(workers, None, debug, backend)

    def on_clip(r) -> None:
        if not quiet:
            console.print(result_line(r, cfg.display_units), highlight=False)

    options = dict(backend=backend, stiv=stiv, gauge=gauge, tz=tz, figures=figures)
    try:
        station = Station(
            cfg, incoming, output, pattern=pattern, wse_lookup=lookup,
            wse_m=None if wse is None else wse / u.length, settle_s=settle, sidecar=sidecar,
            orchestrator={**options, "client": client}, progress=on_clip,
        )  # fmt: skip
        if not quiet:
            console.print(
                f"watching {escape(str(incoming))} for {escape(pattern)} "
                f"(every {poll:g} s; Ctrl-C stops)" if not once else
                f"processing what is complete in {escape(str(incoming))}",
                highlight=False,
            )  # fmt: skip
        try:
            with _stop_on_sigterm():
                last = station.run(poll_s=poll, once=once)
        except KeyboardInterrupt:
            last = station.last
    except ValueError as exc:
        fail(exc, debug)
    finally:
        close_client(client, None)
    for path, why in sorted(station.state.waiting.items()):
        err_console.print(f"waiting: {escape(str(path))}: {escape(why)}", highlight=False)
    if last is None:
        console.print("no complete clip to process", highlight=False)
        raise typer.Exit(0)
    errors = [e for e in (last.summary_error, last.report_error, last.record_error) if e]
    for e in errors:
        err_console.print(f"[red]error:[/red] {escape(e)}", highlight=False)
    console.print(
        f"{last.successful} of {last.total_videos} clips completed; record: "
        f"{output / 'record.nc'}, report: {output / 'report.html'}",
        highlight=False,
    )
    raise typer.Exit(0 if last.failed == 0 and not errors else 1)
