"""Polar ray integration of the STI autocorrelation (the streak-angle score).

Conventions are those of the domain specification, section 8.3: the full
autocorrelation ``R`` of a ``P x T`` STI is cropped asymmetrically to ``R_sub``
(zero lag at ``(P//2 - 1, T//2 - 1)``); rays leave the zero lag at angle ``theta``
(0 deg = pure time lag, 90 deg = pure pixel lag), are sampled every ``d_rho`` up to
``rho_max = min(P//2, T//2)`` with bilinear interpolation that extrapolates past
the crop, and are integrated by the trapezoid rule times ``d_rho``.

Twins
-----
``ray_integrals_numpy`` is the literal reference on ``R_sub``. The fast backends
use :func:`ray_weight_matrix`: the same taps and trapezoid weights folded into one
dense ``(n_theta, n_lags)`` matrix over the few lags the rays touch, so the score
of a whole batch is a single matrix product (BLAS on CPU, cuBLAS on GPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import ModuleType
from typing import Any

import numpy as np


def polar_grid(p: int, t: int, d_rho: float, d_theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(rho, theta_deg)``: ``rho`` = 0, d_rho, ... <= rho_max; theta = 0 ... 180 deg."""
    rho_max = min(p // 2, t // 2)
    rho = np.arange(0.0, rho_max + d_rho, d_rho)
    theta = np.arange(0.0, 180.0 + d_theta, d_theta)
    return rho, theta


def crop_bounds(p: int, t: int) -> tuple[int, int, int, int]:
    """Return ``(row_start, row_stop, col_start, col_stop)`` of ``R_sub`` inside the full ACF."""
    return p - p // 2, min(p + p // 2 + 1, 2 * p - 1), t - t // 2, min(t + t // 2 + 1, 2 * t - 1)


def ray_taps(
    p: int, t: int, rho: np.ndarray, theta_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear cells of every ray sample, in ``R_sub`` index coordinates.

    Returns
    -------
    i, j : ndarray of int, shape (n_theta, n_rho)
        Row (pixel lag) and column (frame lag) of the top-left cell corner,
        clipped to the crop so that samples beyond it extrapolate linearly.
    fx, ft : ndarray of float64, shape (n_theta, n_rho)
        Fractional offsets inside the cell (may leave [0, 1] when extrapolating).
    """
    r0, r1, c0, c1 = crop_bounds(p, t)
    n_rows, n_cols = r1 - r0, c1 - c0
    x0, t0 = p // 2 - 1, t // 2 - 1
    th = np.deg2rad(theta_deg)[:, None]
    xs = x0 + rho[None, :] * np.sin(th)
    ts = t0 + rho[None, :] * np.cos(th)
    i = np.clip(np.floor(xs), 0, n_rows - 2).astype(np.intp)
    j = np.clip(np.floor(ts), 0, n_cols - 2).astype(np.intp)
    return i, j, xs - i, ts - j


def _trapezoid_weights(n_rho: int, d_rho: float) -> np.ndarray:
    w = np.full(n_rho, d_rho)
    if n_rho > 1:
        w[0] = w[-1] = 0.5 * d_rho
    return w


def ray_integrals_numpy(
    r_sub: np.ndarray, p: int, t: int, rho: np.ndarray, theta_deg: np.ndarray, d_rho: float
) -> np.ndarray:
    """Integrate ``R_sub`` along every ray (reference).

    Parameters
    ----------
    r_sub : ndarray, shape (n, rows, cols)
        Cropped, normalized autocorrelations.
    p, t : int
        STI size (pixels, frames).
    rho, theta_deg : ndarray
        Polar grid from :func:`polar_grid`.
    d_rho : float
        Ray step, the factor of the trapezoid rule.

    Returns
    -------
    ndarray, shape (n, n_theta)
    """
    i, j, fx, ft = ray_taps(p, t, rho, theta_deg)
    vals = (
        (1 - fx) * (1 - ft) * r_sub[:, i, j]
        + fx * (1 - ft) * r_sub[:, i + 1, j]
        + (1 - fx) * ft * r_sub[:, i, j + 1]
        + fx * ft * r_sub[:, i + 1, j + 1]
    )
    return np.trapezoid(vals, dx=1.0, axis=-1) * d_rho


@dataclass(frozen=True)
class RayOperator:
    """Ray integration as a matrix over a lag window of the autocorrelation.

    Attributes
    ----------
    weights : ndarray of float32, shape (n_lags, n_theta)
        ``F = R_window.reshape(n, n_lags) @ weights``.
    lx_max : int
        Pixel lags 0 ... lx_max are used (rays never need negative pixel lags).
    lt_lo, lt_hi : int
        Frame lags lt_lo ... lt_hi (inclusive) are used, in units of ``lag_step`` frames.
    lag_step : int
        Frames per lag unit: 1 for the reference; k for a temporal stride read on every
        frame (the autocorrelation at frame lags ``k * m``; see :class:`AcfPlan`).
    """

    weights: np.ndarray
    lx_max: int
    lt_lo: int
    lt_hi: int
    lag_step: int = 1

    @cached_property
    def sparse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-ray ``(ptr, lag, w)`` lists of the non-zero weights (the fused CPU path)."""
        return sparse_rays(self.weights)

    @property
    def n_lt(self) -> int:
        """Number of frame lags in the window."""
        return self.lt_hi - self.lt_lo + 1

    def fft_length(self, t: int) -> int:
        """FFT length along time for ``t`` frames (circular lags of the window are linear)."""
        from ivy_gpu.kernels.acf import padded_length

        return padded_length(t, self.lag_step * self.lt_lo, self.lag_step * self.lt_hi)


def sparse_rays(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The folded ray operator ``(n_lags, n_theta)`` as per-ray lists of (lag, weight).

    Returns ``(ptr, lag, w)``: ray ``q`` sums ``w[e] * window[lag[e]]`` for
    ``e in ptr[q]:ptr[q + 1]``, lags in increasing order. About a tenth of the dense
    matrix is non-zero.
    """
    cols = np.ascontiguousarray(weights.T)
    q, lag = np.nonzero(cols)
    ptr = np.zeros(cols.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(q, minlength=cols.shape[0]), out=ptr[1:])
    return ptr, lag.astype(np.int64), cols[q, lag].astype(np.float32)


def ray_weight_matrix(
    p: int, t: int, rho: np.ndarray, theta_deg: np.ndarray, d_rho: float
) -> RayOperator:
    """Fold the taps and trapezoid weights of every ray into one matrix.

    The lag window is the smallest one containing every tap, so the fast
    autocorrelation only has to produce those lags.
    """
    i, j, fx, ft = ray_taps(p, t, rho, theta_deg)
    x0, t0 = p // 2 - 1, t // 2 - 1
    lx = i - x0
    lt = j - t0
    if lx.min() < 0:  # cannot happen: sin(theta) >= 0 on [0, 180]
        raise AssertionError("rays reach negative pixel lags")
    lx_max = int(lx.max()) + 1
    lt_lo, lt_hi = int(lt.min()), int(lt.max()) + 1
    n_lt = lt_hi - lt_lo + 1
    wr = _trapezoid_weights(rho.size, d_rho)[None, :]
    n_theta = theta_deg.size
    w = np.zeros((n_theta, (lx_max + 1) * n_lt))
    q = np.broadcast_to(np.arange(n_theta)[:, None], lx.shape)
    for dx, dt, wt in (
        (0, 0, (1 - fx) * (1 - ft)),
        (1, 0, fx * (1 - ft)),
        (0, 1, (1 - fx) * ft),
        (1, 1, fx * ft),
    ):
        col = (lx + dx) * n_lt + (lt + dt - lt_lo)
        np.add.at(w, (q, col), wt * wr)
    return RayOperator(np.ascontiguousarray(w.T, dtype=np.float32), lx_max, lt_lo, lt_hi)


@dataclass(frozen=True)
class AcfPlan:
    """Everything about the ACF score that depends only on (P, T, d_rho, d_theta, lag step).

    ``num_frames`` is the STI length the ray geometry is built for. With ``lag_step`` k > 1
    the plan scores a temporal stride on *every* frame: an STI of ``T >= k * num_frames``
    frames is autocorrelated in full and read at frame lags ``k * m``. Summed over its k
    phases, the strided sub-STIs' autocorrelation at lag ``m`` is exactly the full one at
    lag ``k * m`` (the same frame pairs), so this is the stride without discarding k - 1 of
    every k frames.
    """

    num_pixels: int
    num_frames: int
    d_rho: float
    rho: np.ndarray
    theta: np.ndarray
    operator: RayOperator

    @property
    def lag_step(self) -> int:
        """Frames per lag step (the operator's)."""
        return self.operator.lag_step

    @classmethod
    def build(cls, p: int, t: int, d_rho: float, d_theta: float, lag_step: int = 1) -> AcfPlan:
        """The polar grid and the ray operator for ``P x t`` STIs (``t`` in lag steps).

        Plans are cached (:data:`PLAN_CACHE_SIZE`): the videos of a batch share P and
        usually their frame count, so each builds the same operator and its per-ray lists.
        A cached plan's arrays are read-only.
        """
        return _build_plan(cls, int(p), int(t), float(d_rho), float(d_theta), int(lag_step))


#: Ray plans kept (full clip, quality windows, strided re-measurements of a site).
PLAN_CACHE_SIZE = 16


@lru_cache(maxsize=PLAN_CACHE_SIZE)
def _build_plan(
    cls: type[AcfPlan], p: int, t: int, d_rho: float, d_theta: float, lag_step: int
) -> AcfPlan:
    rho, theta = polar_grid(p, t, d_rho, d_theta)
    op = dataclasses.replace(ray_weight_matrix(p, t, rho, theta, d_rho), lag_step=lag_step)
    for a in (rho, theta, op.weights):
        a.flags.writeable = False  # shared by every later call with the same key
    return cls(p, t, d_rho, rho, theta, op)


@dataclass(frozen=True)
class PlanGroups:
    """Lines of one call scored with several plans: ``plans[g]`` for ``bounds[g]:bounds[g + 1]``.

    The temporal stride re-measures slow nodes at a few steps k; their STIs are the same
    full-rate STIs, read at different frame lags. One call gathers and autocorrelates all of
    them (one crop, one pass) and each span of lines gets its own rays
    (:func:`ivy_gpu.stiv.driver.apply_stride`).
    """

    plans: tuple[AcfPlan, ...]
    bounds: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.plans) + 1 or list(self.bounds) != sorted(self.bounds):
            raise ValueError("bounds: one more than plans, in increasing order")

    def spans(self) -> list[tuple[int, int, AcfPlan]]:
        """``(lo, hi, plan)`` of each non-empty span."""
        b = self.bounds
        return [(b[g], b[g + 1], p) for g, p in enumerate(self.plans) if b[g + 1] > b[g]]

    def chunk(self, lo: int, hi: int) -> PlanGroups:
        """The groups of lines ``lo:hi``, counted from ``lo``."""
        return PlanGroups(self.plans, tuple(int(np.clip(b, lo, hi)) - lo for b in self.bounds))

    def each(self, score: Any) -> tuple[np.ndarray, ...]:
        """``score(lo, hi, plan)`` on every span, its per-line results concatenated in order."""
        parts = [score(lo, hi, plan) for lo, hi, plan in self.spans()]
        if not parts:
            return tuple(np.empty(0) for _ in range(4))
        return tuple(np.concatenate(a) for a in zip(*parts, strict=True))


def peaks_xp(scores: Any, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Reduce ray integrals ``F (n, n_theta)`` to the peak and its neighbours.

    Returns
    -------
    idx : int array (n,)
        Index of the best theta (0 where the row is not finite).
    peak, before, after : float arrays (n,)
        ``F`` at the peak and at ``idx - 1`` / ``idx + 1`` (NaN at the ends); all NaN
        for rows with any non-finite value (an invalid STI).
    """
    bad = ~xp.all(xp.isfinite(scores), axis=1)
    f = xp.where(bad[:, None], 0.0, scores)
    n_theta = f.shape[1]
    idx = xp.argmax(f, axis=1)
    rows = xp.arange(f.shape[0])
    peak = f[rows, idx]
    before = xp.where(idx > 0, f[rows, xp.maximum(idx - 1, 0)], xp.nan)
    after = xp.where(idx < n_theta - 1, f[rows, xp.minimum(idx + 1, n_theta - 1)], xp.nan)
    nan = xp.asarray(np.nan, dtype=f.dtype)
    return idx, xp.where(bad, nan, peak), xp.where(bad, nan, before), xp.where(bad, nan, after)


#: Rows of one ray-operator product. Fixed, so how rows are split never depends on the
#: number of threads: each row's sum runs in the same order whatever the machine.
RAY_BLOCK_ROWS = 512


def apply_ray_operator(win: np.ndarray, weights: np.ndarray, workers: int) -> np.ndarray:
    """``win @ weights`` on the CPU, bit-identical whatever the thread count.

    A multi-threaded BLAS may split one product differently with 1 or 2 threads and
    round differently. Here BLAS runs single-threaded on fixed blocks of
    :data:`RAY_BLOCK_ROWS` rows, and the blocks are spread over ``workers`` threads
    (NumPy releases the GIL inside BLAS).

    Parameters
    ----------
    win : ndarray, shape (n, lags), float32
        Autocorrelation windows, one row per STI.
    weights : ndarray, shape (lags, n_theta), float32
        The folded ray operator.
    workers : int
        Threads that share the blocks.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = win.shape[0]
    out = np.empty((n, weights.shape[1]), dtype=np.result_type(win, weights))
    blocks = [(lo, min(lo + RAY_BLOCK_ROWS, n)) for lo in range(0, n, RAY_BLOCK_ROWS)]

    def block(bounds: tuple[int, int]) -> None:
        lo, hi = bounds
        np.matmul(win[lo:hi], weights, out=out[lo:hi])

    with _single_threaded_blas():
        if workers <= 1 or len(blocks) == 1:
            for b in blocks:
                block(b)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(block, blocks))
    return out


_BLAS = None


def _single_threaded_blas():
    """Context that limits the BLAS libraries NumPy loaded to one thread (threadpoolctl)."""
    global _BLAS
    from threadpoolctl import ThreadpoolController

    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")
