"""``validate``: a dry run of everything that can fail before frames are read.

"ok" means ``process`` will not fail before decoding: the remap tables build at the
WSE, the grid and the stations are placed, enough nodes have a search line inside the
rectified image, and (per batch row) the video opens with the calibration's frame
size and the selected times lie inside it.
"""

from __future__ import annotations

import math

import numpy as np

from ivy_gpu.frames.stack import rectifier_for
from ivy_gpu.hydraulics.grid import node_stations, place_nodes
from ivy_gpu.params import VideoConfig
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.scaffold.rectify import check_frame_size
from ivy_gpu.stiv.lines import line_geometry
from ivy_gpu.stiv.quality import QualityRules


def check_site(scaffold: ScaffoldConfig, wse_m: float, rules: QualityRules | None = None) -> None:
    """Raise ``ValueError`` (one line) if processing at ``wse_m`` would fail before STIV.

    Builds the remap tables, places the nodes and their stations, and counts the nodes
    with at least one search line inside the rectified image.
    """
    rules = rules or QualityRules()
    src = str(scaffold.path)
    cm = scaffold.rectification.camera_matrix
    if cm is not None and not np.all(np.isfinite(cm)):
        raise ValueError(f"{src}: the camera matrix holds NaN or infinite values")
    try:
        rect = rectifier_for(scaffold, wse_m)
    except Exception as exc:  # StageError / ValueError / numerical failures
        said = str(exc)
        if said.startswith(f"{src}: cannot build the remap tables"):
            raise ValueError(said) from None  # rectifier_for said it already
        raise ValueError(
            f"{src}: cannot build the remap tables at WSE {wse_m:.3f} m ({said})"
        ) from None
    rows, cols = rect.output_shape
    if rows < 2 or cols < 2:
        raise ValueError(f"{src}: the rectified image is {cols} x {rows} px (check the extent)")
    if not np.isfinite(rect.map_x).any():
        raise ValueError(f"{src}: no pixel of the rectified image maps into the camera frame")
    line = scaffold.cross_section_line
    if np.hypot(*(line[1] - line[0])) == 0:
        raise ValueError(f"{src}: the cross-section line has zero length")
    try:
        nodes = place_nodes(
            line,
            scaffold.num_grid_points,
            rect.output_shape,
            scaffold.results_grid,
            scaffold.mask_polygons,
        )
    except ValueError as exc:
        raise ValueError(f"{src}: {exc}") from None
    node_stations(nodes, line, scaffold.cross_section, wse_m, rect.pixel_gsd, scaffold.start_bank)
    lines = line_geometry(nodes, scaffold.stiv, cols, rows)
    n_ang = lines.phis.shape[1]
    usable = np.zeros(nodes.shape[0], bool)
    usable[np.unique(lines.pairs // n_ang)] = True
    need = max(1, math.ceil(rules.min_valid_fraction * nodes.shape[0]))
    if usable.sum() < need:
        raise ValueError(
            f"{src}: only {int(usable.sum())} of {nodes.shape[0]} nodes have a search line inside "
            f"the {cols} x {rows} px rectified image (need {need}); check the line and the extent"
        )


#: A GCP fit worse than this (RMSE, metres) is worth a warning: the plan view may be off.
GCP_RMSE_WARN_M = 0.25


def site_warnings(scaffold: ScaffoldConfig) -> list[str]:
    """What is legal in a scaffold but suspicious, one line each naming the key.

    Too few GCPs to check the camera against, GCPs that repeat, and GCPs the camera fits
    badly (RMSE above :data:`GCP_RMSE_WARN_M`).
    """
    src, r = str(scaffold.path), scaffold.rectification
    out: list[str] = []
    where = f"{src}: rectification_parameters.world_coords"
    if r.world_coords is not None and r.pixel_coords is not None:
        world = np.asarray(r.world_coords, float)
        n, distinct = len(world), len(np.unique(world.round(6), axis=0))
        if r.method == "camera matrix" and n < 6:
            out.append(
                f"{where}: {n} GCP(s); at least 6 are needed to check the camera matrix "
                "against them (its RMSE is not known)"
            )
        if distinct < n:
            out.append(f"{where}: only {distinct} of the {n} GCPs are distinct points")
    rmse = scaffold.rectification_rmse_m
    if rmse is not None and math.isfinite(rmse) and rmse > GCP_RMSE_WARN_M:
        out.append(
            f"{src}: rectification_rmse_m: the GCPs fit the camera with an RMSE of {rmse:.2f} m "
            f"(above {GCP_RMSE_WARN_M} m): check the GCPs before trusting the plan view"
        )
    return out


def check_row(scaffold: ScaffoldConfig, video: VideoConfig) -> None:
    """Raise ``ValueError`` (one line) if this video would fail before STIV."""
    from ivy_gpu.frames.video import probe

    info = probe(video.video_path)
    if scaffold.calibration_size is None:
        raise ValueError(f"{scaffold.path}: the scaffold records no calibration frame size")
    check_frame_size((info.width, info.height), scaffold.calibration_size, str(video.video_path))
    start = video.start_time or 0.0
    if info.duration_s is not None and start >= info.duration_s:
        raise ValueError(
            f"{video.video_path}: start_time {start} s is past the end of the video "
            f"({info.duration_s:.2f} s)"
        )
    check_site(scaffold, video.water_surface_elevation)
