"""Lag window, normalisation, ray sums and the peak of each STI in one kernel (issue 22).

After the inverse FFT the GPU engine holds each STI's autocorrelation rows
``R[s, lx, :]`` (pixel lags ``0 ... lx_max``, every frame lag). The array code then takes the
window's frame lags (a copy), divides by the zero lag, multiplies by the dense folded ray
matrix (cuBLAS, 94 % zeros), masks invalid STIs and reduces the peak and its neighbours in
several launches, each reading and writing the whole chunk. Here one block per STI

- reads the window's ``(lx_max + 1) x n_lt`` values straight from ``R`` into shared memory,
  divided by the zero lag (a non-positive zero lag divides by 1, as the array code);
- sums every ray over its non-zero weights only (:attr:`~ivy_gpu.kernels.rays.RayOperator.sparse`:
  about 40 per ray instead of the matrix's 612 rows), one thread per ray;
- takes the first maximum and its neighbours (NaN past the ends; all NaN, index 0, for an
  invalid STI or a non-finite ray sum), as :func:`ivy_gpu.kernels.rays.peaks_xp`;
- writes ``(idx, peak, before, after)`` as one float64 row: the call downloads one array.

The window lives in a shared array of one of :data:`WIN_SIZES` values (two compiled variants:
a small one keeps many blocks per multiprocessor for the usual lines, a large one takes
P = 138); windows larger than :data:`WIN_MAX` values or fans of more than :data:`THETA_MAX`
rays do not fit, :func:`fits` says so and the engine keeps the matrix product.

Twin: :func:`ray_peaks_xp` (the array code: take, normalise, matrix product, mask, peaks).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit
from ivy_gpu.kernels.rays import RayOperator, peaks_xp

#: Shared window sizes of the compiled variants, float32 values: 16 KB (P = 32: 612 values;
#: P = 64: 2,244) and 40 KB (P = 138 at T = 300: 9,940), within 48 KB with the rays.
WIN_SIZES = (4096, 10240)
#: The largest window the kernel takes.
WIN_MAX = WIN_SIZES[-1]
#: Rays one block keeps in shared memory.
THETA_MAX = 1024
#: Threads per block (one per ray, striding over the rest).
RAY_BLOCK = 128


def fits(operator: RayOperator, window: int = WIN_MAX) -> bool:
    """Whether the operator's window and fan fit shared arrays of ``window`` and THETA_MAX.

    ``window``: this kernel's largest variant by default; the per-STI ACF kernels keep the
    small one.
    """
    n_win = (operator.lx_max + 1) * operator.n_lt
    return n_win <= window and operator.weights.shape[1] <= THETA_MAX


def window_lags(operator: RayOperator, n_fft: int) -> np.ndarray:
    """Columns of ``R`` the window reads: frame lags ``lag_step * (lt_lo ... lt_hi)``, wrapped."""
    lags = operator.lag_step * np.arange(operator.lt_lo, operator.lt_hi + 1) % n_fft
    return lags.astype(np.int32)


def ray_peaks_xp(r: Any, operator: RayOperator, valid: Any, weights: Any, xp: ModuleType = np):
    """Reference twin: ``(n, 4)`` float64 rows ``(idx, peak, before, after)``.

    ``r`` (n, lx_max + 1, n_fft) float32: the autocorrelation rows; ``weights`` the dense
    ray matrix in ``xp``'s memory; ``valid`` (n,) bool.
    """
    lags = xp.asarray(window_lags(operator, r.shape[-1]).astype(np.int64))
    win = xp.take(r, lags, axis=-1).astype(xp.float32)
    zero = r[:, 0:1, 0:1].astype(xp.float32)
    zero = xp.where(zero > 0, zero, xp.asarray(np.float32(1.0)))
    return window_peaks_xp(win / zero, valid, weights, xp)


def window_peaks_xp(win: Any, valid: Any, weights: Any, xp: ModuleType = np) -> Any:
    """The peak rows ``(idx, peak, before, after)`` (float64) of normalised windows.

    ``win`` (n, lx_max + 1, n_lt) float32, ``valid`` (n,) bool (an invalid STI's row is
    ``(0, NaN, NaN, NaN)``), ``weights`` the dense ray matrix in ``xp``'s memory.
    """
    f = win.reshape(win.shape[0], -1) @ weights
    f = xp.where(xp.asarray(valid, dtype=bool)[:, None], f, xp.float32(np.nan))
    return xp.stack([a.astype(xp.float64) for a in peaks_xp(f, xp)], axis=1)


# two kernels, one per shared window size (a closure would share one disk-cache entry)
@cuda_jit.kernel(RAY_BLOCK)
def _ray_peaks_small(r, lags, ptr, lag, w, valid, out):  # pragma: no cover - device code
    _ray_peaks(r, lags, ptr, lag, w, valid, out, cuda.shared.array(WIN_SIZES[0], np.float32))


@cuda_jit.kernel(RAY_BLOCK)
def _ray_peaks_large(r, lags, ptr, lag, w, valid, out):  # pragma: no cover - device code
    _ray_peaks(r, lags, ptr, lag, w, valid, out, cuda.shared.array(WIN_SIZES[1], np.float32))


@cuda.jit(device=True)
def _ray_peaks(r, lags, ptr, lag, w, valid, out, win):  # pragma: no cover - device code
    n = r.shape[0]
    n_lt = lags.shape[0]
    n_win = r.shape[1] * n_lt
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    f = cuda.shared.array(THETA_MAX, np.float32)
    for s in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        if valid[s] == 0:  # the whole block takes this branch
            invalid_row(out, s, tid)
            continue
        zero = r[s, 0, 0]
        if not zero > 0:
            zero = np.float32(1.0)
        for k in range(tid, n_win, nthreads):
            lx = k // n_lt
            win[k] = r[s, lx, lags[k - lx * n_lt]] / zero
        cuda.syncthreads()
        window_peak(win, ptr, lag, w, f, out, s, tid, nthreads)


@cuda.jit(device=True)
def invalid_row(out, s, tid):  # pragma: no cover - device code
    """``(0, NaN, NaN, NaN)`` for an invalid STI (thread 0 writes it)."""
    if tid == 0:
        out[s, 0] = 0.0
        out[s, 1] = math.nan
        out[s, 2] = math.nan
        out[s, 3] = math.nan


@cuda.jit(device=True)
def window_peak(win, ptr, lag, w, f, out, s, tid, nthreads):  # pragma: no cover - device code
    """Ray sums of the normalised window ``win`` (shared) and row ``s`` of ``out``.

    One thread per ray over its sparse weights into ``f`` (shared, THETA_MAX), then thread 0
    takes the first maximum and its neighbours. Ends with a barrier: ``win`` and ``f`` may
    be rewritten for the next STI.
    """
    n_theta = ptr.shape[0] - 1
    nan = math.nan
    for q in range(tid, n_theta, nthreads):
        acc = np.float32(0.0)
        for e in range(ptr[q], ptr[q + 1]):
            acc += w[e] * win[lag[e]]
        f[q] = acc
    cuda.syncthreads()
    if tid == 0:
        best = 0
        finite = True
        for q in range(n_theta):
            v = f[q]
            if not math.isfinite(v):
                finite = False
                break
            if v > f[best]:
                best = q
        out[s, 0] = best if finite else 0
        out[s, 1] = f[best] if finite else nan
        out[s, 2] = f[best - 1] if finite and best > 0 else nan
        out[s, 3] = f[best + 1] if finite and best < n_theta - 1 else nan
    cuda.syncthreads()


def ray_peaks_cuda(
    r, lags, ptr, lag, w, valid, out, stream=0, block: int = RAY_BLOCK, window: int | None = None
) -> None:
    """Launch the kernel: ``out`` (n, 4) float64 from ``r`` (n, lx_max + 1, n_fft) float32.

    ``lags`` (:func:`window_lags`), ``ptr``/``lag``/``w`` (the operator's sparse rays) and
    ``valid`` (n,) uint8 are device arrays on a GPU, host arrays under the simulator.
    ``window`` picks the variant (one of :data:`WIN_SIZES`; default the smallest that fits):
    the probe compiles both.
    """
    from ivy_gpu import config

    n_win = r.shape[1] * lags.shape[0]
    if n_win > WIN_MAX or ptr.shape[0] - 1 > THETA_MAX:
        raise ValueError("ray_peaks_cuda: the window or the fan does not fit (see fits())")
    size = window or min(s for s in WIN_SIZES if s >= n_win)
    if size not in WIN_SIZES or size < n_win:
        raise ValueError(f"window: one of {WIN_SIZES} holding {n_win} values, not {size}")
    grid = max(1, min(config.CUDA_MAX_BLOCKS, r.shape[0]))
    _KERNELS[size][grid, block, stream](r, lags, ptr, lag, w, valid, out)


_KERNELS = dict(zip(WIN_SIZES, (_ray_peaks_small, _ray_peaks_large), strict=True))
