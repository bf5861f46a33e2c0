"""The ACF lag window of each STI in one pass per STI (the numba engine's fused path).

The chunked path (:func:`ivy_gpu.kernels.sti.gather_numba`, then
:func:`ivy_gpu.kernels.acf.acf_window_xp`) writes every intermediate of a chunk -- the
zero-padded STIs, their row spectra, the cross-spectra, the inverse transforms -- to
large arrays, each read back by the next step from main memory. Here every thread takes
a few STIs at a time and runs gather, z-score, row FFTs, cross-spectra, inverse FFTs
and the lag window on scratch that stays in its cache; only the window (a few hundred
values per STI) is written out. Same formulation, same operation order per STI, except
that lines of :data:`PIXEL_FFT_MIN_PIXELS` pixels or more take their cross-spectra by an
FFT along the pixel axis instead of the direct sum over rows (equal to float32 rounding;
far fewer operations on long lines).

The FFTs inside the compiled loop come from Rocket-FFT (``np.fft`` in Numba, the
pocketfft/ducc0 code SciPy uses). Without it (:data:`AVAILABLE` is False) the engine
keeps the chunked path.

Twins
-----
The reference is :func:`ivy_gpu.kernels.sti.gather_numpy`,
:func:`ivy_gpu.kernels.sti.standardize_numpy` and
:func:`ivy_gpu.kernels.acf.acf_window_xp` with NumPy; the chunked numba path is the
fallback.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import njit, prange

from ivy_gpu.kernels.acf import cross_spectra_one
from ivy_gpu.kernels.sti import GATHER_MATH, gather_row, standardize_row

try:  # registers np.fft for Numba; imported here so that a missing one is known early
    import rocket_fft  # noqa: F401

    AVAILABLE = True
except Exception:  # pragma: no cover - depends on the environment
    # not installed, or built against another Numba (an install made with --no-deps)
    AVAILABLE = False

#: STIs one thread handles with one set of scratch arrays. Fixed, so the work of an
#: STI never depends on how many threads run.
BLOCK = 8

#: Search lines at least this long get their cross-spectra by FFT along the pixel axis.
#: The direct sum costs ~P x lx_max (lx_max ~ P / 2) products per frequency, the FFT
#: ~2 (P + lx_max) log(P + lx_max); measured on ``scattered`` (300 frames, 2 cores): the
#: FFT costs 1.16x the direct sum at P = 32, 1.06x at 50, 0.92x at 64, 0.71x at 80 and
#: 0.59x at 138 (docs/benchmarks.md).
PIXEL_FFT_MIN_PIXELS = 64


def pixel_fft_length(p: int, lx_max: int) -> int:
    """Length of the pixel-axis FFT for lines of ``p`` pixels, 0 for the direct sum.

    At least ``p + lx_max``, so circular pixel lags ``0 ... lx_max`` equal linear ones.
    """
    return scipy.fft.next_fast_len(p + lx_max) if p >= PIXEL_FFT_MIN_PIXELS else 0


@njit(cache=True, nogil=True)
def cross_spectra_pixel_fft_one(zf, lx_max, g, c):  # pragma: no cover - compiled
    """Cross-spectra of one STI by FFT along the pixel axis.

    ``zf`` (P, nf) complex64 row spectra; ``g`` (n_a, nf) scratch with n_a >= P + lx_max
    (circular lags then equal linear ones) whose rows from P on stay zero; ``c``
    (lx_max + 1, nf) receives ``sum_a zf[a] conj(zf[a - lx])`` (Wiener-Khinchin along
    the pixel axis, as :func:`ivy_gpu.kernels.acf.cross_spectra_fft_xp`).
    """
    p = zf.shape[0]
    g[:p] = zf
    spec = np.fft.fft(g, axis=0)
    power = spec.real * spec.real + spec.imag * spec.imag
    # ifft of a real sequence is Hermitian: its first n_a // 2 + 1 terms hold every lag kept
    r = np.fft.ihfft(power, axis=0)
    c[:] = r[: lx_max + 1]


@njit(parallel=True, cache=True, nogil=True, fastmath=GATHER_MATH)
def _scores(
    rows,
    index,
    x0,
    y0,
    fx,
    fy,
    n_fft,
    lx_max,
    lt_lo,
    lt_hi,
    lag_step,
    n_pix_fft,
    ray_ptr,
    ray_lag,
    ray_w,
    min_std,
    idx,
    peak,
    before,
    after,
):  # pragma: no cover - compiled
    n, p = x0.shape
    t_len = rows.shape[1]
    n_lt = lt_hi - lt_lo + 1
    nf = n_fft // 2 + 1
    n_theta = ray_ptr.size - 1
    n_blocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        z = np.empty((p, t_len), np.float32)
        acc_r = np.empty(nf, np.float32)
        acc_i = np.empty(nf, np.float32)
        c = np.empty((lx_max + 1, nf), np.complex64)
        g = np.zeros((max(n_pix_fft, 1), nf), np.complex64)
        # the block's lag windows side by side (one lane per STI), so the sparse ray sums
        # run over BLOCK lanes at once
        win = np.zeros(((lx_max + 1) * n_lt, BLOCK), np.float32)
        f = np.empty((n_theta, BLOCK), np.float32)
        ok = np.zeros(BLOCK, np.bool_)
        s0 = blk * BLOCK
        for j in range(min(BLOCK, n - s0)):
            s = s0 + j
            ok[j] = True
            for i in range(p):
                total = gather_row(rows, index, x0[s, i], y0[s, i], fx[s, i], fy[s, i], z[i])
                if not standardize_row(z[i], total, min_std):
                    ok[j] = False
                    break
            if not ok[j]:
                win[:, j] = 0.0
                continue
            zf = np.fft.rfft(z, n=n_fft, axis=-1)
            if n_pix_fft:
                cross_spectra_pixel_fft_one(zf, lx_max, g, c)
            else:
                cross_spectra_one(zf.view(np.float32), lx_max, acc_r, acc_i, c.view(np.float32))
            r = np.fft.irfft(c, n=n_fft, axis=-1)
            zero = np.float32(r[0, 0])
            if not zero > 0:
                zero = np.float32(1.0)
            for lx in range(lx_max + 1):
                for k in range(n_lt):
                    lag = (lag_step * (lt_lo + k)) % n_fft
                    win[lx * n_lt + k, j] = np.float32(r[lx, lag]) / zero
        for q in range(n_theta):
            fq = f[q]
            fq[:] = 0.0
            for e in range(ray_ptr[q], ray_ptr[q + 1]):
                we = ray_w[e]
                wl = win[ray_lag[e]]
                for j in range(BLOCK):
                    fq[j] += we * wl[j]
        for j in range(min(BLOCK, n - s0)):
            s = s0 + j
            idx[s] = 0
            peak[s] = np.nan
            before[s] = np.nan
            after[s] = np.nan
            if not ok[j]:
                continue
            best = 0
            finite = True
            for q in range(n_theta):
                v = f[q, j]
                if not math.isfinite(v):
                    finite = False
                    break
                if v > f[best, j]:
                    best = q
            if finite:
                idx[s] = best
                peak[s] = f[best, j]
                if best > 0:
                    before[s] = f[best - 1, j]
                if best < n_theta - 1:
                    after[s] = f[best + 1, j]


def acf_scores_numba(packed, x0, y0, fx, fy, n_fft, operator, min_std):
    """ACF ray-integral peaks straight from the packed pixels, one pass per STI.

    Parameters
    ----------
    packed : ivy_gpu.kernels.sti.PackedStack
        Time-last pixels the lines read.
    x0, y0, fx, fy : ndarray, shape (n, P)
        Bilinear taps (:func:`ivy_gpu.kernels.sti.bilinear_taps`).
    n_fft : int
        FFT length along time (``operator.fft_length(T)``).
    operator : ivy_gpu.kernels.rays.RayOperator
        The lag window and the folded rays.
    min_std : float
        Relative threshold below which a row counts as constant (the STI is invalid).

    Lines of :data:`PIXEL_FFT_MIN_PIXELS` pixels or more take their cross-spectra by FFT
    along the pixel axis, shorter ones by the direct sum over rows.

    Returns
    -------
    idx : ndarray of int64, shape (n,)
        Best ray (0 for an invalid STI).
    peak, before, after : ndarray of float32, shape (n,)
        Ray integral at the best ray and its neighbours (NaN past the ends and for an
        invalid STI), as :func:`ivy_gpu.kernels.rays.peaks_xp`.
    """
    n = x0.shape[0]
    idx = np.empty(n, dtype=np.int64)
    peak, before, after = (np.empty(n, dtype=np.float32) for _ in range(3))
    ptr, lag, w = operator.sparse
    n_pix_fft = pixel_fft_length(x0.shape[1], operator.lx_max)
    _scores(
        packed.rows,
        packed.index,
        x0,
        y0,
        fx,
        fy,
        n_fft,
        operator.lx_max,
        operator.lt_lo,
        operator.lt_hi,
        operator.lag_step,
        n_pix_fft,
        ptr,
        lag,
        w,
        min_std,
        idx,
        peak,
        before,
        after,
    )
    return idx, peak, before, after
