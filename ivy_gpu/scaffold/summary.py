"""A scaffold in a few readable lines (``ivy-gpu info``): world units, sensible precision."""

from __future__ import annotations

import io

import numpy as np

from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.scaffold.rectify import Rectifier
from ivy_gpu.units import unit_system


def _world_line(config: ScaffoldConfig) -> np.ndarray | None:
    """World X, Y (m) of the section line's ends, None when the plan view has no world grid."""
    r = config.rectification
    if r.calibration_wse_m is None or config.calibration_size is None:
        return None
    try:
        rect = Rectifier(r, r.calibration_wse_m, config.calibration_size)
    except ValueError:
        return None
    if not rect.has_world_grid:
        return None
    line = np.asarray(config.cross_section_line, float)
    x, y = rect.pixel_to_world(line[:, 0], line[:, 1])
    return np.column_stack([x, y])


def describe(config: ScaffoldConfig) -> str:
    """A few human-readable lines about a scaffold (for ``ivy-gpu info``).

    Lengths are given in the display units, with metres beside them for English sites;
    the section line in world coordinates when the plan view has a world grid (camera
    matrix, or a homography with a world extent), with its plan-view pixels beside it.
    """
    u = unit_system(config.display_units)

    def length(m: float | None, digits: int = 3) -> str:
        if m is None:
            return "not recorded"
        if u.name == "English":
            return f"{m * u.length:.{digits}f} ft ({m:.{digits}f} m)"
        return f"{m:.{digits}f} m"

    r = config.rectification
    out = io.StringIO()
    out.write(f"scaffold: {config.path}\n")
    out.write(f"display units: {config.display_units} (WSE inputs in {u.length_label})\n")
    out.write(
        f"rectification: {r.method}, flips x={r.flip_x} y={r.flip_y}, "
        f"calibration WSE {length(r.calibration_wse_m)}\n"
    )
    if r.crs:
        out.write(f"coordinate system: {_crs_name(r.crs)}\n")
    pf = r.prefilters
    if not pf.identity:
        out.write(
            f"frame pre-filters (FFmpeg, folded into the tables): rotation {pf.rotation_deg} "
            f"deg, flips {list(pf.flips)}, lens (cx, cy, k1, k2) {pf.lens}\n"
        )
    if r.lens is not None:
        k = ", ".join(f"{v:.4g}" for v in r.lens.dist_coeffs.ravel())
        out.write(f"lens (OpenCV k1, k2, p1, p2, k3): {k}\n")
    size = config.calibration_size
    frame = f"{size[0]}x{size[1]}" if size else "not recorded"
    out.write(f"GSD: {length(config.pixel_gsd_m, 4)}/px; calibration frame: {frame}\n")
    if config.rectification_rmse_m is not None:
        out.write(f"rectification RMSE: {length(config.rectification_rmse_m, 3)}\n")
    px = np.asarray(config.cross_section_line, float)
    pixels = f"({px[0, 0]:.1f}, {px[0, 1]:.1f}) -> ({px[1, 0]:.1f}, {px[1, 1]:.1f}) px"
    world = _world_line(config)
    if world is not None:
        span = float(np.hypot(*(world[1] - world[0])))
        out.write(
            f"cross-section line: ({world[0, 0]:.2f}, {world[0, 1]:.2f}) -> "
            f"({world[1, 0]:.2f}, {world[1, 1]:.2f}) m, {length(span, 2)} long "
            f"(plan view {pixels}), starts on the {config.start_bank} bank, "
            f"{config.num_grid_points} nodes\n"
        )
    else:
        span = float(np.hypot(*(px[1] - px[0]))) * config.pixel_gsd_m
        out.write(
            f"cross-section line: {pixels}, {length(span, 2)} long at the GSD, starts on the "
            f"{config.start_bank} bank, {config.num_grid_points} nodes\n"
        )
    st = config.stiv
    out.write(
        f"search line: {st.num_pixels} px = {length(st.num_pixels * config.pixel_gsd_m, 2)}; "
        f"fan {st.phi_origin:g} deg +/- {st.phi_range:g} in {st.d_phi:g} deg steps; "
        f"speeds above {st.max_vel_threshold:g} m/s rejected\n"
    )
    out.write(f"STIV: {st.describe()}\n")
    cs = config.cross_section
    out.write(
        f"survey: {cs.stations.size} points, {length(cs.stations[-1] - cs.stations[0], 2)} "
        f"wide, bed {length(cs.elevations.min())}, surveyed in {cs.units} units\n"
    )
    return out.getvalue()


def _crs_name(crs: str) -> str:
    """A CRS's short name (``WGS 84 / UTM zone 35S (EPSG:32735)``), else as given."""
    try:
        from pyproj import CRS

        c = CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001 - no pyproj, or a name it does not know
        return crs if len(crs) <= 80 else crs[:77] + "..."
    epsg = c.to_epsg()
    return f"{c.name} (EPSG:{epsg})" if epsg else c.name
