"""Autocorrelation of standardized STIs.

Reference (``acf_full_numpy``): the full 2-D linear autocorrelation
``R(lx, lt) = sum_{a,b} Z[a, b] Z[a - lx, b - lt]`` of every ``P x T`` STI by FFT
convolution with its flipped self, ``(2P-1) x (2T-1)``, normalized by its maximum
(spec section 8.3).

Shortcut (``acf_window_xp`` + a ``cross_spectra`` twin): the rays only read pixel
lags ``0 ... lx_max`` and frame lags ``lt_lo ... lt_hi`` (a few dozen values), so
each row is Fourier transformed once along time (zero padded so circular lags
equal linear ones), the cross-spectrum of rows ``a`` and ``a - lx`` is summed over
``a`` for each needed ``lx``, and one inverse FFT per ``lx`` gives every frame lag.
Normalization is by the zero lag ``R(0, 0)``, which is the maximum of an
autocorrelation (Cauchy-Schwarz). The result equals the reference window to
float32 rounding.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
from numba import cuda, njit, prange

from ivy_gpu.kernels import cuda_jit


def acf_full_numpy(z: np.ndarray) -> np.ndarray:
    """Full normalized autocorrelation of each STI (reference).

    Parameters
    ----------
    z : ndarray, shape (n, P, T)
        Standardized STIs (NaN rows propagate to a NaN result).

    Returns
    -------
    ndarray of float64, shape (n, 2P-1, 2T-1)
        Zero lag at index ``(P-1, T-1)``.
    """
    z64 = z.astype(np.float64)
    r = scipy.signal.fftconvolve(z64, z64[:, ::-1, ::-1], mode="full", axes=(1, 2))
    return r / r.max(axis=(1, 2), keepdims=True)


def padded_length(t: int, lt_lo: int, lt_hi: int) -> int:
    """FFT length along time for which circular lags in [lt_lo, lt_hi] are linear."""
    return scipy.fft.next_fast_len(t + max(-lt_lo, lt_hi, 0), real=True)


def cross_spectra_xp(zf: Any, lx_max: int, xp: ModuleType) -> Any:
    """``C[:, lx, f] = sum_a Zf[:, a, f] * conj(Zf[:, a - lx, f])`` for lx = 0 ... lx_max."""
    p = zf.shape[1]
    parts = [
        xp.sum(zf[:, lx:, :] * xp.conj(zf[:, : p - lx, :]), axis=1) for lx in range(lx_max + 1)
    ]
    return xp.stack(parts, axis=1)


@njit(cache=True, nogil=True, fastmath=True)
def cross_spectra_one(v, lx_max, acc_r, acc_i, o):  # pragma: no cover - compiled
    """Cross-spectra of one STI into ``o`` (lx_max + 1, 2 nf), float32 interleaved.

    ``v`` (P, 2 nf) is the float32 view of its complex64 row spectra (re, im interleaved);
    ``acc_r`` and ``acc_i`` (nf,) are scratch.
    """
    p, nf2 = v.shape
    nf = nf2 // 2
    for lx in range(lx_max + 1):
        acc_r[:] = 0.0
        acc_i[:] = 0.0
        for a in range(lx, p):
            x = v[a]
            y = v[a - lx]
            for f in range(nf):
                xr = x[2 * f]
                xi = x[2 * f + 1]
                yr = y[2 * f]
                yi = y[2 * f + 1]
                acc_r[f] += xr * yr + xi * yi
                acc_i[f] += xi * yr - xr * yi
        ol = o[lx]
        for f in range(nf):
            ol[2 * f] = acc_r[f]
            ol[2 * f + 1] = acc_i[f]


@njit(parallel=True, cache=True, nogil=True)
def _cross_spectra_numba(v, lx_max, out):  # pragma: no cover - compiled
    # v: float32 view (n, P, 2 nf) of the complex64 spectra; out: (n, lx_max + 1, 2 nf)
    nf = v.shape[2] // 2
    for s in prange(v.shape[0]):
        acc_r = np.empty(nf, np.float32)
        acc_i = np.empty(nf, np.float32)
        cross_spectra_one(v[s], lx_max, acc_r, acc_i, out[s])


def cross_spectra_numba(zf: np.ndarray, lx_max: int) -> np.ndarray:
    """Parallel CPU twin of :func:`cross_spectra_xp`.

    Reads the complex64 spectra as interleaved float32 (no copies) and accumulates
    each lag in a per-thread buffer, which lets LLVM vectorize the frequency loop.
    """
    zf = np.ascontiguousarray(zf, dtype=np.complex64)
    out = np.empty((zf.shape[0], lx_max + 1, zf.shape[2]), dtype=np.complex64)
    _cross_spectra_numba(zf.view(np.float32), lx_max, out.view(np.float32))
    return out


def cross_spectra_fft_xp(zf: Any, lx_max: int, xp: ModuleType) -> Any:
    """:func:`cross_spectra_xp` by FFT along the pixel axis: a few batched launches.

    ``sum_a Zf[a] conj(Zf[a - lx])`` is the circular autocorrelation of each spectrum
    column along ``a``; zero padding to ``P + lx_max`` makes it linear for the lags
    kept. Used on the GPU when the CUDA kernel is unavailable (and in CI with NumPy).
    """
    p = zf.shape[1]
    n_a = scipy.fft.next_fast_len(p + lx_max)
    g = xp.fft.fft(zf, n=n_a, axis=1)
    g *= xp.conj(g)
    c = xp.fft.ifft(g, axis=1)[:, : lx_max + 1, :]
    return xp.ascontiguousarray(c).astype(xp.complex64)


@cuda_jit.kernel(cuda_jit.ELEMENTWISE_BLOCK_MAX)
def _cross_spectra_cuda_kernel(zf, lx_max, out):  # pragma: no cover - device code
    # one thread per (STI, lag, frequency), grid-stride; the sum over rows runs in a
    # fixed order, so results do not depend on the launch shape
    n, p, nf = zf.shape
    n_lag = lx_max + 1
    total = n * n_lag * nf
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, total, stride):
        s = k // (n_lag * nf)
        r = k - s * n_lag * nf
        lx = r // nf
        f = r - lx * nf
        acc_r = np.float32(0.0)
        acc_i = np.float32(0.0)
        for a in range(lx, p):
            x = zf[s, a, f]
            y = zf[s, a - lx, f]
            acc_r += x.real * y.real + x.imag * y.imag
            acc_i += x.imag * y.real - x.real * y.imag
        out[s, lx, f] = complex(acc_r, acc_i)


def cross_spectra_cuda(zf: Any, lx_max: int, out: Any, stream: Any = 0) -> None:
    """CUDA twin of :func:`cross_spectra_xp` into ``out`` (n, lx_max + 1, nf) complex64.

    One launch instead of one multiply and one reduction per lag.
    """
    from ivy_gpu import config
    from ivy_gpu.kernels.sti import launch_shape

    total = zf.shape[0] * (lx_max + 1) * zf.shape[2]
    grid, block = launch_shape(total, config.CUDA_BLOCK, config.CUDA_MAX_BLOCKS)
    _cross_spectra_cuda_kernel[grid, block, stream](zf, lx_max, out)


def acf_rows_xp(
    z: Any, lx_max: int, n_fft: int, xp: ModuleType, fft: Any, cross_spectra: Any = None
) -> Any:
    """Autocorrelation rows ``R[:, lx, lt]`` for pixel lags ``0 ... lx_max``, every frame lag.

    Row FFTs of length ``n_fft`` (``z`` zero-padded to it, or already padded), the
    cross-spectra of rows ``lx`` apart (``cross_spectra(zf, lx_max)``, default
    :func:`cross_spectra_xp`), one inverse FFT per ``lx``: (n, lx_max + 1, n_fft), unnormalised.
    """
    zf = fft.rfft(z, n=n_fft, axis=-1)
    c = cross_spectra_xp(zf, lx_max, xp) if cross_spectra is None else cross_spectra(zf, lx_max)
    return fft.irfft(c, n=n_fft, axis=-1)


def acf_window_xp(
    z: Any,
    lx_max: int,
    lt_lo: int,
    lt_hi: int,
    xp: ModuleType,
    fft: Any,
    cross_spectra: Any = None,
    n_frames: int | None = None,
    lag_step: int = 1,
) -> Any:
    """Normalized autocorrelation on the lag window the rays need.

    Parameters
    ----------
    z : array, shape (n, P, T), float32
        Standardized STIs with no NaN (invalid STIs zeroed by the caller).
    lx_max, lt_lo, lt_hi : int
        Pixel lags ``0 ... lx_max`` and frame lags ``lt_lo ... lt_hi``.
    xp : module
        Array namespace (``numpy`` or ``cupy``).
    fft : module
        FFT namespace with ``rfft`` / ``irfft`` (``scipy.fft`` or ``cupy.fft``).
    cross_spectra : callable, optional
        ``(zf, lx_max) -> C``; defaults to :func:`cross_spectra_xp`.
    n_frames : int, optional
        Frames T when ``z`` is already zero-padded along time (default: its length).
    lag_step : int
        Frame lags are ``lag_step * (lt_lo ... lt_hi)`` (a temporal stride read on every
        frame, :class:`ivy_gpu.kernels.rays.AcfPlan`).

    Returns
    -------
    array, shape (n, lx_max + 1, lt_hi - lt_lo + 1), float32
    """
    t = n_frames or z.shape[-1]
    n_fft = padded_length(t, lag_step * lt_lo, lag_step * lt_hi)
    r = acf_rows_xp(z, lx_max, n_fft, xp, fft, cross_spectra)
    lags = xp.asarray(lag_step * np.arange(lt_lo, lt_hi + 1) % n_fft)
    win = xp.take(r, lags, axis=-1).astype(xp.float32)
    zero = r[:, 0:1, 0:1].astype(xp.float32)
    zero = xp.where(zero > 0, zero, xp.asarray(np.float32(1.0)))
    return win / zero
