"""One video to discharge: load the stack, grid, STIV, discharge, uncertainty, outputs.

Stages (``ProcessingResult.error_stage``): ``read`` (open and decode), ``rectify``
(tables and frames), ``grid`` (nodes and stations at this WSE), ``stiv``,
``discharge`` and ``save``. :func:`run_video` is the only place where a failure
becomes a result: a :class:`~ivy_gpu.results.StageError` keeps its stage, anything
unexpected is recorded against the stage in progress. ``results.json`` is written
once, at the end, with the final status and the real processing time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ivy_gpu import backends
from ivy_gpu.angles import geo_to_ari
from ivy_gpu.discharge import midsection
from ivy_gpu.engine import Engine
from ivy_gpu.grid import node_stations, place_nodes
from ivy_gpu.lock import FolderLock
from ivy_gpu.outputs import OutputContext, write_outputs, write_result_json
from ivy_gpu.params import StivParams
from ivy_gpu.provenance import fingerprint, inputs_of, provenance, utc_now
from ivy_gpu.quality import QualityRules, assess, downstream_normal, signed_normal, time_windows
from ivy_gpu.results import ProcessingResult, StageError, VideoConfig
from ivy_gpu.scaffold import ScaffoldConfig, as_scaffold
from ivy_gpu.stack import LoadedVideo, load_stack
from ivy_gpu.stiv import StivResult, run_stiv, run_stiv_windows
from ivy_gpu.uncertainty import UncertaintyInputs, discharge_uncertainty

Progress = Callable[[str, float, str], None]

__all__ = [
    "StageError",
    "analyse",
    "process_video",
    "quality_rules",
    "run_video",
    "stiv_params_for",
]


def stiv_params_for(
    scaffold: ScaffoldConfig, stiv: StivParams | Mapping[str, Any] | None = None
) -> StivParams:
    """The scaffold's STIV settings, replaced by ``stiv`` (a StivParams or some overrides)."""
    if isinstance(stiv, StivParams):
        return stiv
    return scaffold.stiv.replace(**dict(stiv or {}))


def analyse(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    loaded: LoadedVideo,
    engine: Engine,
    params: StivParams,
    result: ProcessingResult,
    progress: Progress | None = None,
    return_sti: bool = False,
    rules: QualityRules | None = None,
) -> StivResult:
    """Grid, STIV, quality control, discharge and uncertainty for a loaded stack.

    Fills ``result``; returns the STIV result (for the outputs).
    """
    rules = rules or QualityRules()
    rect = loaded.rectifier
    wse = float(video.water_surface_elevation)
    result.num_frames = int(loaded.stack.shape[0])
    result.timestep_seconds = loaded.dt
    result.pixel_gsd = rect.pixel_gsd
    result.warnings += loaded.warnings
    result.stage_seconds["read_rectify"] = loaded.seconds
    if loaded.motion is not None:
        result.motion = loaded.motion.as_dict()

    t = time.perf_counter()
    result.error_stage = "grid"  # the stage in progress, cleared on success
    try:
        nodes = loaded.nodes
        if nodes is None:
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
            rect.pixel_gsd,
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
    try:
        ox, oy = loaded.offset  # the stack may be a band of the plan view
        sr = run_stiv(
            loaded.stack,
            nodes[:, 0] - ox,
            nodes[:, 1] - oy,
            params,
            pixel_gsd=rect.pixel_gsd,
            d_t=loaded.dt,
            backend=engine,
            return_sti=return_sti,
        )
    except ValueError as exc:
        raise StageError("stiv", f"{video.video_path}: {exc}") from None
    result.backend = sr.backend
    result.stiv_magnitudes, result.stiv_directions = sr.magnitude, sr.direction
    try:
        n_hat, warn = downstream_normal(
            scaffold.cross_section_line, scaffold.start_bank, sr.magnitude, sr.direction
        )
    except ValueError as exc:
        raise StageError("stiv", f"{scaffold.path}: {exc}") from None
    if warn:
        result.warnings.append(warn)
    vn = signed_normal(sr.magnitude, sr.direction, n_hat)
    window_vn = _window_normals(loaded, nodes, sr, params, engine, n_hat, rules)
    quality = assess(sr, vn, ns.stations, window_vn, params.phi_range, rules)
    result.warnings += quality.notes
    result.stiv_normal_velocities = vn
    result.node_flags = quality.flag_strings()
    result.node_stride = sr.stride if sr.stride is not None else np.ones(len(vn), int)
    result.node_sigma_v = quality.sigma_v
    result.node_window_median = quality.window_median
    result.node_window_spread = quality.window_spread
    result.quality_windows = quality.windows
    counts = quality.counts()
    result.valid_nodes = counts["valid"]
    result.flagged_nodes = sum(1 for f in quality.flags if f)
    result.flag_counts = {k: v for k, v in counts.items() if k != "valid"}
    need = math.ceil(rules.min_valid_fraction * len(vn))
    if counts["valid"] < max(need, 1):
        raise StageError(
            "stiv",
            f"{video.video_path}: {counts['valid']} of {len(vn)} nodes gave a valid velocity "
            f"(need {max(need, 1)})",
        )
    result.stage_seconds["stiv"] = time.perf_counter() - t
    if progress:
        progress("discharge", 0.0, "")

    t = time.perf_counter()
    result.error_stage = "discharge"
    try:
        used = np.where(quality.excluded, np.nan, vn)
        stations = np.concatenate([[ns.left_edge], ns.stations, [ns.right_edge]])
        depth = scaffold.cross_section.depth_at(stations, wse)
        q = midsection(stations, depth, np.concatenate([[0.0], used, [0.0]]), video.alpha)
        inputs = UncertaintyInputs(
            scaffold.rectification_rmse_m or 0.0, ns.right_edge - ns.left_edge
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            # two halves of the clip are independent: the clip's mean has sigma_v / sqrt(2)
            u_p = quality.sigma_v / math.sqrt(2.0) / np.abs(used)
        u_p = np.concatenate(
            [[np.nan], u_p if quality.windows else np.full(len(vn), np.nan), [np.nan]]
        )
        unc = discharge_uncertainty(q.table, q.discharge, inputs, u_p)
    except ValueError as exc:
        raise StageError("discharge", f"{video.video_path}: {exc}") from None
    result.filled_nodes = q.filled_nodes
    if q.filled_nodes:
        result.warnings.append(
            f"{q.filled_nodes} of {len(vn)} node velocities were missing or flagged "
            "and filled by interpolation along the section"
        )
    if np.any(used < 0):
        result.warnings.append(
            f"{int(np.sum(used < 0))} node(s) move upstream and count as negative discharge"
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
    return sr


def _window_normals(
    loaded: LoadedVideo,
    nodes: np.ndarray,
    sr: StivResult,
    params: StivParams,
    engine: Engine,
    n_hat: np.ndarray,
    rules: QualityRules,
) -> np.ndarray | None:
    """Signed normal velocity of each node's best line in the sliding time windows.

    Each node's chosen line is re-measured in every window
    (:func:`ivy_gpu.quality.time_windows`); shape (windows, nodes), None when the clip is
    too short.
    """
    windows = time_windows(loaded.stack.shape[0], rules)
    if not windows:
        return None
    origin = geo_to_ari(params.phi_origin)
    best = np.where(np.isfinite(sr.best_phi_ari), sr.best_phi_ari, origin)
    phis = best[:, None]  # one line per node: the chosen one
    rect = loaded.rectifier
    ox, oy = loaded.offset
    results = run_stiv_windows(
        loaded.stack,
        nodes[:, 0] - ox,
        nodes[:, 1] - oy,
        params,
        windows,
        phis,
        pixel_gsd=rect.pixel_gsd,
        d_t=loaded.dt,
        backend=engine,
    )
    return np.array([signed_normal(r.magnitude, r.direction, n_hat) for r in results])


def run_video(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    *,
    output_directory: Path | None = None,
    backend: str = "auto",
    stiv: StivParams | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    preload: Callable[[], LoadedVideo] | None = None,
    keep_frames: bool = False,
    output_name: str | None = None,
    rules: QualityRules | None = None,
    stabilize: str | None = None,
) -> ProcessingResult:
    """Process one video; failures are recorded in the result (never raised).

    Results go to ``<output_directory>/<output_name or video stem>/``. ``preload``
    returns the stack when it was loaded elsewhere (a batch's prefetch); its
    exceptions are recorded like those of loading here.
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
    loaded_elsewhere = 0.0
    started = utc_now()
    rules = rules or QualityRules()
    try:
        result.error_stage = "read"
        engine = backends.get_engine(backend)
        params = stiv_params_for(scaffold, stiv)
        mode = stabilize_mode(scaffold, stabilize)
        result.inputs = inputs_of(video, params, rules, mode)
        if video.video_path.is_file():
            result.fingerprint = fingerprint(scaffold, video, params, rules, mode)
        if preload is not None:
            loaded = preload()
            loaded_elsewhere = loaded.seconds
        else:
            frames = out / "frames" if keep_frames and out is not None else None
            loaded = load_stack(scaffold, video, engine, frames, progress, params, mode)
        sr = analyse(
            scaffold,
            video,
            loaded,
            engine,
            params,
            result,
            progress,
            return_sti=out is not None,
            rules=rules,
        )
        if out is not None:
            t = time.perf_counter()
            result.error_stage = "save"
            write_outputs(OutputContext(out, scaffold, result, sr, loaded.first_frame))
            result.stage_seconds["save"] = time.perf_counter() - t
        result.success, result.error_stage = True, None
    except StageError as exc:
        result.error_stage, result.error_message = exc.stage, str(exc)
    except OSError as exc:  # files: the video while reading, the folder while saving
        where = out if result.error_stage == "save" else video.video_path
        reason = exc.strerror or str(exc)
        result.error_message = f"{where}: {reason} (in the {result.error_stage} stage)"
    except Exception as exc:  # unexpected: recorded against the stage in progress
        result.error_message = (
            f"{video.video_path}: unexpected {type(exc).__name__} in the "
            f"{result.error_stage} stage: {exc}"
        )
    if not result.success and result.error_stage is None:
        result.error_stage = "read"
    result.processing_time_seconds = time.perf_counter() - t0 + loaded_elsewhere
    if out is not None:
        result.provenance = provenance(scaffold, video, result.backend or str(backend), started)
        try:
            write_result_json(out, result, scaffold)
        except OSError as exc:
            if result.success:
                result.success, result.error_stage = False, "save"
                result.error_message = f"{out}: cannot write results ({exc})"
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
    refine: bool | None = None,
    stiv: StivParams | Mapping[str, Any] | None = None,
    compat: str | None = None,
    min_valid_fraction: float = 0.5,
    stabilize: str | None = None,
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
    refine : bool, optional
        Sub-step STIV refinement (default: the scaffold's setting, on unless it says off).
    stiv : StivParams or mapping, optional
        STIV settings, or overrides of the scaffold's (e.g. ``{"method": "gradient"}``).
    compat : {None, "ivytools"}
        ``"ivytools"``: STIV sampled exactly as the IVyTools python port (its search-line
        geometry, nearest sampling, no refinement); everything else stays corrected.
    min_valid_fraction : float
        Fail at stage ``stiv`` when fewer nodes than this fraction give a valid,
        unflagged velocity.
    stabilize : {None, "auto", "on", "off"}
        Camera-motion correction (:mod:`ivy_gpu.stabilize`); None: ``on`` when the
        scaffold's ``ffmpeg_parameters.stabilize`` is set, else ``auto``.

    Returns
    -------
    ProcessingResult
        ``success`` False with ``error_stage`` / ``error_message`` on failure.

    Raises
    ------
    ValueError
        Unreadable scaffold, invalid arguments or an unusable backend (before any
        processing).
    """
    from ivy_gpu.video import parse_time

    scaffold = as_scaffold(scaffold_path)
    backends.resolve_backend(backend)
    params = stiv_params_for(scaffold, stiv)
    if refine is not None:
        params = params.replace(refine=refine)
    params = params.with_compat(compat)
    rules = quality_rules(min_valid_fraction)
    mode = stabilize_mode(scaffold, stabilize)
    video = VideoConfig(
        Path(video_path),
        water_surface_elevation,
        alpha,
        parse_time(start_time, "start_time"),
        parse_time(end_time, "end_time"),
        frame_step,
        max_frames,
    )
    if output_directory is not None:
        with FolderLock(output_directory):
            return run_video(
                scaffold,
                video,
                output_directory=Path(output_directory),
                backend=backend,
                stiv=params,
                progress=progress,
                keep_frames=keep_frames,
                rules=rules,
                stabilize=mode,
            )
    return run_video(
        scaffold,
        video,
        output_directory=None,
        backend=backend,
        stiv=params,
        progress=progress,
        keep_frames=keep_frames,
        rules=rules,
        stabilize=mode,
    )


def stabilize_mode(scaffold: ScaffoldConfig, stabilize: str | None) -> str:
    """``auto``, ``on`` or ``off``: as given, else ``on`` when the scaffold asks for it."""
    from ivy_gpu.checks import check_choice
    from ivy_gpu.stabilize import MODES

    if stabilize is None:
        flag = (scaffold.project.get("ffmpeg_parameters") or {}).get("stabilize")
        return "on" if flag is True else "auto"
    return check_choice("stabilize", stabilize, MODES)


def quality_rules(min_valid_fraction: float = 0.5) -> QualityRules:
    """Quality rules with a checked ``min_valid_fraction`` (in [0, 1])."""
    from ivy_gpu.checks import check_range

    return QualityRules(
        min_valid_fraction=check_range("min_valid_fraction", min_valid_fraction, 0, 1)
    )
