"""The ``validate``, ``info``, ``recompute`` and ``report`` commands (no video decoded)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ivy_gpu.cli.common import (
    DEBUG,
    JSON,
    UNITS,
    Units,
    console,
    err_console,
    fail,
    load,
    print_json,
    quiet_mode,
    result_line,
    units_of,
)


def validate(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."),
    csv_file: Path = typer.Argument(None, metavar="[CSV]", help="Batch CSV to check too."),
    units: Units = UNITS,
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Dry-run a scaffold (and every row of a batch CSV): everything short of decoding."""
    from ivy_gpu.pipeline.batch import read_batch_csv
    from ivy_gpu.pipeline.validate import check_row, check_site, site_warnings

    quiet_mode(False, as_json)
    cfg = load(scaffold, debug)
    wse = cfg.rectification.calibration_wse_m
    try:
        if cfg.calibration_size is None:
            raise ValueError(f"{scaffold}: the scaffold records no calibration frame size")
        if wse is not None:
            check_site(cfg, wse)
    except ValueError as exc:
        fail(exc, debug)
    report: dict = {
        "scaffold": str(scaffold),
        "method": cfg.rectification.method,
        "display_units": cfg.display_units,
        "calibration_size": cfg.calibration_size,
        "checked_wse_m": wse,
        "warnings": site_warnings(cfg),
        "rows": [],
    }
    if not as_json:
        at = f", checked at its calibration WSE {wse:.3f} m" if wse is not None else ""
        console.print(
            f"[green]ok[/green] {escape(str(scaffold))}: {cfg.rectification.method}, "
            f"{cfg.display_units} units, calibration frame {cfg.calibration_size}{at}",
            highlight=False,
        )
        for w in report["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    rows = []
    if csv_file is not None:
        try:
            rows = read_batch_csv(csv_file, units_of(cfg, units).name)
        except ValueError as exc:
            fail(exc, debug)
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
        print_json(report)
    elif rows:
        console.print(f"{len(rows) - bad} of {len(rows)} rows ok", highlight=False)
    raise typer.Exit(0 if bad == 0 else 1)


def info(
    scaffold: Path = typer.Argument(..., help="IVyTools scaffold (.ivy)."), debug: bool = DEBUG
) -> None:
    """Describe a scaffold."""
    from ivy_gpu.scaffold.summary import describe

    console.print(describe(load(scaffold, debug)), highlight=False)


def recompute(
    folder: Path = typer.Argument(..., help="A video's output folder (<output>/<video>)."),
    overrides: Path = typer.Option(
        None, "--overrides", help="CSV node,action,velocity_ms,note (exclude | keep | set)."
    ),
    scaffold: Path = typer.Option(
        None, "--scaffold", help="The site (default: the scaffold recorded in results.json)."
    ),
    as_json: bool = JSON,
    debug: bool = DEBUG,
) -> None:
    """Recompute a video's discharge from its saved node results, with overrides (no video)."""
    from ivy_gpu.pipeline.recompute import recompute as run

    quiet_mode(False, as_json)
    try:
        r = run(folder, overrides, scaffold)
    except ValueError as exc:
        fail(exc, debug)
    if as_json:
        from ivy_gpu.pipeline.outputs import result_json

        print_json(result_json(r, None))
        raise typer.Exit(0)
    console.print(result_line(r), highlight=False)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


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
        fail(ValueError(f"--gauge-units: expected m3/s or cfs, got {gauge_units!r}"), debug)
    import warnings

    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            path = build_report(output, gauge, tz, gauge_units)
    except ValueError as exc:
        fail(exc, debug)
    for w in said:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", highlight=False)
    console.print(f"wrote {path}", highlight=False)
