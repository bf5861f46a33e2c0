"""Result dataclasses of the video-to-discharge pipeline (SI units), and the stage error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ivy_gpu.params import VideoConfig  # noqa: F401  (re-exported: its old home)
from ivy_gpu.units import unit_system

#: Where a video can fail, in pipeline order; ``worker`` is a cluster task that died.
ERROR_STAGES = ("read", "rectify", "grid", "stiv", "discharge", "save", "worker")


class StageError(Exception):
    """A failure inside one pipeline stage (the message names the file and the problem)."""

    def __init__(self, stage: str, message: str) -> None:
        if stage not in ERROR_STAGES:
            raise ValueError(f"unknown pipeline stage {stage!r}")
        super().__init__(message)
        self.stage = stage


def stated_u95(uncertainty: dict | None) -> float | None:
    """The U95 a result states (fraction): ISO 748 with the clip's time sampling, when known.

    Results written before the time-sampling term give ISO 748's alone.
    """
    u = uncertainty or {}
    for key in ("u95", "iso_u95"):
        value = u.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


@dataclass
class ProcessingResult:
    """Everything one video produced (SI units), or where and why it failed."""

    video_path: Path
    success: bool = False
    error_stage: str | None = None
    error_message: str | None = None
    water_surface_elevation: float | None = None
    alpha: float | None = None
    num_frames: int = 0
    timestep_seconds: float | None = None
    pixel_gsd: float | None = None
    backend: str | None = None
    total_discharge: float | None = None
    total_area: float | None = None
    mean_velocity: float | None = None
    stiv_magnitudes: np.ndarray | None = None
    stiv_directions: np.ndarray | None = None
    stiv_normal_velocities: np.ndarray | None = None
    node_positions: np.ndarray | None = None
    node_stations: np.ndarray | None = None
    node_world_xy: np.ndarray | None = None
    node_velocity_xy: np.ndarray | None = None
    crs: str | None = None
    filled_nodes: int = 0
    valid_nodes: int = 0
    flagged_nodes: int = 0
    flag_counts: dict = field(default_factory=dict)
    node_flags: list[str] | None = None
    node_stride: np.ndarray | None = None
    node_sigma_v: np.ndarray | None = None
    node_window_median: np.ndarray | None = None
    node_window_spread: np.ndarray | None = None
    node_window_velocities: np.ndarray | None = None
    quality_windows: int = 0
    quality_rating: str | None = None
    quality_reasons: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    overrides: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    reused: bool = False
    motion: dict = field(default_factory=dict)
    measurement: dict = field(default_factory=dict)
    discharge_dataframe: pd.DataFrame | None = None
    discharge_uncertainty: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    decoder: str | None = None
    output_directory: Path | None = None
    processing_time_seconds: float = 0.0

    def scalars(self) -> dict[str, Any]:
        """Every scalar of the result with units in the key names (for ``results.json``)."""
        u = self.discharge_uncertainty or {}
        return {
            "video_path": str(self.video_path),
            "success": self.success,
            "status": "completed" if self.success else "failed",
            "error_stage": self.error_stage,
            "error_message": self.error_message,
            "water_surface_elevation_m": self.water_surface_elevation,
            "alpha": self.alpha,
            "num_frames": self.num_frames,
            "timestep_s": self.timestep_seconds,
            "pixel_gsd_m": self.pixel_gsd,
            "backend": self.backend,
            "discharge_m3s": self.total_discharge,
            "area_m2": self.total_area,
            "mean_velocity_ms": self.mean_velocity,
            "uncertainty_95": u.get("u95"),
            "quality_rating": self.quality_rating,
            "quality_rating_reasons": list(self.quality_reasons),
            "uncertainty_time_95": u.get("time_u95"),
            "window_discharges_m3s": list(u.get("window_discharges") or []),
            "uncertainty_iso_95": u.get("iso_u95"),
            "uncertainty_ive_95": u.get("ive_u95"),
            "uncertainty_iso_contributions": u.get("iso_contributions"),
            "uncertainty_ive_contributions": u.get("ive_contributions"),
            "uncertainty_ive_note": u.get("ive_note"),
            "filled_nodes": self.filled_nodes,
            "valid_nodes": self.valid_nodes,
            "flagged_nodes": self.flagged_nodes,
            "flag_counts": dict(self.flag_counts),
            "quality_windows": self.quality_windows,
            "strided_nodes": None
            if self.node_stride is None
            else int(np.sum(np.asarray(self.node_stride) > 1)),
            "num_nodes": None if self.stiv_magnitudes is None else int(len(self.stiv_magnitudes)),
            "warnings": list(self.warnings),
            "stage_seconds": dict(self.stage_seconds),
            "processing_time_s": self.processing_time_seconds,
            "camera_motion": dict(self.motion),
            "measurement": dict(self.measurement),
            "fingerprint": self.fingerprint,
            "overrides": [dict(o) for o in self.overrides],
            "inputs": dict(self.inputs),
            "provenance": dict(self.provenance),
        }

    def __repr__(self) -> str:
        if self.success:
            state = (
                f"Q={self.total_discharge:.4g} m3/s, A={self.total_area:.4g} m2, "
                f"{self.valid_nodes} valid / {self.filled_nodes} filled nodes"
            )
        else:
            state = f"failed at {self.error_stage}: {self.error_message}"
        return f"ProcessingResult({self.video_path.name}: {state})"

    def to_dataframe(self) -> pd.DataFrame:
        """Per-node results (SI): position, station, speed, direction, normal velocity, quality."""
        n = 0 if self.stiv_magnitudes is None else len(self.stiv_magnitudes)
        pos = self.node_positions if self.node_positions is not None else np.full((n, 2), np.nan)

        def col(values: Any) -> Any:
            return [np.nan] * n if values is None else values

        return pd.DataFrame(
            {
                "x_px": pos[:, 0] if n else [],
                "y_px": pos[:, 1] if n else [],
                "station_m": col(self.node_stations),
                "speed_ms": col(self.stiv_magnitudes),
                "direction_deg": col(self.stiv_directions),
                "normal_velocity_ms": col(self.stiv_normal_velocities),
                "stride": col(self.node_stride),
                "sigma_v_ms": col(self.node_sigma_v),
                "flags": self.node_flags if self.node_flags is not None else [""] * n,
            }
        )

    def to_xarray(self) -> Any:
        """Per-node results as a CF ``xarray.Dataset`` (what ``velocities.nc`` holds).

        Velocity components, speed, direction, normal velocity, sigma_v, flags and each
        node's source, at the nodes' station and world X, Y (with the site's CRS when the
        scaffold names one); the clip's time window as bounds. See :mod:`ivy_gpu.interop`.

        Raises
        ------
        ValueError
            For a failed result, or one read back without its per-node arrays.
        """
        from ivy_gpu.interop import velocity_dataset

        return velocity_dataset(self, stated_u95(self.discharge_uncertainty))

    @classmethod
    def from_scalars(
        cls,
        data: dict[str, Any],
        table: pd.DataFrame | None = None,
        output_directory: Path | None = None,
    ) -> ProcessingResult:
        """The result that :meth:`scalars` wrote (``results.json``), without per-node arrays."""
        return cls(
            video_path=Path(data.get("video_path") or ""),
            success=bool(data.get("success")),
            error_stage=data.get("error_stage"),
            error_message=data.get("error_message"),
            water_surface_elevation=data.get("water_surface_elevation_m"),
            alpha=data.get("alpha"),
            num_frames=data.get("num_frames") or 0,
            timestep_seconds=data.get("timestep_s"),
            pixel_gsd=data.get("pixel_gsd_m"),
            backend=data.get("backend"),
            total_discharge=data.get("discharge_m3s"),
            total_area=data.get("area_m2"),
            mean_velocity=data.get("mean_velocity_ms"),
            filled_nodes=data.get("filled_nodes") or 0,
            valid_nodes=data.get("valid_nodes") or 0,
            flagged_nodes=data.get("flagged_nodes") or 0,
            flag_counts=dict(data.get("flag_counts") or {}),
            quality_windows=data.get("quality_windows") or 0,
            quality_rating=data.get("quality_rating"),
            quality_reasons=list(data.get("quality_rating_reasons") or []),
            fingerprint=data.get("fingerprint"),
            overrides=[dict(o) for o in data.get("overrides") or [] if isinstance(o, dict)],
            motion=dict(data.get("camera_motion") or {}),
            measurement=dict(data.get("measurement") or {}),
            inputs=dict(data.get("inputs") or {}),
            provenance=dict(data.get("provenance") or {}),
            discharge_dataframe=table,
            discharge_uncertainty={
                "u95": data.get("uncertainty_95"),
                "time_u95": data.get("uncertainty_time_95"),
                "window_discharges": data.get("window_discharges_m3s") or [],
                "iso_u95": data.get("uncertainty_iso_95"),
                "ive_u95": data.get("uncertainty_ive_95"),
                "iso_contributions": data.get("uncertainty_iso_contributions"),
                "ive_contributions": data.get("uncertainty_ive_contributions"),
                "ive_note": data.get("uncertainty_ive_note"),
            },
            warnings=list(data.get("warnings") or []),
            stage_seconds=dict(data.get("stage_seconds") or {}),
            output_directory=output_directory,
            processing_time_seconds=data.get("processing_time_s") or 0.0,
        )


@dataclass
class BatchResult:
    """The results of a batch, in CSV order."""

    video_results: list[ProcessingResult]
    output_directory: Path | None = None
    batch_csv_path: Path | None = None
    processing_time_seconds: float = 0.0
    summary_error: str | None = None
    report_error: str | None = None
    record_error: str | None = None
    report_notes: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"BatchResult({self.total_videos} videos: {self.successful} completed, "
            f"{self.failed} failed)"
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per video (SI): the plain scalars of each result (no nested records)."""
        rows = [
            {k: v for k, v in r.scalars().items() if not isinstance(v, (dict, list))}
            for r in self.video_results
        ]
        return pd.DataFrame(rows)

    def to_xarray(self) -> Any:
        """The batch's discharges as a CF ``timeSeries`` ``xarray.Dataset`` (``record.nc``).

        Completed videos with a measurement time, in time order: discharge with its 95 %
        bounds, area, mean velocity, WSE and its source, quality rating, and the gauge's
        values when the batch had a gauge record. See :func:`ivy_gpu.interop.record_dataset`.
        """
        from ivy_gpu.interop import record_dataset

        u95 = [stated_u95(r.discharge_uncertainty) for r in self.video_results]
        return record_dataset(self.video_results, u95, **self.record)

    @property
    def total_videos(self) -> int:
        """Number of videos (rows) in the batch."""
        return len(self.video_results)

    @property
    def successful(self) -> int:
        """Number of videos that produced a discharge."""
        return sum(r.success for r in self.video_results)

    @property
    def failed(self) -> int:
        """Number of videos that failed."""
        return self.total_videos - self.successful

    def get_discharge_summary(self) -> dict[str, float]:
        """Min, max, mean, population std and count of the successful discharges (m^3/s)."""
        q = np.array([r.total_discharge for r in self.video_results if r.success], float)
        if q.size == 0:
            return {
                "min": float("nan"),
                "max": float("nan"),
                "mean": float("nan"),
                "std": float("nan"),
                "count": 0,
            }
        return {
            "min": float(q.min()),
            "max": float(q.max()),
            "mean": float(q.mean()),
            "std": float(q.std()),
            "count": int(q.size),
        }


def display_twins(result: ProcessingResult, display_units: str) -> dict[str, float | None]:
    """English values beside the SI ones (``discharge_cfs``, ...); nothing for SI sites."""
    u = unit_system(display_units)
    if u.name != "English":
        return {}
    ok = result.success

    def conv(v: float | None, f: float) -> float | None:
        return None if v is None else v * f

    return {
        "water_surface_elevation_ft": conv(result.water_surface_elevation, u.length),
        "discharge_cfs": conv(result.total_discharge if ok else None, u.discharge),
        "area_ft2": conv(result.total_area if ok else None, u.area),
        "mean_velocity_fts": conv(result.mean_velocity if ok else None, u.velocity),
    }
