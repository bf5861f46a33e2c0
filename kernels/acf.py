"""Autocorrelation of standardized STIs.

Reference (``acf_full_numpy``): the full 2-D linear autocorrelation
``R(lx, lt) = sum_{a,b} Z[a, b] Z[a - lx, b - lt]`` of every ``P x T`` STI by FFT
convolution with its flipped self, ``(2P-1) x (2T-1)``, normalized by its maximum
(spec section 8.3).

Shortcut (``acf_window_xp`` + ``cross_spectra_numba``): the rays only read pixel
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
from numba import njit, prange


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


@njit(parallel=True, cache=True, nogil=True)
def _cross_spectra_numba(re, im, lx_max, out_re, out_im):  # pragma: no cover - compiled
    n, p, nf = re.shape
    for s in prange(n):
        for lx in range(lx_max + 1):
            for f in range(nf):
                out_re[s, lx, f] = 0.0
                out_im[s, lx, f] = 0.0
            for a in range(lx, p):
                b = a - lx
                for f in range(nf):
                    ar = re[s, a, f]
                    ai = im[s, a, f]
                    br = re[s, b, f]
                    bi = im[s, b, f]
                    out_re[s, lx, f] += ar * br + ai * bi
                    out_im[s, lx, f] += ai * br - ar * bi


def cross_spectra_numba(zf: np.ndarray, lx_max: int) -> np.ndarray:
    """Parallel CPU twin of :func:`cross_spectra_xp` (split real/imaginary for SIMD)."""
    re = np.ascontiguousarray(zf.real)
    im = np.ascontiguousarray(zf.imag)
    n, _, nf = zf.shape
    out_re = np.empty((n, lx_max + 1, nf), dtype=re.dtype)
    out_im = np.empty_like(out_re)
    _cross_spectra_numba(re, im, lx_max, out_re, out_im)
    return out_re + 1j * out_im


def acf_window_xp(
    z: Any,
    lx_max: int,
    lt_lo: int,
    lt_hi: int,
    xp: ModuleType,
    fft: Any,
    cross_spectra: Any = None,
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

    Returns
    -------
    array, shape (n, lx_max + 1, lt_hi - lt_lo + 1), float32
    """
    t = z.shape[-1]
    n_fft = padded_length(t, lt_lo, lt_hi)
    zf = fft.rfft(z, n=n_fft, axis=-1)
    if cross_spectra is None:
        c = cross_spectra_xp(zf, lx_max, xp)
    else:
        c = cross_spectra(zf, lx_max)
    r = fft.irfft(c, n=n_fft, axis=-1)
    lags = xp.asarray(np.arange(lt_lo, lt_hi + 1) % n_fft)
    win = xp.take(r, lags, axis=-1).astype(xp.float32)
    zero = r[:, 0:1, 0:1].astype(xp.float32)
    zero = xp.where(zero > 0, zero, xp.asarray(np.float32(1.0)))
    return win / zero
