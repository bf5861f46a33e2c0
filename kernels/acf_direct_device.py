"""Each STI's lag window summed directly, then its rays and peak, in one kernel (issue 22).

The cuFFT path autocorrelates every STI in full: the z-scored STI is written zero-padded to
``n_fft`` (77 KB at P = 32, T = 300), transformed, its cross-spectra formed, transformed
back into ``(lx_max + 1) x n_fft`` values, and the ray kernel reads the ``(lx_max + 1) x
n_lt`` of them its rays need (612 at P = 32): four launches and about 0.3 MB of global
memory traffic per STI to keep 2.4 KB. Here one block per STI

- sums the window itself: ``R[lx, m] = sum_p sum_t z[p, t] z[p + lx, t + k (lt_lo + m)]``
  (the linear autocorrelation the padded FFT gives, ``k`` the stride's lag step). A thread
  takes one frame lag and four neighbouring pixel lags and slides down the rows: per row
  and frame one value of the row and one new value of the lagged rows (a register window
  holds the other three) for four multiply-adds; neighbouring threads take neighbouring
  frame lags, so a warp's loads of the STI (38 KB, resident in the multiprocessor's L1) are
  one broadcast and one cache line. float32 sums over the rows, float64 over the frames;
- divides by the zero lag (the STI's sum of squares, a float64 block reduction; a
  non-positive one divides by 1, as the FFT path);
- sums the rays and takes the peak exactly as :mod:`ivy_gpu.kernels.rays_device`
  (:func:`~ivy_gpu.kernels.rays_device.window_peak`).

About 5.5 M multiply-adds per STI at P = 32, T = 300: more arithmetic than the FFTs
(~0.8 MFLOP) but no intermediate in global memory and two launches per chunk (the fused
gather, this) instead of five. ``make gpu-check`` times it against the cuFFT path
(``docs/benchmarks.md`` has the prediction). Windows of more than :data:`WIN` values (long
lines, P = 138) or fans of more than ``rays_device.THETA_MAX`` rays keep the cuFFT path
(:func:`fits`).

Twin: :func:`acf_window_direct_xp` (the same sums as array code, float64) and
:func:`ray_peaks_direct_xp` (window, dense ray matrix, peaks).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit, rays_device
from ivy_gpu.kernels.rays import RayOperator
from ivy_gpu.kernels.sti_device import block_sum

#: Window values one block keeps in shared memory (the ray kernel's small variant).
WIN = rays_device.WIN_SIZES[0]
#: Rays one block scores (the ray kernel's); a name of this module, as the CUDA target sizes
#: shared arrays only from a module's own constants, never from another module's attribute.
THETA_MAX = rays_device.THETA_MAX
#: Neighbouring pixel lags one thread sums (its registers), for one frame lag.
LAGS_PER_THREAD = 4
#: Threads per block (a power of two: the zero lag's tree reduction).
DIRECT_BLOCK = 128


def fits(operator: RayOperator) -> bool:
    """Whether the operator's window and fan fit this kernel (else the cuFFT path)."""
    return rays_device.fits(operator, WIN)


def acf_window_direct_xp(z: Any, t_len: int, operator: RayOperator, xp: ModuleType = np) -> Any:
    """Reference twin: the normalised window ``(n, lx_max + 1, n_lt)`` float32 by direct sums.

    ``z`` (n, P, >= t_len) holds z-scored STIs in its first ``t_len`` frames; pairs of frames
    past ``t_len`` (or before 0) add nothing, as the FFT path's zero padding.
    """
    z = xp.asarray(z)[..., :t_len].astype(xp.float64)
    n, p, _ = z.shape
    k = operator.lag_step
    win = xp.zeros((n, operator.lx_max + 1, operator.n_lt), dtype=xp.float64)
    for lx in range(min(operator.lx_max, p - 1) + 1):
        a, b = z[:, : p - lx, :], z[:, lx:, :]
        for m in range(operator.n_lt):
            lag = k * (operator.lt_lo + m)
            if abs(lag) >= t_len:
                continue
            t0, t1 = max(0, -lag), min(t_len, t_len - lag)
            win[:, lx, m] = xp.sum(a[:, :, t0:t1] * b[:, :, t0 + lag : t1 + lag], axis=(1, 2))
    zero = xp.sum(z * z, axis=(1, 2))
    zero = xp.where(zero > 0, zero, 1.0)
    return (win / zero[:, None, None]).astype(xp.float32)


def ray_peaks_direct_xp(
    z: Any, t_len: int, operator: RayOperator, valid: Any, weights: Any, xp: ModuleType = np
) -> Any:
    """Reference twin of the kernel: ``(n, 4)`` float64 rows ``(idx, peak, before, after)``."""
    return rays_device.window_peaks_xp(
        acf_window_direct_xp(z, t_len, operator, xp), valid, weights, xp
    )


@cuda.jit(device=True, inline=True)
def _at(z, s, row, t, p):  # pragma: no cover - device code
    """``z[s, row, t]``, 0 past the last row (``t`` is always a frame of the clip)."""
    if row < p:
        return z[s, row, t]
    return np.float32(0.0)


@cuda_jit.kernel(DIRECT_BLOCK)
def _direct_kernel(z, t_len, lx_max, lt_lo, n_lt, step, ptr, lag, w, valid, out):  # noqa: E501  # pragma: no cover
    n = z.shape[0]
    p = z.shape[1]
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    win = cuda.shared.array(WIN, np.float32)
    f = cuda.shared.array(THETA_MAX, np.float32)
    acc = cuda.shared.array(DIRECT_BLOCK, np.float64)
    groups = (lx_max + LAGS_PER_THREAD) // LAGS_PER_THREAD  # of LAGS_PER_THREAD pixel lags
    units = groups * n_lt
    for s in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        if valid[s] == 0:  # the whole block takes this branch
            rays_device.invalid_row(out, s, tid)
            continue
        sq = 0.0
        for e in range(tid, p * t_len, nthreads):
            v = z[s, e // t_len, e % t_len]
            sq += v * v
        zero = block_sum(acc, sq, tid, nthreads)
        if not zero > 0:
            zero = 1.0
        # unit u: frame lag m (fastest: a warp reads neighbouring frames, one cache line)
        # and pixel lags lx0 ... lx0 + 3, slid down the rows: per row one new value
        for u in range(tid, units, nthreads):
            m = u % n_lt
            lx0 = (u // n_lt) * LAGS_PER_THREAD
            dt = step * (lt_lo + m)
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            for t in range(max(0, -dt), min(t_len, t_len - dt)):
                tb = t + dt
                b0 = _at(z, s, lx0, tb, p)
                b1 = _at(z, s, lx0 + 1, tb, p)
                b2 = _at(z, s, lx0 + 2, tb, p)
                c0 = np.float32(0.0)
                c1 = np.float32(0.0)
                c2 = np.float32(0.0)
                c3 = np.float32(0.0)
                for row in range(p - lx0):
                    a = z[s, row, t]
                    b3 = _at(z, s, row + lx0 + 3, tb, p)
                    c0 += a * b0
                    c1 += a * b1
                    c2 += a * b2
                    c3 += a * b3
                    b0 = b1
                    b1 = b2
                    b2 = b3
                a0 += c0
                a1 += c1
                a2 += c2
                a3 += c3
            k = lx0 * n_lt + m
            win[k] = a0 / zero
            if lx0 + 1 <= lx_max:
                win[k + n_lt] = a1 / zero
            if lx0 + 2 <= lx_max:
                win[k + 2 * n_lt] = a2 / zero
            if lx0 + 3 <= lx_max:
                win[k + 3 * n_lt] = a3 / zero
        cuda.syncthreads()
        rays_device.window_peak(win, ptr, lag, w, f, out, s, tid, nthreads)


def acf_direct_cuda(
    z, t_len: int, operator: RayOperator, ptr, lag, w, valid, out, stream=0,
    block: int = DIRECT_BLOCK,
) -> None:  # fmt: skip
    """Launch the kernel: ``out`` (n, 4) float64 from z-scored STIs ``z`` (n, P, >= t_len).

    ``ptr``/``lag``/``w`` are the operator's sparse rays and ``valid`` (n,) uint8, device
    arrays on a GPU (host arrays under the simulator). ``block``: a power of two up to
    :data:`DIRECT_BLOCK`; at most ``config.CUDA_MAX_BLOCKS`` blocks, looping over the rest.
    """
    from ivy_gpu import config

    if not fits(operator):
        raise ValueError("acf_direct_cuda: the window or the fan does not fit (see fits())")
    if block < 1 or block > DIRECT_BLOCK or block & (block - 1):
        raise ValueError(f"block: a power of two in [1, {DIRECT_BLOCK}], not {block}")
    if not 0 < t_len <= z.shape[2]:
        raise ValueError(f"t_len: {t_len} frames of STIs {z.shape[2]} long")
    grid = max(1, min(config.CUDA_MAX_BLOCKS, z.shape[0]))
    _direct_kernel[grid, block, stream](
        z, int(t_len), operator.lx_max, operator.lt_lo, operator.n_lt, operator.lag_step,
        ptr, lag, w, valid, out,
    )  # fmt: skip
