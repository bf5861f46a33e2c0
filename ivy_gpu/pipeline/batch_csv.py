"""The batch CSV (domain specification, section 3.1) and the batch summary CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from ivy_gpu.checks import parse_time
from ivy_gpu.fileio import atomic_write_text, csv_cell, folder_name
from ivy_gpu.results import ProcessingResult, VideoConfig, display_twins, stated_u95
from ivy_gpu.units import format_value, unit_system

REQUIRED_COLUMNS = ("video_path", "water_surface_elevation")
#: ``batch_summary.csv`` of an SI (Metric) site: the batch CSV's metadata, then the results
#: with their units in the names. An English site adds the display-unit twins listed in
#: :data:`ENGLISH_TWINS` right after each SI column (see :func:`summary_columns`).
SUMMARY_COLUMNS = (
    "video_path",
    "output_folder",
    "status",
    "measurement_number",
    "measurement_date",
    "measurement_time",
    "measurement_datetime",
    "gage_height_m",
    "comments",
    "start_time_s",
    "end_time_s",
    "water_surface_elevation_m",
    "wse_source",
    "alpha",
    "discharge_m3s",
    "area_m2",
    "mean_velocity_ms",
    "uncertainty_95",
    "quality_rating",
    "uncertainty_iso_95",
    "uncertainty_ive_95",
    "num_frames",
    "valid_nodes",
    "filled_nodes",
    "flagged_nodes",
    "overrides",
    "camera_motion_rms_px",
    "warnings",
    "error_stage",
    "error_message",
    "processing_time_s",
    "finished_utc",
    "reused",
)
#: Columns that differ between two runs of the same batch (when and how long it ran).
RUN_COLUMNS = ("processing_time_s", "finished_utc", "reused")
#: SI column -> its English display twin.
ENGLISH_TWINS = {
    "water_surface_elevation_m": "water_surface_elevation_ft",
    "discharge_m3s": "discharge_cfs",
    "area_m2": "area_ft2",
    "mean_velocity_ms": "mean_velocity_fts",
}


def summary_columns(display_units: str = "Metric") -> tuple[str, ...]:
    """The summary's columns for a site's display units (gauge height in those units)."""
    if unit_system(display_units).name == "Metric":
        return SUMMARY_COLUMNS
    out: list[str] = []
    for c in SUMMARY_COLUMNS:
        if c == "gage_height_m":
            out.append("gage_height_ft")
            continue
        out.append(c)
        if c in ENGLISH_TWINS:
            out.append(ENGLISH_TWINS[c])
    return tuple(out)


BatchProgress = Callable[[int, int, ProcessingResult], None]


@dataclass(frozen=True)
class BatchRow:
    """One CSV row: a video to process, or the reason the row is unusable."""

    line: int
    video_path: Path
    wse_display: str
    config: VideoConfig | None
    error: str | None = None
    wse_source: str = "csv"


def _opt_int(value: str, name: str, minimum: int) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        v = int(float(value))
    except (ValueError, OverflowError):  # OverflowError: "inf"
        raise ValueError(f"{name}: {value!r} is not an integer") from None
    if v != float(value) or v < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return v


def read_batch_csv(
    path: str | Path,
    display_units: str = "Metric",
    wse_lookup: Callable[[Any, Path], tuple[float | None, str]] | None = None,
) -> list[BatchRow]:
    """Parse a batch CSV (domain specification, section 3.1).

    Required columns ``video_path`` and ``water_surface_elevation`` (in the scaffold's
    display units); optional ``start_time``, ``end_time`` (seconds, ``MM:SS`` or
    ``HH:MM:SS[.fff]``), ``alpha`` (0.85), ``frame_step`` (1), ``max_frames``,
    ``measurement_number``, ``measurement_date``, ``measurement_time``, ``gage_height``,
    ``comments``. Unknown columns are
    ignored; relative video paths resolve against the CSV's folder.

    A row with an empty ``water_surface_elevation`` takes it from ``wse_lookup(row,
    video_path)`` (the gauge's stage at the row's time,
    :func:`ivy_gpu.report.record.stage_lookup`), in metres; its ``wse_source`` is then
    ``gauge``. Without a lookup, or when it finds none, the row is unusable.

    Raises
    ------
    ValueError
        Unreadable file, missing required columns, or no data rows. A bad *row* is
        not an error here: it comes back with ``error`` set.
    """
    path = Path(path)
    to_m = 1.0 / unit_system(display_units).length
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read batch CSV ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in (";", "\t")):
            hint = " (the file looks separated by ';' or tabs; use commas)"
        raise ValueError(f"{path}: missing required columns: {', '.join(missing)}{hint}")
    out: list[BatchRow] = []
    for k, raw in enumerate(rows):
        row = {
            (key or "").strip(): (val or "").strip()
            for key, val in raw.items()
            if isinstance(val, str) or val is None
        }
        if not any(row.values()):
            continue
        line = k + 2
        video = row.get("video_path", "")
        vpath = Path(video) if Path(video).is_absolute() else path.parent / video
        wse_text = row.get("water_surface_elevation", "")
        source = "csv"
        try:
            if not video:
                raise ValueError("video_path: empty")
            if not wse_text and wse_lookup is not None:
                when = SimpleNamespace(
                    measurement_date=row.get("measurement_date"),
                    measurement_time=row.get("measurement_time"),
                )
                wse_m, why = wse_lookup(when, vpath)
                if wse_m is None:
                    raise ValueError(f"water_surface_elevation: {why}")
                wse, source = wse_m / to_m, "gauge"
                wse_text = f"{wse:.6g}"
            elif not wse_text:
                raise ValueError(
                    "water_surface_elevation: empty (give it, or a gauge record with a stage "
                    "and --stage-datum)"
                )
            else:
                try:
                    wse = float(wse_text)
                except ValueError:
                    raise ValueError(
                        f"water_surface_elevation: {wse_text!r} is not a number"
                    ) from None
            alpha_text = row.get("alpha", "")
            try:
                alpha = float(alpha_text) if alpha_text else 0.85
            except ValueError:
                raise ValueError(f"alpha: {alpha_text!r} is not a number") from None
            gage_text = row.get("gage_height", "")
            try:
                gage = float(gage_text) if gage_text else None
            except ValueError:
                raise ValueError(f"gage_height: {gage_text!r} is not a number") from None
            cfg = VideoConfig(
                vpath,
                wse * to_m,
                alpha,
                parse_time(row.get("start_time"), "start_time"),
                parse_time(row.get("end_time"), "end_time"),
                _opt_int(row.get("frame_step"), "frame_step", 1) or 1,
                _opt_int(row.get("max_frames"), "max_frames", 2),
                _opt_int(row.get("measurement_number"), "measurement_number", 0),
                row.get("measurement_date") or None,
                row.get("comments") or None,
                row.get("measurement_time") or None,
                gage,
            )
            out.append(BatchRow(line, vpath, wse_text, cfg, wse_source=source))
        except ValueError as exc:
            out.append(BatchRow(line, vpath, wse_text, None, f"{path}: row {line}: {exc}"))
    if not out:
        raise ValueError(f"{path}: batch CSV has no data rows")
    return out


#: Files a batch writes in its output folder, beside the per-video folders.
BATCH_FILES = ("batch_summary.csv", "report.html", "record.nc")


def output_names(rows: list[BatchRow]) -> list[str]:
    """Per-video folder names: the video stem, made safe and unique.

    A stem that could leave the output folder or hide (``..``, ``.``, a leading dot) is
    cleaned (:func:`ivy_gpu.fileio.folder_name`), one that names a batch file gets ``_``
    appended, and a repeated name (compared case-insensitively, as on Windows and macOS
    file systems) says what differs: the measurement number (``river_m2``), else the time
    window (``river_0.5-2.5s``), else the CSV line (``river_line4``).
    """
    seen: set[str] = set()
    names = []
    for row in rows:
        name = folder_name(row.video_path.stem, f"row{row.line}", BATCH_FILES)
        if name.lower() in seen:
            name = f"{name}_{_what_differs(row)}"
        while name.lower() in seen:
            name = f"{name}_line{row.line}"
        seen.add(name.lower())
        names.append(name)
    return names


def _what_differs(row: BatchRow) -> str:
    """A short, file-safe tag of a repeated video's row: number, window or line."""
    cfg = row.config
    if cfg is not None and cfg.measurement_number is not None:
        return f"m{cfg.measurement_number}"
    if cfg is not None and cfg.end_time is not None:
        return f"{cfg.start_time or 0:g}-{cfg.end_time:g}s"
    if cfg is not None and cfg.start_time is not None:
        return f"from{cfg.start_time:g}s"
    return f"line{row.line}"


def summary_row(row: BatchRow, result: ProcessingResult, display_units: str) -> dict:
    """One line of ``batch_summary.csv`` (values at a precision that suits each column)."""
    from ivy_gpu.report.record import measurement_datetime

    u = unit_system(display_units)
    ok = result.success
    cfg = row.config
    wse_m = cfg.water_surface_elevation if cfg is not None else None
    when = measurement_datetime(cfg, row.video_path) if cfg is not None else None
    out = {
        "video_path": str(row.video_path),
        "output_folder": result.output_directory.name if result.output_directory else "",
        "status": "completed" if ok else "failed",
        "measurement_number": ""
        if cfg is None or cfg.measurement_number is None
        else str(cfg.measurement_number),
        "measurement_date": (cfg.measurement_date or "") if cfg else "",
        "measurement_time": (cfg.measurement_time or "") if cfg else "",
        "measurement_datetime": when.isoformat() if when is not None else "",
        "comments": (cfg.comments or "") if cfg else "",
        "start_time_s": format_value(cfg.start_time if cfg else None, ".3f"),
        "end_time_s": format_value(cfg.end_time if cfg else None, ".3f"),
        "water_surface_elevation_m": format_value(wse_m, ".4f") if cfg else row.wse_display,
        "wse_source": row.wse_source if cfg else "",
        "alpha": format_value(cfg.alpha if cfg else None, ".3f"),
        "num_frames": str(result.num_frames) if result.num_frames else "",
        "camera_motion_rms_px": format_value(result.motion.get("rms_px"), ".2f")
        if result.motion
        else "",
        **result_cells(result, u.name),
        "error_stage": result.error_stage or "",
        "error_message": result.error_message or "",
        "processing_time_s": f"{result.processing_time_seconds:.2f}",
        "finished_utc": (result.provenance or {}).get("finished_utc") or "",
        "reused": "yes" if result.reused else "",
    }
    gage = cfg.gage_height if cfg is not None else None
    out[f"gage_height_{u.length_label}"] = format_value(gage, ".4f")
    if display_twins(result, u.name):
        out["water_surface_elevation_ft"] = row.wse_display  # as the CSV gave it
    return out


def result_cells(result: ProcessingResult, display_units: str) -> dict[str, str]:
    """The summary cells a result's numbers fill (empty for a failed result), display twins too.

    Shared by :func:`summary_row` and a recompute that rewrites one video's row.
    """
    ok = result.success
    unc = result.discharge_uncertainty or {}
    out = {
        "discharge_m3s": format_value(result.total_discharge if ok else None, ".5g"),
        "area_m2": format_value(result.total_area if ok else None, ".4f"),
        "mean_velocity_ms": format_value(result.mean_velocity if ok else None, ".4f"),
        "uncertainty_95": format_value(stated_u95(unc) if ok else None, ".4f"),
        "quality_rating": (result.quality_rating or "") if ok else "",
        "uncertainty_iso_95": format_value(unc.get("iso_u95") if ok else None, ".4f"),
        "uncertainty_ive_95": format_value(unc.get("ive_u95") if ok else None, ".4f"),
        "valid_nodes": str(result.valid_nodes) if ok else "",
        "filled_nodes": str(result.filled_nodes) if ok else "",
        "flagged_nodes": str(result.flagged_nodes) if ok else "",
        "overrides": str(len(result.overrides)) if ok and result.overrides else "",
        "warnings": " | ".join(result.warnings),
    }
    twins = display_twins(result, display_units)
    for twin, spec in (("discharge_cfs", ".5g"), ("area_ft2", ".4f"), ("mean_velocity_fts", ".4f")):
        if twin in twins:
            out[twin] = format_value(twins[twin], spec)
    return out


def write_summary(path: Path, rows: list[dict], display_units: str = "Metric") -> None:
    """Rewrite ``batch_summary.csv`` atomically (ASCII headers, values as formatted).

    Text that a spreadsheet would run as a formula (a comment or a file name starting with
    ``=``, ``+``, ``-`` or ``@``) is written behind a quote (:func:`ivy_gpu.fileio.csv_cell`).
    """
    rows = [{k: csv_cell(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
    frame = pd.DataFrame(rows, columns=list(summary_columns(display_units)), dtype=object)
    atomic_write_text(path, frame.to_csv(index=False))
