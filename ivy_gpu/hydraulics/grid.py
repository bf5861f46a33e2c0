"""STIV nodes along the cross-section line, masks, and node stations.

Domain specification, sections 7 and 10.1. Nodes come from the scaffold's
``results_grid`` when present (the GUI's exact grid), else N nodes evenly along
the line including both ends; nodes inside mask polygons are dropped. Positions
stay floats unless IVyTools-compatible rounding is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as PolygonPath

from ivy_gpu.hydraulics.xsection import CrossSection


def line_nodes(line: np.ndarray, n: int) -> np.ndarray:
    """``n`` points from ``line[0]`` to ``line[1]`` inclusive, shape (n, 2)."""
    if n < 2:
        raise ValueError(f"number_grid_points_along_xs_line: needs at least 2 nodes, got {n}")
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * line[0] + t * line[1]


#: The share of the cross-section line that must lie in the rectified image: the part outside
#: can hold no node, and the discharge there would be interpolated from the water edge.
MIN_LINE_INSIDE = 0.95


def inside_fraction(line: np.ndarray, rows: int, cols: int) -> float:
    """The share of the segment ``line`` (2, 2) inside ``[0, cols-1] x [0, rows-1]``."""
    p0, d = np.asarray(line[0], float), np.asarray(line[1], float) - np.asarray(line[0], float)
    t0, t1 = 0.0, 1.0
    for k, hi in ((0, cols - 1.0), (1, rows - 1.0)):  # Liang-Barsky, one axis at a time
        if d[k] == 0:
            if not 0.0 <= p0[k] <= hi:
                return 0.0
            continue
        a, b = (0.0 - p0[k]) / d[k], (hi - p0[k]) / d[k]
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    return max(0.0, t1 - t0)


def outside_masks(nodes: np.ndarray, polygons: tuple[np.ndarray, ...]) -> np.ndarray:
    """True for nodes outside every mask polygon."""
    keep = np.ones(len(nodes), dtype=bool)
    for poly in polygons:
        if len(poly) >= 3:
            keep &= ~PolygonPath(poly).contains_points(nodes)
    return keep


def place_nodes(
    line: np.ndarray,
    n: int,
    image_shape: tuple[int, int],
    results_grid: np.ndarray | None = None,
    masks: tuple[np.ndarray, ...] = (),
    ivytools_rounding: bool = False,
) -> np.ndarray:
    """Nodes for STIV in rectified pixels, shape (n', 2).

    Parameters
    ----------
    line : ndarray (2, 2)
        Cross-section line.
    n : int
        Number of nodes along the line (when there is no ``results_grid``).
    image_shape : (rows, cols)
        Rectified image size; nodes are clipped into it. A line less than
        :data:`MIN_LINE_INSIDE` inside it is refused (``ValueError`` naming the key).
    results_grid : ndarray, optional
        The GUI's grid, used verbatim when given.
    masks : tuple of ndarray
        Polygons whose inside is excluded.
    ivytools_rounding : bool
        Round to integer pixels as the GUI does.
    """
    rows, cols = image_shape
    if results_grid is not None and len(results_grid):
        nodes = np.asarray(results_grid, float).reshape(-1, 2)
    else:
        share = inside_fraction(line, rows, cols)
        if not share >= MIN_LINE_INSIDE:
            raise ValueError(
                f"cross_section_line: {100 * (1 - share):.0f} % of the line, from "
                f"({line[0, 0]:.6g}, {line[0, 1]:.6g}) to ({line[1, 0]:.6g}, {line[1, 1]:.6g}) "
                f"px, lies outside the {cols} x {rows} px rectified image: no node can measure "
                "there and the discharge would be filled from the water edges; redraw the line "
                "inside the image or widen the plan view"
            )
        clipped = np.column_stack(
            [np.clip(line[:, 0], 0, cols - 1), np.clip(line[:, 1], 0, rows - 1)]
        )
        nodes = line_nodes(clipped, n)
    if ivytools_rounding:
        nodes = np.round(nodes)
    nodes = nodes[outside_masks(nodes, masks)]
    if nodes.size == 0:
        raise ValueError("grid: every node falls inside a mask polygon")
    return nodes


@dataclass(frozen=True)
class NodeStations:
    """Stations (m, from the left edge of water) of the nodes and the water edges."""

    stations: np.ndarray
    left_edge: float
    right_edge: float
    warnings: tuple[str, ...]


def node_stations(
    nodes: np.ndarray,
    line: np.ndarray,
    section: CrossSection,
    wse_m: float,
    gsd_m: float,
    start_bank: str = "left",
) -> NodeStations:
    """Map nodes to survey stations (spec 10.1): the line's ends are the water edges.

    Each node is projected onto the line; its distance from the start is scaled so
    the line spans the wetted width at this WSE, counted from the start bank. A
    warning is recorded when the line's world length and the wetted width differ
    by more than 5 % (the stretch then distorts the section).
    """
    left, right = section.water_edges(wse_m)
    width = right - left
    ab = line[1] - line[0]
    length_px = float(np.hypot(*ab))
    if length_px == 0:
        raise ValueError("cross_section_line: the two endpoints coincide")
    d = (nodes - line[0]) @ ab / length_px
    scale = width / length_px
    stations = left + d * scale if start_bank == "left" else right - d * scale
    warnings = []
    world_len = length_px * gsd_m
    if abs(world_len / width - 1) > 0.05:
        warnings.append(
            f"cross-section line is {world_len:.3f} m long but the wetted width at WSE "
            f"{wse_m:.3f} m is {width:.3f} m ({100 * (world_len / width - 1):+.1f} %): "
            "stations are stretched to the wetted width"
        )
    return NodeStations(stations, left, right, tuple(warnings))
