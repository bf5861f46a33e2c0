"""From a loaded stack to discharge: grid, STIV, quality control, discharge, uncertainty.

:func:`analyse` runs the stages after decoding for :func:`ivy_gpu.pipeline.process.run_video`; each
failure is a :class:`~ivy_gpu.results.StageError` carrying its stage.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from ivy_gpu.engines.base import Engine
from ivy_gpu.frames.stack import LoadedVideo, site_nodes
from ivy_gpu.hydraulics.discharge import midsection
from ivy_gpu.hydraulics.grid import node_stations
from ivy_gpu.hydraulics.uncertainty import UncertaintyInputs, discharge_uncertainty, rating
from ivy_gpu.params import StivParams, VideoConfig
from ivy_gpu.results import ProcessingResult, StageError
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.stiv.driver import StivResult, run_stiv
from ivy_gpu.stiv.quality import (
    QualityRules,
    assess,
    downstream_normal,
    gradient_check,
    outliers,
    signed_normal,
    window_normals,
    zero_speed_ratios,
)

Progress = Callable[[str, float, str], None]


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
            nodes = site_nodes(scaffold, rect.output_shape)
        ns = node_stations(
            nodes,
            scaffold.cross_section_line,
            scaffold.cross_section,
            wse,
            rect.pixel_gsd,
            scaffold.start_bank,
        )
    except ValueError as exc:
        raise StageError("grid", f"{scaffold.path}: {exc}") from None
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
    try:
        n_hat, warn = downstream_normal(
            scaffold.cross_section_line, scaffold.start_bank, sr.magnitude, sr.direction
        )
    except ValueError as exc:
        raise StageError("stiv", f"{scaffold.path}: {exc}") from None
    if warn:
        result.warnings.append(warn)
    vn = signed_normal(sr.magnitude, sr.direction, n_hat)
    zero_ratio = zero_speed_ratios(loaded, nodes, sr, params, engine, rules)
    window_vn = window_normals(loaded, nodes, sr, params, engine, n_hat, rules)
    quality = assess(sr, vn, ns.stations, window_vn, params.phi_range, rules, zero_ratio)
    # still water reads 0 m/s, whatever a stride found
    vn, magnitude = quality.velocity(vn), quality.velocity(sr.magnitude)
    stride = sr.stride if sr.stride is not None else np.ones(len(vn), int)
    stride = np.where(quality.still, 1, stride)
    result.warnings += quality.notes
    check = gradient_check(loaded, nodes, sr, params, engine, rules)
    if check:
        result.warnings.append(check)
    result.stiv_magnitudes, result.stiv_directions = magnitude, sr.direction
    result.node_velocity_xy, result.node_world_xy = world_vectors(
        rect, nodes, magnitude, sr.direction
    )
    result.crs = rect.params.crs if result.node_world_xy is not None else None
    result.stiv_normal_velocities = vn
    result.node_flags = quality.flag_strings()
    result.node_stride = stride
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
    used = np.where(quality.excluded, np.nan, vn)
    window_used = None
    if window_vn is not None:  # what each time window says of the nodes the clip kept
        window_used = window_velocities(window_vn, used, quality.still, ns.stations, rules)
        result.node_window_velocities = window_vn
    try:
        q, unc = section_discharge(
            scaffold,
            ns,
            wse,
            used,
            video.alpha,
            quality,
            node_sources(vn, quality.excluded),
            window_used,
        )
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
    result.discharge_uncertainty = dataclasses.asdict(unc)
    result.quality_rating, result.quality_reasons = rating(
        unc.u95, q.filled_nodes, len(vn), quality.windows
    )
    result.stage_seconds["discharge"] = time.perf_counter() - t
    return sr


def world_vectors(
    rect, nodes: np.ndarray, speed: np.ndarray, direction_geo: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each node's velocity components and world position.

    On a world grid (camera matrix, or a homography with a world extent) the components are
    world X and Y (east and north in a projected CRS; the plan view's flips undone) and the
    positions world X, Y (m); otherwise the components are the plan view's right and up and
    there is no world position (None).
    """
    theta = np.deg2rad(np.asarray(direction_geo, float))
    s = np.asarray(speed, float)
    vx, vy = s * np.sin(theta), s * np.cos(theta)  # plan view: right, up
    if not rect.has_world_grid:
        return np.column_stack([vx, vy]), None
    x, y = rect.pixel_to_world(nodes[:, 0], nodes[:, 1])
    fx = -1.0 if rect.params.flip_x else 1.0
    fy = -1.0 if rect.params.flip_y else 1.0
    return np.column_stack([fx * vx, fy * vy]), np.column_stack([x, y])


def window_velocities(
    window_vn: np.ndarray,
    used: np.ndarray,
    fixed: np.ndarray,
    stations: np.ndarray,
    rules: QualityRules,
) -> np.ndarray:
    """The node velocities of each time window that its discharge uses (NaN: filled).

    ``window_vn`` (windows, nodes) is what each window measured; ``used`` the clip's
    velocity per node (NaN where left out: left out of every window too); ``fixed`` the
    nodes whose value does not come from the windows (still water, a value set by hand),
    which keep ``used``. In each window a node that fails the normalized median test
    against its neighbours in that window (a glint in part of the clip) is left out too, as
    a clip of that window alone would leave it out.
    """
    out = np.where(np.isfinite(used), np.asarray(window_vn, float), np.nan)
    out[:, fixed] = np.asarray(used, float)[fixed]
    order = np.argsort(stations, kind="stable")
    for row in out:
        bad = np.zeros(row.size, bool)
        bad[order] = outliers(row[order], rules)
        row[bad & ~fixed] = np.nan
    return out


def node_sources(vn: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Each node's ``Source``: ``measured``, ``excluded`` (measured, left out) or ``filled``."""
    vn = np.asarray(vn, float)
    src = np.where(np.asarray(excluded, bool), "excluded", "measured").astype(object)
    src[~np.isfinite(vn)] = "filled"
    return src


def section_discharge(
    scaffold,
    ns,
    wse: float,
    used: np.ndarray,
    alpha: float,
    quality,
    sources=None,
    window_used: np.ndarray | None = None,
):
    """Mid-section discharge of the kept normal velocities and its uncertainty.

    ``sources`` (:func:`node_sources`) labels the node rows of the table; the water edges
    are ``edge``. ``window_used`` (windows, nodes) are the node velocities of each time
    window (NaN where left out, filled like the clip's): their discharges give the
    time-sampling term of the stated U95
    (:func:`ivy_gpu.hydraulics.uncertainty.time_sampling`).

    The measured spread of each node over the time windows replaces ISO 748's assumed
    point-velocity term: two halves of the clip are independent, so the clip's value has
    ``sigma_v / sqrt(2)``.
    """
    stations = np.concatenate([[ns.left_edge], ns.stations, [ns.right_edge]])
    depth = scaffold.cross_section.depth_at(stations, wse)
    source = None if sources is None else np.concatenate([["edge"], sources, ["edge"]])
    q = midsection(stations, depth, np.concatenate([[0.0], used, [0.0]]), alpha, source)
    inputs = UncertaintyInputs(scaffold.rectification_rmse_m or 0.0, ns.right_edge - ns.left_edge)
    u_p = np.full(len(used), np.nan)
    if quality.windows:
        with np.errstate(invalid="ignore", divide="ignore"):
            u_p = quality.sigma_v / math.sqrt(2.0) / np.abs(used)  # inf at still nodes:
        u_p[~np.isfinite(u_p)] = np.nan  # they carry no discharge
    u_p = np.concatenate([[np.nan], u_p, [np.nan]])
    q_windows = None
    if window_used is not None:
        zero = np.zeros((len(window_used), 1))
        q_windows = [
            midsection(stations, depth, v, alpha).discharge
            for v in np.hstack([zero, window_used, zero])
        ]
    return q, discharge_uncertainty(q.table, q.discharge, inputs, u_p, q_windows)
