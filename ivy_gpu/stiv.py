"""Space-Time Image Velocimetry: exhaustive search over search-line angles.

The public entry point is :func:`stiv_exhaustive`. It follows the conventions of
the domain specification (section 8) with the fixes of section 14: invalid search
lines give NaN (never 0), a negative streak turns the direction by 180 degrees,
and ``sigma`` is a spatial Gaussian blur of that sigma.

Work is organized as one batch of (node, angle) pairs processed in chunks sized
to memory; the stack is only read inside the bounding box of the search lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from ivy_gpu import backends
from ivy_gpu.angles import ari_to_geo, line_offsets, search_angles
from ivy_gpu.checks import (
    check_choice,
    check_even_int,
    check_nodes,
    check_positive,
    check_range,
    check_stack,
)
from ivy_gpu.kernels.rays import AcfPlan
from ivy_gpu.kernels.sti import bilinear_taps

METHODS = ("acf", "gradient")
INTERPOLATIONS = ("bilinear", "nearest")


@dataclass(frozen=True)
class StivResult:
    """Per-node result of :func:`stiv_exhaustive` (all arrays have one value per node).

    Attributes
    ----------
    magnitude : ndarray
        Surface speed, m/s, >= 0; NaN where no search line was valid or the speed
        exceeded ``max_vel_threshold``.
    direction : ndarray
        Geographic direction the surface moves, degrees in [0, 360); NaN where no
        search line was valid.
    theta : ndarray
        Streak angle of the best STI, degrees (0 = no motion, 90 = infinite).
    score : ndarray
        Peak ray integral of the best angle (``method="acf"``) or its orientation
        coherence (``method="gradient"``).
    phi : ndarray
        Geographic orientation of the best search line, degrees in [0, 360).
    sti : ndarray or None
        Best raw STI per node, shape (nodes, P, frames), when ``return_sti=True``.
    backend : str
        Backend that ran.
    method : str
        ``"acf"`` or ``"gradient"``.
    """

    magnitude: np.ndarray
    direction: np.ndarray
    theta: np.ndarray
    score: np.ndarray
    phi: np.ndarray
    sti: np.ndarray | None
    backend: str
    method: str


def _parabola_offset(before: np.ndarray, peak: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Sub-step offset (in steps, within [-0.5, 0.5]) of a sampled maximum."""
    denom = before - 2.0 * peak + after
    with np.errstate(invalid="ignore", divide="ignore"):
        off = 0.5 * (before - after) / denom
    ok = np.isfinite(off) & (denom < 0)
    return np.where(ok, np.clip(off, -0.5, 0.5), 0.0)


def array_module(a) -> object:
    """``cupy`` for CuPy arrays, else ``numpy`` (without importing CuPy otherwise)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def _crop(stack, sx: np.ndarray, sy: np.ndarray, sigma: float, to_host: bool):
    """Crop the stack to the search lines' bounding box (plus the blur margin) and blur it.

    A device (CuPy) stack is cropped and blurred on the device, and copied to the host
    only when ``to_host`` (a CPU engine) asks for it.
    """
    xp = array_module(stack)
    t, h, w = stack.shape
    margin = int(4.0 * sigma + 0.5) + 2 if sigma > 0 else 1
    x_lo = max(0, int(np.floor(sx.min())) - margin)
    x_hi = min(w - 1, int(np.ceil(sx.max())) + margin)
    y_lo = max(0, int(np.floor(sy.min())) - margin)
    y_hi = min(h - 1, int(np.ceil(sy.max())) + margin)
    x_hi, y_hi = max(x_hi, min(w - 1, x_lo + 1)), max(y_hi, min(h - 1, y_lo + 1))
    x_lo, y_lo = min(x_lo, x_hi - 1), min(y_lo, y_hi - 1)
    region = stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1]
    if xp is not np and to_host:
        region, xp = region.get(), np
    if sigma > 0:
        if xp is np:
            ndimage = scipy.ndimage
        else:
            import cupyx.scipy.ndimage as ndimage
        region = ndimage.gaussian_filter(
            region.astype(np.float32), sigma=(0.0, sigma, sigma), mode="reflect"
        )
    return xp.ascontiguousarray(region), x_lo, y_lo


def stiv_exhaustive(
    stack: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_pixels: int,
    phi_origin: float,
    d_phi: float,
    phi_range: float,
    pixel_gsd: float,
    d_t: float,
    d_rho: float = 0.5,
    d_theta: float = 0.5,
    sigma: float = 0.0,
    max_vel_threshold: float = 10.0,
    interpolation: str = "bilinear",
    refine: bool = False,
    backend: str = "auto",
    method: str = "acf",
    return_sti: bool = False,
) -> StivResult:
    """Measure surface velocity at each node by exhaustive STIV.

    Parameters
    ----------
    stack : ndarray, shape (frames, rows, cols), uint8 or float32
        Rectified grayscale frames in time order.
    x, y : array_like of float
        Node positions in stack pixels (column, row).
    num_pixels : int
        Search-line length P in pixels (even, >= 4).
    phi_origin : float
        Centre of the search fan, geographic degrees.
    d_phi : float
        Fan step, degrees (> 0).
    phi_range : float
        Fan half-width, degrees, in [0, 180].
    pixel_gsd : float
        Ground size of a stack pixel, metres.
    d_t : float
        Time between frames, seconds.
    d_rho, d_theta : float
        Ray step (lags) and ray-angle step (degrees) of the ACF search.
    sigma : float
        Spatial Gaussian blur sigma in pixels; 0 disables it.
    max_vel_threshold : float
        Speeds above this (m/s) become NaN.
    interpolation : {"bilinear", "nearest"}
        Sampling along the search line (``"nearest"`` is IVyTools' own).
    refine : bool
        Sub-step parabolic refinement of the streak angle and the search angle.
        ``False`` reproduces the reference grid search exactly.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend; ``auto`` uses the GPU when one is usable.
    method : {"acf", "gradient"}
        Streak angle from the autocorrelation rays (reference) or from the
        gradient structure tensor (fast alternative).
    return_sti : bool
        Also return the best raw STI of every node.

    Returns
    -------
    StivResult

    Raises
    ------
    ValueError
        Bad argument (named in the message).
    RuntimeError
        ``backend="cupy"`` without a usable GPU.

    Examples
    --------
    >>> from ivy_gpu.synthetic import advected_texture
    >>> stack = advected_texture((64, 96, 96), speed_px=1.0, direction_geo=90.0, seed=0)
    >>> r = stiv_exhaustive(stack, [48.0], [48.0], num_pixels=16, phi_origin=90, d_phi=1,
    ...                     phi_range=5, pixel_gsd=0.1, d_t=0.1, backend="numpy")
    >>> round(float(r.magnitude[0]), 1), round(float(r.direction[0]))
    (1.0, 90)
    """
    check_stack(stack)
    n_frames, height, width = stack.shape
    nodes = check_nodes(x, y, width, height)
    p = check_even_int("num_pixels", num_pixels, 4)
    d_phi = check_positive("d_phi", d_phi)
    phi_range = check_range("phi_range", phi_range, 0.0, 180.0)
    phi_origin = float(phi_origin)
    if not math.isfinite(phi_origin):
        raise ValueError(f"phi_origin: must be finite, got {phi_origin!r}")
    gsd = check_positive("pixel_gsd", pixel_gsd)
    d_t = check_positive("d_t", d_t)
    d_rho = check_positive("d_rho", d_rho)
    d_theta = check_range("d_theta", d_theta, 1e-3, 90.0)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    v_max = check_positive("max_vel_threshold", max_vel_threshold)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("method", method, METHODS)
    engine = backends.get_engine(backend)

    phis = search_angles(phi_origin, phi_range, d_phi)
    offsets = line_offsets(phis, p)
    n_nodes, n_ang = nodes.shape[0], phis.size
    sx = nodes[:, 0, None, None] + offsets[None, :, :, 0]  # (nodes, angles, P)
    sy = nodes[:, 1, None, None] + offsets[None, :, :, 1]
    inside = (
        (sx.min(-1) >= 0)
        & (sx.max(-1) <= width - 1)
        & (sy.min(-1) >= 0)
        & (sy.max(-1) <= height - 1)
    )
    pairs = np.flatnonzero(inside.ravel())

    score = np.full(n_nodes * n_ang, np.nan)
    aux = {k: np.full(n_nodes * n_ang, np.nan) for k in ("idx", "before", "after", "slope")}
    region = None
    plan = AcfPlan.build(p, n_frames, d_rho, d_theta) if method == "acf" else None
    if pairs.size:
        sxp = sx.reshape(-1, p)[pairs]
        syp = sy.reshape(-1, p)[pairs]
        region, x_lo, y_lo = _crop(stack, sxp, syp, sigma, to_host=engine.name != "cupy")
        handle = engine.prepare(region)
        rh, rw = region.shape[1:]
        chunk = engine.chunk_pairs(p, n_frames)
        for lo in range(0, pairs.size, chunk):
            sel = pairs[lo : lo + chunk]
            taps = bilinear_taps(
                sxp[lo : lo + chunk] - x_lo, syp[lo : lo + chunk] - y_lo, rw, rh, interpolation
            )
            if method == "acf":
                idx, peak, before, after = engine.acf_scores(handle, taps, plan)
                score[sel], aux["idx"][sel] = peak, idx
                aux["before"][sel], aux["after"][sel] = before, after
            else:
                slope, coherence = engine.gradient_scores(handle, taps)
                score[sel], aux["slope"][sel] = coherence, slope

    score = score.reshape(n_nodes, n_ang)
    has = np.isfinite(score).any(axis=1)
    best = np.where(np.isfinite(score), score, -np.inf).argmax(axis=1)
    rows = np.arange(n_nodes)
    flat = rows * n_ang + best

    if method == "acf":
        theta = plan.theta[np.nan_to_num(aux["idx"][flat]).astype(int)]
        if refine:
            theta = theta + d_theta * _parabola_offset(
                aux["before"][flat], score[rows, best], aux["after"][flat]
            )
        slope = np.tan(np.deg2rad(theta))
    else:
        slope = aux["slope"][flat]
        theta = np.mod(np.rad2deg(np.arctan(slope)), 180.0)

    phi = phis[best].astype(np.float64)
    if refine:
        before = np.where(best > 0, score[rows, np.maximum(best - 1, 0)], np.nan)
        after = np.where(best < n_ang - 1, score[rows, np.minimum(best + 1, n_ang - 1)], np.nan)
        step = d_phi * _parabola_offset(before, score[rows, best], after)
        phi = phi + step
        slope = slope / np.cos(np.deg2rad(step))  # the line at phis[best] saw V cos(step)

    speed = slope * gsd / d_t
    direction = ari_to_geo(phi + np.where(speed < 0, 180.0, 0.0))
    magnitude = np.abs(speed)
    magnitude[magnitude > v_max] = np.nan
    for arr in (magnitude, direction, theta, phi):
        arr[~has] = np.nan
    best_score = np.where(has, score[rows, best], np.nan)

    stis = None
    if return_sti:
        stis = np.full((n_nodes, p, n_frames), np.nan, dtype=np.float32)
        if has.any() and region is not None:
            k = np.flatnonzero(has)
            taps = bilinear_taps(
                sx[k, best[k]] - x_lo,
                sy[k, best[k]] - y_lo,
                region.shape[2],
                region.shape[1],
                interpolation,
            )
            stis[k] = engine.gather(handle, taps)

    return StivResult(
        magnitude=magnitude,
        direction=np.where(has, direction, np.nan),
        theta=theta,
        score=best_score,
        phi=np.where(has, ari_to_geo(phi), np.nan),
        sti=stis,
        backend=engine.name,
        method=method,
    )
