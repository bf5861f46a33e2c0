"""The batch CSV (domain specification, section 3.1) and the batch summary CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ivy_gpu.fileio import atomic_write_text
from ivy_gpu.results import ProcessingResult, VideoConfig
from ivy_gpu.units import unit_system
from ivy_gpu.video import parse_time

REQUIRED_COLUMNS = ("video_path", "water_surface_elevation")
SUMMARY_COLUMNS = (
    "video_path",
    "status",
    "water_surface_elevation",
    "alpha",
    "discharge_m3s",
    "discharge",
    "area_m2",
    "mean_velocity_ms",
    "uncertainty_iso_95",
    "uncertainty_ive_95",
    "num_frames",
    "valid_nodes",
    "filled_nodes",
    "flagged_nodes",
    "processing_time_s",
    "error_stage",
    "error_message",
    "camera_motion_rms_px",
    "warnings",
    "reused",
)

BatchProgress = Callable[[int, int, ProcessingResult], None]


@dataclass(frozen=True)
class BatchRow:
    """One CSV row: a video to process, or the reason the row is unusable."""

    line: int
    video_path: Path
    wse_display: str
    config: VideoConfig | None
    error: str | None = None


def _opt_int(value: str, name: str, minimum: int) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        v = int(float(value))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an integer") from None
    if v != float(value) or v < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return v


def read_batch_csv(path: str | Path, display_units: str = "Metric") -> list[BatchRow]:
    """Parse a batch CSV (domain specification, section 3.1).

    Required columns ``video_path`` and ``water_surface_elevation`` (in the scaffold's
    display units); optional ``start_time``, ``end_time`` (seconds, ``MM:SS`` or
    ``HH:MM:SS[.fff]``), ``alpha`` (0.85), ``frame_step`` (1), ``max_frames``,
    ``measurement_number``, ``measurement_date``, ``comments``. Unknown columns are
    ignored; relative video paths resolve against the CSV's folder.

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
        try:
            if not video:
                raise ValueError("video_path: empty")
            try:
                wse = float(wse_text)
            except ValueError:
                raise ValueError(f"water_surface_elevation: {wse_text!r} is not a number") from None
            alpha_text = row.get("alpha", "")
            try:
                alpha = float(alpha_text) if alpha_text else 0.85
            except ValueError:
                raise ValueError(f"alpha: {alpha_text!r} is not a number") from None
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
            )
            out.append(BatchRow(line, vpath, wse_text, cfg))
        except ValueError as exc:
            out.append(BatchRow(line, vpath, wse_text, None, f"{path}: row {line}: {exc}"))
    if not out:
        raise ValueError(f"{path}: batch CSV has no data rows")
    return out


def output_names(rows: list[BatchRow]) -> list[str]:
    """Per-video folder names: the video stem, made unique with the CSV line if repeated."""
    seen: set[str] = set()
    names = []
    for row in rows:
        name = row.video_path.stem or f"row{row.line}"
        if name in seen:
            name = f"{name}_line{row.line}"
        seen.add(name)
        names.append(name)
    return names


def _fmt(v: float | None, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    return f"{v:.{digits}g}"


def summary_row(row: BatchRow, result: ProcessingResult, display_units: str) -> dict:
    """One line of ``batch_summary.csv``."""
    u = unit_system(display_units)
    q = result.total_discharge if result.success else None
    unc = result.discharge_uncertainty or {}
    return {
        "video_path": str(row.video_path),
        "status": "completed" if result.success else "failed",
        "water_surface_elevation": row.wse_display,
        "alpha": "" if row.config is None else _fmt(row.config.alpha),
        "discharge_m3s": _fmt(q),
        "discharge": _fmt(None if q is None else q * u.discharge),
        "area_m2": _fmt(result.total_area if result.success else None),
        "mean_velocity_ms": _fmt(result.mean_velocity if result.success else None),
        "uncertainty_iso_95": _fmt(unc.get("iso_u95") if result.success else None, 4),
        "uncertainty_ive_95": _fmt(unc.get("ive_u95") if result.success else None, 4),
        "num_frames": str(result.num_frames) if result.num_frames else "",
        "processing_time_s": f"{result.processing_time_seconds:.2f}",
        "error_stage": result.error_stage or "",
        "error_message": result.error_message or "",
        "valid_nodes": str(result.valid_nodes) if result.success else "",
        "filled_nodes": str(result.filled_nodes) if result.success else "",
        "flagged_nodes": str(result.flagged_nodes) if result.success else "",
        "warnings": " | ".join(result.warnings),
        "reused": "yes" if result.reused else "",
        "camera_motion_rms_px": _fmt(result.motion.get("rms_px"), 3) if result.motion else "",
    }


def write_summary(path: Path, rows: list[dict]) -> None:
    """Rewrite ``batch_summary.csv`` atomically."""
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    atomic_write_text(path, frame.to_csv(index=False))
