"""Search lines: the fan of angles, the samples of every (node, angle) line, their taps.

A STIV call starts here: :func:`search_angles` gives the fan, :func:`line_offsets` (one-sided
unit lines) or :func:`ivytools_line_samples` (IVyTools' own rounding) the samples of one line,
:func:`line_geometry` every node's lines with which are usable and the stack crop they read, and
:func:`pair_taps` the bilinear taps the engines gather with. Host code shared by every engine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ivy_gpu.angles import geo_to_ari
from ivy_gpu.engines.base import Lines, PairLines, Taps
from ivy_gpu.kernels.sti import bilinear_taps
from ivy_gpu.params import StivParams

__all__ = [
    "SearchLines",
    "bounds_window",
    "ivytools_line_samples",
    "line_geometry",
    "line_offsets",
    "line_taps",
    "pair_lines",
    "pair_taps",
    "sample_window",
    "scored_lines",
    "search_angles",
]


def search_angles(phi_origin: float, phi_range: float, d_phi: float) -> np.ndarray:
    """Arithmetic search-line angles of the fan (half-open range, spec 8.1).

    ``phi_origin`` is geographic. The fan is ``a0 - R, a0 - R + d_phi, ...`` for every
    value strictly below ``a0 + R + 1``: 181 angles for R = 90 and d_phi = 1.
    """
    a0 = float(geo_to_ari(phi_origin))
    return np.arange(a0 - phi_range, a0 + phi_range + 1.0, d_phi)


def line_offsets(phi_ari: np.ndarray, num_pixels: int) -> np.ndarray:
    """Sample offsets of the one-sided ``unit`` search lines, shape (n_angles, P, 2) as (dx, dy).

    Sample ``k`` (``k = 0 ... P - 1``) lies ``k`` pixels from the node in direction
    ``(cos a, -sin a)`` (image rows point down): every line has 1-px spacing, so the
    streak slope in samples per frame is the speed in pixels per frame.
    """
    a = np.deg2rad(np.asarray(phi_ari, float))[:, None]
    k = np.arange(num_pixels, dtype=float)[None, :]
    return np.stack([k * np.cos(a), -k * np.sin(a)], axis=-1)


def ivytools_line_samples(
    x: np.ndarray, y: np.ndarray, phi_ari: np.ndarray, num_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """IVyTools' own search-line samples (spec 8.2 and 14.22), shape (..., P) each.

    For a node ``(x, y)`` and arithmetic angle ``a``: ``x1 = P cos a``, ``y1 = -P sin a``;
    ``L = int(hypot(|(y + y1) - y|, |(x + x1) - x|))`` from the node's *absolute*
    coordinates, so rounding makes ``L = P - 1`` for many (node, angle) pairs; the
    samples are ``linspace(x, x + x1, L + 1)`` (and likewise in y), the last one dropped
    when the count is odd. Where ``L = P - 1`` the line keeps P samples over P px (a
    "stretched" line, spacing ``P / (P - 1)``).

    Parameters
    ----------
    x, y : ndarray
        Node coordinates (broadcast against ``phi_ari``).
    phi_ari : ndarray
        Arithmetic search angles, degrees.
    num_pixels : int
        P (even).
    """
    a = np.deg2rad(np.asarray(phi_ari, float))
    x, y, a = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), a)
    x1 = num_pixels * np.cos(a)
    y1 = -num_pixels * np.sin(a)
    ex, ey = x + x1, y + y1
    length = np.hypot(np.abs(ey - y), np.abs(ex - x)).astype(int)
    sx = np.empty((*x.shape, num_pixels))
    sy = np.empty_like(sx)
    for n_len in np.unique(length):
        sel = length == n_len
        count = n_len + 1
        keep = count if count % 2 == 0 else count - 1  # the even-length rule
        if keep != num_pixels:  # pragma: no cover - impossible for even P
            raise AssertionError(f"search line has {keep} samples, expected {num_pixels}")
        sx[sel] = np.linspace(x[sel], ex[sel], count, axis=-1)[..., :keep]
        sy[sel] = np.linspace(y[sel], ey[sel], count, axis=-1)[..., :keep]
    return sx, sy


@dataclass(frozen=True)
class SearchLines:
    """Every (node, angle) search line: its samples, which are usable, the crop they read.

    Attributes
    ----------
    phis : ndarray, shape (nodes, angles)
        Search angles of each node, arithmetic degrees.
    pairs : ndarray of int
        Flat (node * angles + angle) indices of the lines entirely inside the stack.
    window : (y_lo, y_hi, x_lo, x_hi)
        The stack crop those lines read, including the blur margin.
    nodes : ndarray, shape (nodes, 2)
        Node positions (column, row), stack pixels.
    offsets : ndarray, shape (1 or nodes, angles, P, 2), or None
        ``unit`` lines: the sample offsets ``(dx, dy)`` of the fan (one row for every node)
        or of each node's own angles; None for IVyTools' lines.
    samples : (sx, sy) or None
        IVyTools' lines: their sample positions, each (nodes, angles, P).
    """

    phis: np.ndarray
    pairs: np.ndarray
    window: tuple[int, int, int, int]
    nodes: np.ndarray
    offsets: np.ndarray | None = None
    samples: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_lines(self) -> int:
        """Number of (node, angle) lines, usable or not."""
        return int(self.phis.size)

    @functools.cached_property
    def sx(self) -> np.ndarray:
        """Column of each sample, shape (nodes, angles, P) (computed once, when asked)."""
        if self.samples is not None:
            return self.samples[0]
        return self.nodes[:, 0, None, None] + self.offsets[..., 0]

    @functools.cached_property
    def sy(self) -> np.ndarray:
        """Row of each sample, shape (nodes, angles, P)."""
        if self.samples is not None:
            return self.samples[1]
        return self.nodes[:, 1, None, None] + self.offsets[..., 1]


def line_geometry(
    nodes: np.ndarray,
    params: StivParams,
    width: int,
    height: int,
    phis: np.ndarray | None = None,
) -> SearchLines:
    """Search lines of every node and angle, which are usable, and the crop they read.

    ``phis`` (arithmetic degrees, shape (nodes, k)) gives each node its own angles;
    by default every node searches the fan of ``params``. The sample positions follow
    ``params.search_line`` (:func:`line_offsets` or :func:`ivytools_line_samples`); the
    ``unit`` lines' samples are only computed when asked for (the engines that compute
    taps on the device never need them).
    """
    p = params.num_pixels
    fan = None
    if phis is None:
        fan = search_angles(params.phi_origin, params.phi_range, params.d_phi)
        phis = np.broadcast_to(fan, (nodes.shape[0], fan.size))
    phis = np.asarray(phis, float)
    nodes = np.asarray(nodes, float)
    nx, ny = nodes[:, 0, None], nodes[:, 1, None]
    off = samples = None
    if params.search_line == "ivytools":
        sx, sy = ivytools_line_samples(nx, ny, phis, p)
        samples = (sx, sy)
        bounds = sx.min(-1), sx.max(-1), sy.min(-1), sy.max(-1)
    else:
        # one fan for every node: its offsets once, (1, angles, P); else each node's own
        off = line_offsets(fan, p)[None] if fan is not None else (
            line_offsets(phis.ravel(), p).reshape(*phis.shape, p, 2)
        )  # fmt: skip
        ox, oy = off[..., 0], off[..., 1]
        # a rounded sum is monotone in each term: a line's extreme sample is the node plus
        # its extreme offset, exactly, so the bounds need no pass over every sample
        bounds = nx + ox.min(-1), nx + ox.max(-1), ny + oy.min(-1), ny + oy.max(-1)
    x_min, x_max, y_min, y_max = bounds
    inside = (x_min >= 0) & (x_max <= width - 1) & (y_min >= 0) & (y_max <= height - 1)
    pairs = np.flatnonzero(inside.ravel())
    window = (0, 1, 0, 1)
    if pairs.size:
        lo_x, hi_x, lo_y, hi_y = (b[inside] for b in bounds)
        window = bounds_window(
            lo_x.min(), hi_x.max(), lo_y.min(), hi_y.max(), params.sigma, width, height
        )
    return SearchLines(phis, pairs, window, nodes, off, samples)


def sample_window(sx: np.ndarray, sy: np.ndarray, sigma: float, w: int, h: int):
    """Bounding box of the samples plus the blur margin, at least 2 x 2, inside the stack."""
    return bounds_window(sx.min(), sx.max(), sy.min(), sy.max(), sigma, w, h)


def bounds_window(
    x_min: float, x_max: float, y_min: float, y_max: float, sigma: float, w: int, h: int
) -> tuple[int, int, int, int]:
    """:func:`sample_window` of samples spanning ``[x_min, x_max] x [y_min, y_max]``."""
    margin = int(4.0 * sigma + 0.5) + 2 if sigma > 0 else 1
    x_lo = max(0, int(np.floor(x_min)) - margin)
    x_hi = min(w - 1, int(np.ceil(x_max)) + margin)
    y_lo = max(0, int(np.floor(y_min)) - margin)
    y_hi = min(h - 1, int(np.ceil(y_max)) + margin)
    x_hi, y_hi = max(x_hi, min(w - 1, x_lo + 1)), max(y_hi, min(h - 1, y_lo + 1))
    x_lo, y_lo = min(x_lo, x_hi - 1), min(y_lo, y_hi - 1)
    return y_lo, y_hi, x_lo, x_hi


def pair_lines(lines: SearchLines, params: StivParams) -> PairLines:
    """The usable ``unit`` lines as geometry (:class:`~ivy_gpu.engines.base.PairLines`).

    A few bytes per line: its node and its row of the offsets (the fan's angle, or the
    node's own angle when each node has its own).
    """
    if lines.offsets is None:
        raise ValueError("pair_lines: only unit search lines are geometry (not IVyTools')")
    n_ang = lines.phis.shape[1]
    node = lines.pairs // n_ang
    if lines.offsets.shape[0] == 1:  # one fan
        offsets, angle = lines.offsets[0], lines.pairs % n_ang
    else:
        offsets, angle = lines.offsets.reshape(-1, *lines.offsets.shape[2:]), lines.pairs
    return PairLines(
        np.ascontiguousarray(lines.nodes[node, 0]),
        np.ascontiguousarray(lines.nodes[node, 1]),
        angle.astype(np.int32),
        np.ascontiguousarray(offsets),
        lines.window,
        params.interpolation,
    )


def scored_lines(lines: SearchLines, params: StivParams, device_lines: bool = False) -> Lines:
    """What the engine scores: geometry when it computes taps itself, else host taps."""
    if device_lines and lines.offsets is not None:
        return pair_lines(lines, params)
    return pair_taps(lines, params)


def pair_taps(lines: SearchLines, params: StivParams) -> Taps:
    """Bilinear taps (window coordinates) of every usable pair's samples, each (pairs, P)."""
    p = params.num_pixels
    sx, sy = lines.sx.reshape(-1, p), lines.sy.reshape(-1, p)
    if lines.pairs.size < sx.shape[0]:  # no copy when every line is usable
        sx, sy = sx[lines.pairs], sy[lines.pairs]
    return line_taps(lines, sx, sy, params.interpolation)


def line_taps(lines: SearchLines, sx: np.ndarray, sy: np.ndarray, interpolation: str) -> Taps:
    """Bilinear taps of samples ``sx``, ``sy`` (stack pixels) in ``lines``' window coordinates."""
    y_lo, y_hi, x_lo, x_hi = lines.window
    return bilinear_taps(sx - x_lo, sy - y_lo, x_hi - x_lo + 1, y_hi - y_lo + 1, interpolation)
