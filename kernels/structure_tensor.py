"""Streak speed of STIs from the gradient structure tensor, coarse to fine (``method="gradient"``).

For a pattern moving along the line, ``I(a, t) = f(a - v t)``. With an estimate ``u`` of
``v``, the frame ``k`` steps later sampled at ``a + k u`` matches the current one up to
the residual motion: ``I(a + k u, t + k) - I(a, t) ~ Ia (k u - k v)``, so the least-squares
residual is ``v - u = -sum(Ia It) / (k sum(Ia Ia))`` (one-dimensional Lucas-Kanade on the
structure tensor's entries).

A single tensor on the raw STI (the first version of this method) aliases once streaks
move more than about a grain per frame (13-23 % low above 1 px/frame) and is noisy when
they hardly move (+8-10 % at 0.1-0.45 px/frame on a fine texture). So the estimate is
built coarse to fine:

1. **Space**: a pyramid of the STI along the line (``[1, 2, 1] / 4`` then every other
   sample) until it is shorter than 16 samples; at the coarsest level the motion is a
   fraction of a sample per frame. Each level refines ``u`` (doubled from the coarser
   level) with three warped iterations, frame to next frame.
2. **Time**: the motion is then measured over ``k`` frames, ``k = round(1 / |u|)``
   (at most a quarter of the clip), so a slow streak is measured over a displacement of
   about a pixel instead of a fraction of one.

Twins: :func:`orientation_xp` (NumPy reference, and CuPy on the GPU) and
:func:`orientation_numba` (one STI per thread, fused: no temporaries).

The score is the orientation coherence ``sqrt((Jaa - Jtt)^2 + 4 Jat^2) / (Jaa + Jtt)`` of
the motion-compensated tensor (1 when one displacement explains the STI). The function is
array-API shaped: NumPy on the CPU backends, CuPy on the GPU.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
from numba import njit, prange

from ivy_gpu.kernels.sti import gather_row, row_varies

#: The pyramid stops below this many samples along the line.
MIN_LEVEL_SAMPLES = 16
#: Warped refinements per level.
ITERATIONS = 3
#: Displacement (px) the temporal baseline aims for.
BASELINE_PX = 1.0


def _down(x: Any) -> Any:
    """Half resolution along the line: ``[1, 2, 1] / 4`` smoothing, every other sample."""
    return 0.25 * x[:, :-2:2] + 0.5 * x[:, 1:-1:2] + 0.25 * x[:, 2::2]


def _tensor(x: Any, u: Any, k: int, xp: ModuleType) -> tuple[Any, Any, Any]:
    """``(Jaa, Jat, Jtt)`` of frame pairs ``k`` apart, the later one warped by ``k u``."""
    n, p, t = x.shape
    m = t - k
    a = xp.arange(p, dtype=xp.float64)[None, :] + k * u[:, None]
    a0 = xp.floor(a)
    frac = (a - a0).astype(xp.float32)[:, :, None]
    i0 = xp.clip(a0, 0, p - 1).astype(xp.int64)
    i1 = xp.clip(a0 + 1, 0, p - 1).astype(xp.int64)
    rows = xp.arange(n)[:, None]
    later = x[:, :, k:]
    warped = (1.0 - frac) * later[rows, i0, :] + frac * later[rows, i1, :]
    cur = x[:, :, :m]
    # weight: both samples inside the line, with a neighbour each side for the derivative
    w = ((a0 >= 1) & (a0 <= p - 3)).astype(xp.float32)
    w[:, 0] = 0.0
    w[:, -1] = 0.0
    w = w[:, :, None]
    ia = 0.25 * (
        (xp.roll(cur, -1, axis=1) - xp.roll(cur, 1, axis=1))
        + (xp.roll(warped, -1, axis=1) - xp.roll(warped, 1, axis=1))
    )
    it = warped - cur
    jaa = xp.sum(w * ia * ia, axis=(1, 2), dtype=xp.float64)
    jat = xp.sum(w * ia * it, axis=(1, 2), dtype=xp.float64)
    jtt = xp.sum(w * it * it, axis=(1, 2), dtype=xp.float64)
    return jaa, jat, jtt


def _refine(x: Any, u: Any, k: int, xp: ModuleType) -> Any:
    """``u`` after the warped least-squares iterations over a ``k``-frame baseline."""
    for _ in range(ITERATIONS):
        jaa, jat, _ = _tensor(x, u, k, xp)
        du = -jat / (k * xp.where(jaa > 0, jaa, xp.nan))
        u = u + xp.nan_to_num(du)
    return u


def orientation_xp(sti: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Return ``(slope, coherence)`` per STI.

    Parameters
    ----------
    sti : array, shape (n, P, T), float32
        Raw (not standardized) STIs.
    xp : module
        Array namespace.

    Returns
    -------
    slope : array, shape (n,)
        Streak speed along the line, pixels per frame (signed).
    coherence : array, shape (n,)
        Orientation coherence of the motion-compensated tensor in [0, 1]; NaN for a
        textureless STI.
    """
    x = sti.astype(xp.float32)
    x = x - xp.mean(x, axis=2, keepdims=True)  # what never moves out, as STIV standardizes
    n, p, t = x.shape
    pyramid = [x]
    while pyramid[-1].shape[1] >= MIN_LEVEL_SAMPLES:
        pyramid.append(_down(pyramid[-1]))
    u = xp.zeros(n, dtype=xp.float64)
    for level in range(len(pyramid) - 1, -1, -1):
        if level < len(pyramid) - 1:
            u = 2.0 * u
        u = _refine(pyramid[level], u, 1, xp)
    # a baseline of k frames, so the streak moves about BASELINE_PX over it
    k_all = xp.clip(xp.round(BASELINE_PX / xp.maximum(xp.abs(u), 1e-3)), 1, max(1, t // 4))
    k_all = k_all.astype(xp.int64)
    slope = xp.empty(n, dtype=xp.float64)
    coherence = xp.empty(n, dtype=xp.float64)
    for k in sorted({int(v) for v in k_all.tolist()}):  # a few distinct baselines
        sel = xp.nonzero(k_all == k)[0]
        xs, us = x[sel], u[sel]
        if k > 1:
            us = _refine(xs, us, k, xp)
        jaa, jat, jtt = _tensor(xs, us, k, xp)
        trace = jaa + jtt
        slope[sel] = us
        coherence[sel] = xp.sqrt((jaa - jtt) ** 2 + 4.0 * jat**2) / xp.where(
            trace > 0, trace, xp.nan
        )
    return slope, coherence


# --------------------------------------------------------------------------- Numba twin
@njit(cache=True, nogil=True)
def warp_cell(a, k, u, p):  # pragma: no cover - compiled
    """Sample ``a`` warped by ``k u``: its cell ``a0`` and the float32 weights ``(f, 1 - f)``.

    ``a0`` is -1 outside ``[1, p - 3]``; ``f`` weighs sample ``a0 + 1``, ``1 - f`` sample ``a0``.
    Shared by the numba twin and the CUDA kernel (compiled from the same source).
    """
    pos = a + k * u
    a0f = math.floor(pos)
    if a0f < 1 or a0f > p - 3:
        return -1, np.float32(0.0), np.float32(1.0)
    f = np.float32(pos - a0f)
    return int(a0f), f, np.float32(1.0) - f


@njit(cache=True, nogil=True, fastmath=True)
def _tensor_numba(x, p, t, u, k):  # pragma: no cover - compiled
    """``(Jaa, Jat, Jtt)`` of one STI level (``x[:p, :t]``), as :func:`_tensor`."""
    jaa = 0.0
    jat = 0.0
    jtt = 0.0
    m = t - k
    quarter = np.float32(0.25)
    for a in range(1, p - 1):
        a0, f, g = warp_cell(a, k, u, p)
        if a0 < 0:
            continue
        for tt in range(m):
            s = tt + k
            w_c = g * x[a0, s] + f * x[a0 + 1, s]
            w_p = g * x[a0 + 1, s] + f * x[a0 + 2, s]
            w_m = g * x[a0 - 1, s] + f * x[a0, s]
            c = x[a, tt]
            ia = quarter * ((x[a + 1, tt] - x[a - 1, tt]) + (w_p - w_m))
            it = w_c - c
            jaa += ia * ia
            jat += ia * it
            jtt += it * it
    return jaa, jat, jtt


@njit(cache=True, nogil=True)
def _refine_numba(x, p, t, u, k):  # pragma: no cover - compiled
    for _ in range(ITERATIONS):
        jaa, jat, _jtt = _tensor_numba(x, p, t, u, k)
        if jaa > 0:
            du = -jat / (k * jaa)
            if math.isfinite(du):
                u += du
    return u


@njit(cache=True, nogil=True)
def _round_half_even(v):  # pragma: no cover - compiled
    r = math.floor(v + 0.5)
    if r - v == 0.5 and r % 2 != 0:
        r -= 1.0
    return r


@njit(cache=True, nogil=True)
def level_sizes(p):  # pragma: no cover - compiled
    """Samples along the line at each pyramid level (finest first)."""
    sizes = [p]
    while sizes[-1] >= MIN_LEVEL_SAMPLES:
        sizes.append((sizes[-1] - 1) // 2)
    return sizes


@njit(cache=True, nogil=True)
def orientation_one(x, sizes, pyr):  # pragma: no cover - compiled
    """``(slope, coherence)`` of one raw STI ``x`` (P, T); ``pyr`` (levels, P, T) scratch."""
    p, t = x.shape
    levels = len(sizes)
    pyr[:] = 0.0
    for a in range(p):
        mean = 0.0
        for tt in range(t):
            mean += x[a, tt]
        mean32 = np.float32(mean / t)
        for tt in range(t):
            pyr[0, a, tt] = np.float32(x[a, tt]) - mean32
    for lev in range(1, levels):
        for j in range(sizes[lev]):
            for tt in range(t):
                pyr[lev, j, tt] = (
                    np.float32(0.25) * pyr[lev - 1, 2 * j, tt]
                    + np.float32(0.5) * pyr[lev - 1, 2 * j + 1, tt]
                    + np.float32(0.25) * pyr[lev - 1, 2 * j + 2, tt]
                )
    u = 0.0
    for lev in range(levels - 1, -1, -1):
        if lev < levels - 1:
            u = 2.0 * u
        u = _refine_numba(pyr[lev], sizes[lev], t, u, 1)
    k = int(min(max(_round_half_even(BASELINE_PX / max(abs(u), 1e-3)), 1.0), max(1, t // 4)))
    if k > 1:
        u = _refine_numba(pyr[0], p, t, u, k)
    jaa, jat, jtt = _tensor_numba(pyr[0], p, t, u, k)
    trace = jaa + jtt
    if trace > 0:
        return u, math.sqrt((jaa - jtt) ** 2 + 4.0 * jat**2) / trace
    return u, np.nan


@njit(parallel=True, cache=True, nogil=True)
def orientation_numba(sti):  # pragma: no cover - compiled
    """CPU twin of :func:`orientation_xp` (one STI per thread, the same arithmetic)."""
    n, p, t = sti.shape
    slope = np.empty(n, np.float64)
    coherence = np.empty(n, np.float64)
    sizes = level_sizes(p)
    for s in prange(n):
        pyr = np.empty((len(sizes), p, t), np.float32)
        slope[s], coherence[s] = orientation_one(sti[s], sizes, pyr)
    return slope, coherence


#: STIs one thread handles with one set of scratch arrays in :func:`orientation_packed_numba`.
BLOCK = 8


@njit(parallel=True, cache=True, nogil=True)
def _orientation_packed(rows, index, x0, y0, fx, fy, min_std, slope, coherence):  # pragma: no cover
    n, p = x0.shape
    t = rows.shape[1]
    sizes = level_sizes(p)
    for blk in prange((n + BLOCK - 1) // BLOCK):
        x = np.empty((p, t), np.float32)
        pyr = np.empty((len(sizes), p, t), np.float32)
        for s in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
            ok = True
            for i in range(p):
                total = gather_row(rows, index, x0[s, i], y0[s, i], fx[s, i], fy[s, i], x[i])
                if not row_varies(x[i], total, min_std):
                    ok = False
            slope[s], c = orientation_one(x, sizes, pyr)
            coherence[s] = c if ok else np.nan


def orientation_packed_numba(packed, x0, y0, fx, fy, min_std):
    """:func:`orientation_numba` of STIs gathered from packed pixels, one pass per STI.

    Gathers each STI into per-thread scratch (no (n, P, T) array) and checks its rows for
    constant ones from the same samples; the orientation arithmetic is
    :func:`orientation_numba`'s, so the results are identical.

    Returns
    -------
    slope : ndarray of float64, shape (n,)
        px/frame.
    coherence : ndarray of float64, shape (n,)
        NaN where a row is constant in time (the STI is invalid).
    """
    n = x0.shape[0]
    slope = np.empty(n, np.float64)
    coherence = np.empty(n, np.float64)
    _orientation_packed(packed.rows, packed.index, x0, y0, fx, fy, min_std, slope, coherence)
    return slope, coherence
