"""One video to discharge: stream, rectify, STIV, discharge, uncertainty, outputs.

Stages (``ProcessingResult.error_stage``): ``read`` (open and decode), ``rectify``
(tables and frames), ``grid`` (nodes and stations at this WSE), ``stiv``,
``discharge`` and ``save``. Decoded frames go straight through the remap tables
into a preallocated stack (device memory on the GPU backend); nothing is written
to disk unless ``keep_frames`` is set. Every output file is written atomically.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ivy_gpu import backends
from ivy_gpu.discharge import midsection, normal_component
from ivy_gpu.fileio import atomic_write_text
from ivy_gpu.grid import node_stations, place_nodes
from ivy_gpu.rectify import Rectifier, check_frame_size
from ivy_gpu.results import ERROR_STAGES, ProcessingResult, VideoConfig
from ivy_gpu.scaffold import ScaffoldConfig, as_scaffold
from ivy_gpu.stiv import stiv_exhaustive
from ivy_gpu.uncertainty import UncertaintyInputs, discharge_uncertainty
from ivy_gpu.units import unit_system
from ivy_gpu.video import FrameReader, frame_interval

Progress = Callable[[str, float, str], None]


class StageError(Exception):
    """A failure inside one pipeline stage."""

    def __init__(self, stage: str, message: str) -> None:
        if stage not in ERROR_STAGES:
            raise ValueError(f"unknown pipeline stage {stage!r}")
        super().__init__(message)
        self.stage = stage


# --------------------------------------------------------------------------- files
def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _clean(o: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


# --------------------------------------------------------------------------- stack
@dataclass
class LoadedVideo:
    """A rectified stack ready for STIV."""

    stack: Any
    times: np.ndarray
    dt: float
    rectifier: Rectifier
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


_RECTIFIERS: dict[tuple, tuple[ScaffoldConfig, Rectifier]] = {}


def rectifier_for(scaffold: ScaffoldConfig, wse_m: float) -> Rectifier:
    """Remap tables for (scaffold, WSE), cached so a batch at one WSE builds them once.

    The cache holds the scaffold itself, so its ``id`` cannot be reused while cached.
    """
    if scaffold.calibration_size is None:
        raise StageError(
            "rectify",
            f"{scaffold.path}: the scaffold records no calibration frame "
            "size (video_metadata or calibration image)",
        )
    key = (id(scaffold), round(float(wse_m), 6))
    entry = _RECTIFIERS.get(key)
    if entry is None or entry[0] is not scaffold:
        if len(_RECTIFIERS) > 8:
            _RECTIFIERS.clear()
        entry = (scaffold, Rectifier(scaffold.rectification, wse_m, scaffold.calibration_size))
        _RECTIFIERS[key] = entry
    return entry[1]


def load_stack(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    backend: str = "numba",
    keep_frames: Path | None = None,
    progress: Progress | None = None,
) -> LoadedVideo:
    """Decode, convert to gray and rectify the selected frames into one stack.

    Raises
    ------
    StageError
        ``read`` for a missing, corrupt or too short video; ``rectify`` for a frame
        size that differs from the calibration image.
    """
    t0 = time.perf_counter()
    path = video.video_path
    try:
        reader = FrameReader(
            path, video.start_time, video.end_time, video.frame_step, video.max_frames
        )
    except ValueError as exc:
        raise StageError("read", str(exc)) from None
    try:
        rect = rectifier_for(scaffold, video.water_surface_elevation)
    except ValueError as exc:
        raise StageError("rectify", str(exc)) from None
    try:
        check_frame_size((reader.info.width, reader.info.height), rect.frame_size, str(path))
    except ValueError as exc:
        raise StageError("rectify", str(exc)) from None
    rows, cols = rect.output_shape
    capacity = reader.expected_frames()
    gpu = backend == "cupy"
    if gpu:
        import cupy
        import cupyx.scipy.ndimage as cnd

        from ivy_gpu.kernels.remap import remap_xp

        xp = cupy
        map_x, map_y = cupy.asarray(rect.map_x), cupy.asarray(rect.map_y)
    else:
        xp = np
    stack = xp.empty((capacity, rows, cols), dtype=np.uint8)
    times = []
    try:
        for i, t, luma in reader:
            if i >= stack.shape[0]:
                grown = xp.empty((2 * stack.shape[0], rows, cols), dtype=np.uint8)
                grown[: stack.shape[0]] = stack
                stack = grown
            if gpu:
                out = remap_xp(cupy.asarray(luma), map_x, map_y, cupy, cnd, rect.interpolation)
                stack[i] = cupy.clip(cupy.rint(out), 0, 255).astype(np.uint8)
            else:
                stack[i] = rect.rectify(luma)
            times.append(t)
            if keep_frames is not None:
                import cv2

                keep_frames.mkdir(parents=True, exist_ok=True)
                frame = stack[i].get() if gpu else stack[i]
                cv2.imwrite(str(keep_frames / f"t{i:05d}.png"), frame)
            if progress and i % 10 == 0:
                progress("read", min(1.0, (i + 1) / capacity), f"frame {i + 1}")
    except ValueError as exc:
        raise StageError("read", str(exc)) from None
    n = len(times)
    if n < 4:
        raise StageError(
            "read", f"{path}: only {n} frames in the selected time range (STIV needs at least 4)"
        )
    stack = stack[:n]
    times_arr = np.asarray(times)
    dt, warn = frame_interval(times_arr, video.frame_step, reader.info.fps)
    return LoadedVideo(stack, times_arr, dt, rect, [warn] if warn else [], time.perf_counter() - t0)


# --------------------------------------------------------------------------- analysis
def analyse(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    loaded: LoadedVideo,
    backend: str,
    output_directory: Path | None,
    result: ProcessingResult,
    progress: Progress | None = None,
    refine: bool = True,
) -> ProcessingResult:
    """Grid, STIV, discharge, uncertainty and outputs for a loaded stack (fills ``result``)."""
    rect = loaded.rectifier
    wse = float(video.water_surface_elevation)
    result.num_frames = int(loaded.stack.shape[0])
    result.timestep_seconds = loaded.dt
    result.pixel_gsd = rect.gsd
    result.warnings += loaded.warnings
    result.stage_seconds["read_rectify"] = loaded.seconds

    t = time.perf_counter()
    result.error_stage = "grid"  # the stage in progress, cleared on success
    try:
        nodes = place_nodes(
            scaffold.cross_section_line,
            scaffold.num_grid_points,
            rect.output_shape,
            scaffold.results_grid,
            scaffold.mask_polygons,
        )
        ns = node_stations(
            nodes,
            scaffold.cross_section_line,
            scaffold.cross_section,
            wse,
            rect.gsd,
            scaffold.start_bank,
        )
    except ValueError as exc:
        raise StageError("grid", str(exc)) from None
    result.warnings += list(ns.warnings)
    result.node_positions, result.node_stations = nodes, ns.stations
    result.stage_seconds["grid"] = time.perf_counter() - t
    if progress:
        progress("stiv", 0.0, f"{len(nodes)} nodes")

    t = time.perf_counter()
    result.error_stage = "stiv"
    s = scaffold.stiv
    try:
        sr = stiv_exhaustive(
            loaded.stack,
            nodes[:, 0],
            nodes[:, 1],
            num_pixels=s.num_pixels,
            phi_origin=s.phi_origin,
            d_phi=s.d_phi,
            phi_range=s.phi_range,
            pixel_gsd=rect.gsd,
            d_t=loaded.dt,
            sigma=s.sigma,
            max_vel_threshold=s.max_vel_threshold,
            refine=refine,
            backend=backend,
            return_sti=output_directory is not None,
        )
    except (ValueError, RuntimeError) as exc:
        raise StageError("stiv", str(exc)) from None
    result.backend = sr.backend
    result.stiv_magnitudes, result.stiv_directions = sr.magnitude, sr.direction
    result.stage_seconds["stiv"] = time.perf_counter() - t
    if progress:
        progress("discharge", 0.0, "")

    t = time.perf_counter()
    result.error_stage = "discharge"
    try:
        vn = normal_component(sr.magnitude, sr.direction, scaffold.cross_section_line)
        stations = np.concatenate([[ns.left_edge], ns.stations, [ns.right_edge]])
        depth = scaffold.cross_section.depth_at(stations, wse)
        q = midsection(stations, depth, np.concatenate([[0.0], vn, [0.0]]), video.alpha)
        inputs = UncertaintyInputs(
            scaffold.rectification_rmse_m or 0.0, ns.right_edge - ns.left_edge
        )
        unc = discharge_uncertainty(q.table, q.discharge, inputs)
    except ValueError as exc:
        raise StageError("discharge", str(exc)) from None
    result.stiv_normal_velocities = vn
    result.filled_nodes = q.filled_nodes
    if q.filled_nodes:
        result.warnings.append(
            f"{q.filled_nodes} of {len(vn)} node velocities were missing "
            "and filled by interpolation along the section"
        )
    result.total_discharge, result.total_area = q.discharge, q.area
    result.mean_velocity = q.mean_velocity
    result.discharge_dataframe = q.table
    result.discharge_uncertainty = {
        "iso_u95": unc.iso_u95,
        "ive_u95": unc.ive_u95,
        "iso_contributions": unc.iso_contributions,
        "ive_contributions": unc.ive_contributions,
        "ive_note": unc.ive_note,
    }
    result.stage_seconds["discharge"] = time.perf_counter() - t
    result.success = True
    result.error_stage = None

    if output_directory is not None:
        t = time.perf_counter()
        result.error_stage = "save"
        try:
            write_outputs(output_directory, scaffold, loaded, result, sr, q.table)
        except OSError as exc:
            result.success = False
            raise StageError("save", f"{output_directory}: cannot write results ({exc})") from None
        result.error_stage = None
        result.stage_seconds["save"] = time.perf_counter() - t
    return result


def write_outputs(
    out: Path,
    scaffold: ScaffoldConfig,
    loaded: LoadedVideo,
    result: ProcessingResult,
    sr,
    table: pd.DataFrame,
) -> None:
    """Per-video files; ``results.json`` last, so its presence marks a complete video."""
    from ivy_gpu import figures

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "discharge_table.csv", table.to_csv(index=False))
    nodes = result.node_positions
    stiv_table = pd.DataFrame(
        {
            "x_px": nodes[:, 0],
            "y_px": nodes[:, 1],
            "station_m": result.node_stations,
            "speed_ms": sr.magnitude,
            "direction_deg": sr.direction,
            "normal_velocity_ms": result.stiv_normal_velocities,
            "theta_deg": sr.theta,
            "score": sr.score,
        }
    )
    atomic_write_text(out / "stiv_results.csv", stiv_table.to_csv(index=False, float_format="%.5f"))
    stack = loaded.stack
    first = stack[0].get() if hasattr(stack, "get") else np.asarray(stack[0])
    figures.rectified_vectors(
        out / "rectified_vectors.png",
        first,
        nodes,
        scaffold.cross_section_line,
        sr.magnitude,
        sr.direction,
        f"{result.video_path.name}: Q = {result.total_discharge:.3f} m³/s",
    )
    if sr.sti is not None:
        ids = sorted({int(k) for k in np.linspace(0, len(nodes) - 1, 4).round()})
        figures.best_stis(out / "best_stis.png", sr.sti, ids, sr.theta)
    u = unit_system(scaffold.display_units)
    figures.section_profile(
        out / "section.png",
        table["Station Distance"].to_numpy(),
        table["Depth"].to_numpy(),
        table["Surface Velocity"].to_numpy(),
        u.length_label,
        u.length,
        u.velocity_label,
        u.velocity,
    )
    finalize_result_json(out, result, scaffold)


def finalize_result_json(
    out: Path,
    result: ProcessingResult,
    scaffold: ScaffoldConfig | None,
    video: VideoConfig | None = None,
) -> None:
    """Write ``results.json`` (every scalar, units in the key names, display values added)."""
    data = result.scalars()
    if scaffold is not None:
        u = unit_system(scaffold.display_units)
        data["display_units"] = u.name
        if result.success:
            data["discharge_display"] = result.total_discharge * u.discharge
            data["discharge_display_units"] = u.discharge_label
            data["area_display"] = result.total_area * u.area
            data["area_display_units"] = u.area_label
    if video is not None or result.alpha is not None:
        data["inputs"] = {
            "water_surface_elevation_m": result.water_surface_elevation,
            "alpha": result.alpha,
        }
    atomic_write_text(
        out / "results.json", json.dumps(_clean(data), indent=1, default=_json_default)
    )


# --------------------------------------------------------------------------- public
def run_video(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    output_directory: Path | None,
    backend: str = "auto",
    progress: Progress | None = None,
    loaded: LoadedVideo | None = None,
    keep_frames: bool = False,
    refine: bool = True,
    output_name: str | None = None,
) -> ProcessingResult:
    """Process one video; failures are recorded in the result (never raised).

    Results go to ``<output_directory>/<output_name or video stem>/``.
    """
    t0 = time.perf_counter()
    result = ProcessingResult(
        video_path=video.video_path,
        water_surface_elevation=float(video.water_surface_elevation),
        alpha=float(video.alpha),
    )
    out = None
    if output_directory is not None:
        out = Path(output_directory) / (output_name or video.video_path.stem)
        result.output_directory = out
    try:
        name = backends.resolve_backend(backend)
        if loaded is None:
            loaded = load_stack(
                scaffold, video, name, out / "frames" if keep_frames and out else None, progress
            )
        analyse(scaffold, video, loaded, name, out, result, progress, refine)
    except StageError as exc:
        result.success = False
        result.error_stage, result.error_message = exc.stage, str(exc)
    except (ValueError, RuntimeError) as exc:  # backend resolution
        result.success = False
        result.error_stage, result.error_message = "stiv", str(exc)
    except Exception as exc:  # unexpected: recorded against the stage in progress
        result.success = False
        result.error_stage = result.error_stage or "read"
        result.error_message = (
            f"{video.video_path}: unexpected {type(exc).__name__} in the "
            f"{result.error_stage} stage: {exc}"
        )
    result.processing_time_seconds = time.perf_counter() - t0
    if out is not None and not result.success:
        try:
            finalize_result_json(out, result, scaffold)
        except OSError:
            pass
    if progress:
        progress("done", 1.0, "completed" if result.success else f"failed: {result.error_stage}")
    return result


def process_video(
    scaffold_path: str | Path | ScaffoldConfig,
    video_path: str | Path,
    water_surface_elevation: float,
    output_directory: str | Path | None = None,
    alpha: float = 0.85,
    start_time: float | str | None = None,
    end_time: float | str | None = None,
    frame_step: int = 1,
    max_frames: int | None = None,
    backend: str = "auto",
    progress: Progress | None = None,
    keep_frames: bool = False,
    refine: bool = True,
) -> ProcessingResult:
    """Turn one video into discharge.

    Parameters
    ----------
    scaffold_path : path or ScaffoldConfig
        The site's IVyTools scaffold.
    video_path : path
        The video.
    water_surface_elevation : float
        WSE of this video, **metres**.
    output_directory : path, optional
        Results go to ``<output_directory>/<video_stem>/``; none are written if omitted.
    alpha : float
        Surface-to-mean velocity coefficient.
    start_time, end_time : float or str, optional
        Seconds or ``MM:SS`` / ``HH:MM:SS[.fff]``.
    frame_step, max_frames : int
        Keep every k-th frame; stop after M frames.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend.
    progress : callable, optional
        ``progress(stage, fraction, message)``.
    keep_frames : bool
        Also write the rectified frames as PNG under ``frames/``.
    refine : bool
        Sub-step STIV refinement (default on).

    Returns
    -------
    ProcessingResult
        ``success`` False with ``error_stage`` / ``error_message`` on failure.

    Raises
    ------
    ValueError
        Unreadable scaffold or invalid arguments (before any processing).
    """
    from ivy_gpu.video import parse_time

    scaffold = as_scaffold(scaffold_path)
    video = VideoConfig(
        Path(video_path),
        float(water_surface_elevation),
        alpha,
        parse_time(start_time, "start_time"),
        parse_time(end_time, "end_time"),
        frame_step,
        max_frames,
    )
    return run_video(
        scaffold,
        video,
        None if output_directory is None else Path(output_directory),
        backend,
        progress,
        keep_frames=keep_frames,
        refine=refine,
    )
