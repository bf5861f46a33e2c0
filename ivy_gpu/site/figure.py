"""The picture a hydrologist checks before processing a thousand videos (``ivy-gpu site show``).

Left: the calibration frame with the GCPs as picked (circles) and as the solved
camera reprojects them (crosses, joined by the residual), the section line, the
nodes and the search-line fan, all carried from the plan view into the frame
through the remap tables (so lens, pre-filters and flips are honoured). Right: the
plan view at the WSE with the same line, nodes and fan.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from ivy_gpu.angles import geo_to_ari
from ivy_gpu.checks import decode_image
from ivy_gpu.report.figures import _figure, _save
from ivy_gpu.scaffold.ivyfile import CALIBRATION_IMAGE, ScaffoldConfig
from ivy_gpu.scaffold.rectify import Rectifier
from ivy_gpu.stiv.lines import search_angles


def calibration_frame(scaffold: ScaffoldConfig) -> np.ndarray | None:
    """The scaffold's stored calibration image (BGR), if any."""
    data = scaffold.members.get(CALIBRATION_IMAGE)
    if not data:
        return None
    try:
        return decode_image(data, f"{scaffold.path}: {CALIBRATION_IMAGE}")
    except ValueError as exc:
        if "too many pixels" in str(exc) or "Mpx" in str(exc):
            raise
        return None  # an unreadable picture: drawn without it, as before


def plan_to_frame(rect: Rectifier, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Raw frame (x, y) of plan-view points, read from the remap tables (bilinear)."""
    c = np.asarray(cols, float).ravel()
    r = np.asarray(rows, float).ravel()
    x = map_coordinates(rect.map_x, [r, c], order=1, mode="nearest")
    y = map_coordinates(rect.map_y, [r, c], order=1, mode="nearest")
    return np.column_stack([x, y])


def _fan(scaffold: ScaffoldConfig, nodes: np.ndarray, every: int) -> list[np.ndarray]:
    """Plan-view polylines of the fan's two edges and centre at every ``every``-th node."""
    p = scaffold.stiv
    phis = search_angles(p.phi_origin, p.phi_range, p.d_phi)
    picks = np.unique([phis[0], float(geo_to_ari(p.phi_origin)), phis[-1]])
    t = np.linspace(0.0, p.num_pixels, 12)
    out = []
    for node in nodes[::every]:
        for a in np.deg2rad(picks):
            out.append(np.column_stack([node[0] + t * np.cos(a), node[1] - t * np.sin(a)]))
    return out


def site_figure(
    scaffold: ScaffoldConfig,
    path: str | Path,
    frame: np.ndarray | None = None,
    wse_m: float | None = None,
) -> Path:
    """Draw the site check picture to ``path`` (PNG).

    Raises
    ------
    ValueError
        No frame to draw on (neither given nor stored), or no water level.
    """
    from ivy_gpu.frames.stack import site_nodes
    from ivy_gpu.site.builder import calibration_of

    frame = calibration_frame(scaffold) if frame is None else frame
    if frame is None:
        raise ValueError(f"{scaffold.path}: no calibration image stored; give a frame or video")
    wse = scaffold.rectification.calibration_wse_m if wse_m is None else wse_m
    if wse is None:
        raise ValueError(f"{scaffold.path}: no calibration water level stored; give --wse")
    h, w = frame.shape[:2]
    rect = Rectifier(scaffold.rectification, wse, (w, h))
    rect.check_frame(frame, "frame")
    plan = rect.rectify(frame)
    nodes = site_nodes(scaffold, rect.output_shape)
    line = scaffold.cross_section_line
    fan = _fan(scaffold, nodes, max(1, len(nodes) // 8))
    calib = calibration_of(scaffold)

    fig = _figure(15, 6.5)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax.imshow(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    bx.imshow(cv2.cvtColor(plan, cv2.COLOR_BGR2RGB) if plan.ndim == 3 else plan, cmap="gray")
    for seg in fan:
        f = plan_to_frame(rect, seg[:, 0], seg[:, 1])
        ax.plot(f[:, 0], f[:, 1], color="gold", lw=0.8)
        bx.plot(seg[:, 0], seg[:, 1], color="gold", lw=0.8)
    ls = np.linspace(0, 1, 50)[:, None]
    pts = line[0] + ls * (line[1] - line[0])
    f = plan_to_frame(rect, pts[:, 0], pts[:, 1])
    ax.plot(f[:, 0], f[:, 1], color="cyan", lw=1.5, label="section")
    bx.plot(pts[:, 0], pts[:, 1], color="cyan", lw=1.5)
    fn = plan_to_frame(rect, nodes[:, 0], nodes[:, 1])
    ax.plot(fn[:, 0], fn[:, 1], "o", ms=3, color="orange", label=f"{len(nodes)} nodes")
    bx.plot(nodes[:, 0], nodes[:, 1], "o", ms=3, color="orange")
    ax.text(*fn[0], " start", color="cyan", fontsize=8)
    title = f"{scaffold.rectification.method}"
    r = scaffold.rectification
    if r.pixel_coords is not None:
        picked = np.asarray(r.pixel_coords, float).reshape(-1, 2)
        ax.plot(*picked.T, "o", mfc="none", mec="red", ms=9, label="GCP picked")
        if calib is not None:
            proj = calib.project(calib.world)
            ax.plot(*proj.T, "x", color="lime", ms=7, label="GCP reprojected")
            for a, b in zip(picked, proj, strict=True):
                ax.plot([a[0], b[0]], [a[1], b[1]], color="lime", lw=1)
            title += f", GCP RMS {calib.rms_px:.1f} px / {calib.rms_m:.3f} m"
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(f"calibration frame ({title})", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    p = scaffold.stiv
    bx.set_title(
        f"plan view at WSE {wse:.3f} m, cell {rect.pixel_gsd * 1000:.1f} mm; search line "
        f"{p.num_pixels} px, fan {p.phi_origin:.0f} deg +/- {p.phi_range:.0f}",
        fontsize=9,
    )
    for a in (ax, bx):
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return _save(fig, Path(path))
