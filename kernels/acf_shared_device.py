"""Each STI autocorrelated by an FFT in shared memory, then its rays and peak: one kernel.

The route toward issue 22's per-STI kernel ("keeps an STI and its spectra in shared memory
... a small radix FFT"). One block per STI, ``n / 2`` threads for an FFT of ``n`` (a power
of two covering the STI and its longest lag, at most :data:`N_MAX`):

- **rows in pairs**: rows ``q`` and ``q + 1`` of the z-scored STI are loaded as the real
  and imaginary parts of one complex row (zero-padded to ``n``, in bit-reversed order), and
  an in-place radix-2 FFT (decimation in time, one butterfly per thread and stage,
  twiddles from a table of ``n / 2`` values) gives both rows' spectra at once;
- **one frequency per thread**: thread ``f`` separates its bin of the two spectra (thread
  0 holds the DC and Nyquist bins, both real, as one pair) and keeps, in its own registers,
  the last ``lx_max + 1`` rows' values of that bin and the cross-spectra
  ``C[lx, f] = sum_p conj(Z[p, f]) Z[p + lx, f]``: no spectrum is ever written anywhere;
- **pixel lags in pairs**: ``C[a] + i C[b]`` (Hermitian extended) transformed back gives
  both lags' correlations at once, as real and imaginary parts; the lags the rays read are
  divided by the zero lag (the STI's sum of squares, float64) into the window;
- **rays and peak** exactly as :mod:`ivy_gpu.kernels.rays_device`
  (:func:`~ivy_gpu.kernels.rays_device.window_peak`).

At P = 32, T = 300 (``n`` = 512): 16 forward and 9 inverse FFTs of 512 points (about 0.6
MFLOP) and 18 complex multiply-adds per row and bin for the cross-spectra (1.2 MFLOP), with
the STI read once from global memory and nothing written but the peak: the cuFFT path's
arithmetic without its global-memory round trips, and the direct kernel's two launches per
chunk without its ``P^3`` sums. ``make gpu-check`` times it against both
(``docs/benchmarks.md`` has the prediction). Lines whose window, fan, pixel lags or FFT do
not fit (:func:`fits`) keep the cuFFT path.

Twin: the window is the linear autocorrelation the direct kernel sums, so
:func:`~ivy_gpu.kernels.acf_direct_device.ray_peaks_direct_xp` is this kernel's reference;
:func:`acf_window_shared_xp` runs this kernel's own arithmetic (packed row pairs, per-bin
cross-spectra, packed inverse pairs) as float32 array code, and :func:`ray_peaks_shared_xp`
adds the rays and peaks: the twin that stands in for the kernel where the simulator is too
slow (a whole clip).
"""

from __future__ import annotations

import math
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
#: Longest FFT (points): 512 threads per block, 8 KB of shared memory for the row pair.
N_MAX = 1024
#: Threads of the longest FFT's block (its zero-lag reduction's shared array).
HALF_N_MAX = N_MAX // 2
#: Most pixel lags (``lx_max + 1``) a thread keeps per bin in its registers.
LX_CAP = 32


def fft_size(operator: RayOperator, t_len: int) -> int:
    """The FFT length: a power of two covering ``t_len`` frames and the longest lag read.

    A circular lag ``d`` of an ``n``-point FFT is the linear one when ``n >= t_len + |d|``;
    lags of ``t_len`` frames or more overlap nothing and are written as zero, not read.
    """
    k = operator.lag_step
    longest = max(abs(k * operator.lt_lo), abs(k * operator.lt_hi))
    need = t_len + min(longest, t_len - 1)
    return max(2, 1 << (need - 1).bit_length())


def fits(operator: RayOperator, t_len: int) -> bool:
    """Whether the operator's window, fan, pixel lags and FFT fit this kernel."""
    return (
        rays_device.fits(operator, WIN)
        and operator.lx_max + 1 <= LX_CAP
        and fft_size(operator, t_len) <= N_MAX
    )


def twiddles(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``exp(-2 pi i k / n)`` for ``k < n / 2`` as float32 (real, imaginary) tables."""
    k = np.arange(n // 2, dtype=np.float64)
    return (np.cos(2 * np.pi * k / n).astype(np.float32),
            (-np.sin(2 * np.pi * k / n)).astype(np.float32))  # fmt: skip


def acf_window_shared_xp(z: Any, t_len: int, operator: RayOperator, xp: ModuleType = np) -> Any:
    """Array twin of the kernel's arithmetic: the normalised window ``(n, lx_max + 1, n_lt)``.

    Rows packed in pairs into complex rows, one complex FFT per pair, the two spectra
    separated, cross-spectra per bin, lag pairs packed into one inverse FFT: the kernel's
    steps in float32 (the FFTs by ``xp.fft`` in complex64), so its rounding is of the same
    kind. ``z`` (n, P, >= t_len) holds z-scored STIs in its first ``t_len`` frames.
    """
    n_fft = fft_size(operator, t_len)
    z = xp.asarray(z)[..., :t_len].astype(xp.float32)
    n, p, _ = z.shape
    if p % 2:
        z = xp.concatenate([z, xp.zeros((n, 1, t_len), dtype=xp.float32)], axis=1)
    packed = (z[:, 0::2] + 1j * z[:, 1::2]).astype(xp.complex64)
    x = xp.fft.fft(packed, n=n_fft, axis=-1).astype(xp.complex64)
    mirror = xp.conj(xp.roll(x[..., ::-1], 1, axis=-1))  # conj(X[n - f])
    za, zb = (x + mirror) / 2, (x - mirror) / 2j
    spectra = xp.stack([za, zb], axis=2).reshape(n, -1, n_fft)[:, :p].astype(xp.complex64)
    n_lag = operator.lx_max + 1
    c = xp.zeros((n, n_lag + n_lag % 2, n_fft), dtype=xp.complex64)
    for lx in range(min(operator.lx_max, p - 1) + 1):
        c[:, lx] = xp.sum(xp.conj(spectra[:, : p - lx]) * spectra[:, lx:], axis=1)
    y = xp.fft.ifft(c[:, 0::2] + 1j * c[:, 1::2], axis=-1).astype(xp.complex64)
    r = xp.stack([y.real, y.imag], axis=2).reshape(n, -1, n_fft)[:, :n_lag]
    lags = operator.lag_step * np.arange(operator.lt_lo, operator.lt_hi + 1)
    keep = xp.asarray(np.abs(lags) < t_len)  # longer lags overlap nothing: zero, not read
    cols = xp.asarray(rays_device.window_lags(operator, n_fft).astype(np.int64))
    win = xp.where(keep, r[..., cols], 0).astype(xp.float64)
    zero = xp.sum(z.astype(xp.float64) ** 2, axis=(1, 2))
    zero = xp.where(zero > 0, zero, 1.0)
    return (win / zero[:, None, None]).astype(xp.float32)


def ray_peaks_shared_xp(
    z: Any, t_len: int, operator: RayOperator, valid: Any, weights: Any, xp: ModuleType = np
) -> Any:
    """Array twin of the whole kernel: ``(n, 4)`` float64 rows ``(idx, peak, before, after)``."""
    return rays_device.window_peaks_xp(
        acf_window_shared_xp(z, t_len, operator, xp), valid, weights, xp
    )


@cuda.jit(device=True, inline=True)
def _bitrev(i, bits):  # pragma: no cover - device code
    """``i`` with its low ``bits`` bits reversed."""
    r = 0
    for _ in range(bits):
        r = (r << 1) | (i & 1)
        i >>= 1
    return r


@cuda.jit(device=True)
def _fft(xr, xi, tw_r, tw_i, bits, tid, nthreads, sign):  # pragma: no cover - device code
    """In-place radix-2 FFT of ``2^bits`` points in bit-reversed order (``sign`` -1: inverse).

    Decimation in time: stage ``s`` joins blocks of ``half = 2^s``, one butterfly per
    thread; a barrier after each stage. Unnormalised both ways.
    """
    half = 1
    m = 1 << (bits - 1)
    for s in range(bits):
        shift = bits - 1 - s
        for j in range(tid, m, nthreads):
            pos = j & (half - 1)
            i0 = ((j - pos) << 1) + pos
            i1 = i0 + half
            wr = tw_r[pos << shift]
            wi = sign * tw_i[pos << shift]
            ur = xr[i1]
            ui = xi[i1]
            tr = wr * ur - wi * ui
            ti = wr * ui + wi * ur
            ar = xr[i0]
            ai = xi[i0]
            xr[i0] = ar + tr
            xi[i0] = ai + ti
            xr[i1] = ar - tr
            xi[i1] = ai - ti
        cuda.syncthreads()
        half <<= 1


@cuda.jit(device=True)
def _accumulate(row, vr, vi, real_pair, ring_r, ring_i, c_r, c_i, lx_max):  # pragma: no cover
    """Add row ``row``'s bin ``(vr, vi)`` to this thread's cross-spectra.

    ``C[lx] += conj(Z[row - lx]) Z[row]``, the last ``lx_max + 1`` rows' values kept in a
    ring. ``real_pair``: thread 0's pair of real bins (DC, Nyquist), multiplied part by part.
    """
    n_lag = lx_max + 1
    slot = row % n_lag
    ring_r[slot] = vr
    ring_i[slot] = vi
    for lx in range(min(lx_max, row) + 1):
        j = (row - lx) % n_lag
        pr = ring_r[j]
        pi = ring_i[j]
        if real_pair:
            c_r[lx] += pr * vr
            c_i[lx] += pi * vi
        else:
            c_r[lx] += pr * vr + pi * vi
            c_i[lx] += pr * vi - pi * vr


@cuda_jit.kernel(HALF_N_MAX)
def _shared_kernel(z, t_len, bits, lx_max, lt_lo, n_lt, step, tw_r, tw_i, ptr, lag, w, valid, out):  # noqa: E501  # pragma: no cover
    n_sti = z.shape[0]
    p = z.shape[1]
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x  # n / 2: one frequency bin per thread
    n = 2 * nthreads
    xr = cuda.shared.array(N_MAX, np.float32)
    xi = cuda.shared.array(N_MAX, np.float32)
    win = cuda.shared.array(WIN, np.float32)
    f = cuda.shared.array(THETA_MAX, np.float32)
    acc = cuda.shared.array(HALF_N_MAX, np.float64)
    ring_r = cuda.local.array(LX_CAP, np.float32)
    ring_i = cuda.local.array(LX_CAP, np.float32)
    c_r = cuda.local.array(LX_CAP, np.float32)
    c_i = cuda.local.array(LX_CAP, np.float32)
    n_lag = lx_max + 1
    mirror = _bitrev(n - tid, bits) if tid > 0 else _bitrev(nthreads, bits)
    here = _bitrev(tid, bits)
    for s in range(cuda.blockIdx.x, n_sti, cuda.gridDim.x):
        if valid[s] == 0:  # the whole block takes this branch
            rays_device.invalid_row(out, s, tid)
            continue
        for lx in range(n_lag):
            c_r[lx] = np.float32(0.0)
            c_i[lx] = np.float32(0.0)
        sq = 0.0
        for q in range(0, p, 2):
            for t in range(tid, n, nthreads):  # rows q, q + 1 as one complex row
                a = np.float32(0.0)
                b = np.float32(0.0)
                if t < t_len:
                    a = z[s, q, t]
                    if q + 1 < p:
                        b = z[s, q + 1, t]
                sq += a * a + b * b
                j = _bitrev(t, bits)
                xr[j] = a
                xi[j] = b
            cuda.syncthreads()
            _fft(xr, xi, tw_r, tw_i, bits, tid, nthreads, np.float32(1.0))
            if tid == 0:  # DC and Nyquist: real in both rows
                ar = xr[0]
                ai = xr[nthreads]
                br = xi[0]
                bi = xi[nthreads]
            else:  # Z_q = (X[f] + conj X[n-f]) / 2, Z_q+1 = (X[f] - conj X[n-f]) / 2i
                fr = xr[tid]
                fi = xi[tid]
                gr = xr[n - tid]
                gi = -xi[n - tid]
                ar = np.float32(0.5) * (fr + gr)
                ai = np.float32(0.5) * (fi + gi)
                br = np.float32(0.5) * (fi - gi)
                bi = np.float32(-0.5) * (fr - gr)
            cuda.syncthreads()  # every bin read before the next pair is loaded
            _accumulate(q, ar, ai, tid == 0, ring_r, ring_i, c_r, c_i, lx_max)
            if q + 1 < p:
                _accumulate(q + 1, br, bi, tid == 0, ring_r, ring_i, c_r, c_i, lx_max)
        zero = block_sum(acc, sq, tid, nthreads)
        if not zero > 0:
            zero = 1.0
        scale = np.float32(1.0 / (n * zero))
        for a in range(0, n_lag, 2):  # lags a and a + 1 as one complex row
            car = c_r[a]
            cai = c_i[a]
            cbr = np.float32(0.0)
            cbi = np.float32(0.0)
            if a + 1 < n_lag:
                cbr = c_r[a + 1]
                cbi = c_i[a + 1]
            if tid == 0:  # Y[0] = C_a[0] + i C_b[0], Y[n/2] likewise (the packed real pair)
                xr[0] = car
                xi[0] = cbr
                xr[mirror] = cai
                xi[mirror] = cbi
            else:  # Y[f] = C_a[f] + i C_b[f], Y[n-f] = conj C_a[f] + i conj C_b[f]
                xr[here] = car - cbi
                xi[here] = cai + cbr
                xr[mirror] = car + cbi
                xi[mirror] = cbr - cai
            cuda.syncthreads()
            _fft(xr, xi, tw_r, tw_i, bits, tid, nthreads, np.float32(-1.0))
            for m in range(tid, n_lt, nthreads):
                d = step * (lt_lo + m)
                va = np.float32(0.0)
                vb = np.float32(0.0)
                if -t_len < d < t_len:
                    k = d & (n - 1)
                    va = xr[k] * scale
                    vb = xi[k] * scale
                win[a * n_lt + m] = va
                if a + 1 < n_lag:
                    win[(a + 1) * n_lt + m] = vb
            cuda.syncthreads()  # the window written before the buffer is reused
        rays_device.window_peak(win, ptr, lag, w, f, out, s, tid, nthreads)


def acf_shared_cuda(
    z, t_len: int, operator: RayOperator, tw_r, tw_i, ptr, lag, w, valid, out, stream=0
) -> None:
    """Launch the kernel: ``out`` (n, 4) float64 from z-scored STIs ``z`` (n, P, >= t_len).

    ``tw_r``/``tw_i`` are :func:`twiddles` of :func:`fft_size`, ``ptr``/``lag``/``w`` the
    operator's sparse rays and ``valid`` (n,) uint8: device arrays on a GPU (host arrays
    under the simulator). One block of ``n / 2`` threads per STI (the design: a thread per
    frequency bin); at most ``config.CUDA_MAX_BLOCKS`` blocks, looping over the rest.
    """
    from ivy_gpu import config

    if not fits(operator, t_len):
        raise ValueError("acf_shared_cuda: the window, fan, lags or FFT do not fit (see fits())")
    if not 0 < t_len <= z.shape[2]:
        raise ValueError(f"t_len: {t_len} frames of STIs {z.shape[2]} long")
    n = fft_size(operator, t_len)
    if tw_r.shape[0] != n // 2 or tw_i.shape[0] != n // 2:
        raise ValueError(f"twiddles: {n // 2} values for an FFT of {n}, not {tw_r.shape[0]}")
    bits = int(math.log2(n))
    grid = max(1, min(config.CUDA_MAX_BLOCKS, z.shape[0]))
    _shared_kernel[grid, n // 2, stream](
        z, int(t_len), bits, operator.lx_max, operator.lt_lo, operator.n_lt, operator.lag_step,
        tw_r, tw_i, ptr, lag, w, valid, out,
    )  # fmt: skip
