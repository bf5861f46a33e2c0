"""The gradient method's streak speed, one block per STI (issue 22: the gradient method on the GPU).

The array code (:func:`ivy_gpu.kernels.structure_tensor.orientation_xp`) builds the pyramid, the
warped frames and their derivatives as whole-chunk temporaries, launch after launch, three
warped iterations per level and per temporal baseline. This kernel runs
:func:`~ivy_gpu.kernels.structure_tensor.orientation_one` (the numba twin's arithmetic) for one
raw STI per block:

- each row's temporal mean (one thread per row, summed in order, as the twin);
- the pyramid levels below the finest written to a scratch array (the finest level is the STI
  minus its row means, computed where it is read);
- every warped least-squares iteration's three tensor sums: threads over (sample, frame)
  pairs, float32 products summed in float64, reduced across the block in a fixed tree
  order (deterministic; the twin sums in sequence, so the two agree to rounding);
- the temporal baseline ``k``, its refinement and the final tensor's coherence;
- ``(slope, coherence)`` written as one float64 row (coherence NaN for an invalid STI).

Lines of more than :data:`MAX_P` samples keep the array code (:func:`fits`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit
from ivy_gpu.kernels.structure_tensor import BASELINE_PX, ITERATIONS, level_sizes, warp_cell

#: Threads per block.
TENSOR_BLOCK = 128
#: Longest line the kernel takes (its row means live in shared memory).
MAX_P = 512


def fits(p: int) -> bool:
    """Whether lines of ``p`` samples fit the kernel."""
    return p <= MAX_P


def scratch_rows(p: int) -> int:
    """Rows of the pyramid scratch per STI (every level but the finest; at least 1)."""
    return max(1, sum(list(level_sizes(p))[1:]))


#: The numba twin's warp cell, compiled for the device from the same source.
_warp_cell = cuda.jit(device=True)(warp_cell.py_func)


@cuda.jit(device=True)
def _value(sti, scratch, means, s, level, offset, a, t):  # pragma: no cover - device code
    """Sample ``a`` of frame ``t`` at pyramid ``level`` (level 0: the STI less its row mean)."""
    if level == 0:
        return np.float32(sti[s, a, t]) - means[a]
    return scratch[s, offset + a, t]


@cuda.jit(device=True)
def _reduce3(acc, x, y, z, tid, nthreads):  # pragma: no cover - device code
    """Block sums of three float64 values (tree order), to every thread."""
    acc[0, tid] = x
    acc[1, tid] = y
    acc[2, tid] = z
    cuda.syncthreads()
    step = nthreads // 2
    while step > 0:
        if tid < step:
            acc[0, tid] += acc[0, tid + step]
            acc[1, tid] += acc[1, tid + step]
            acc[2, tid] += acc[2, tid + step]
        cuda.syncthreads()
        step //= 2
    a, b, c = acc[0, 0], acc[1, 0], acc[2, 0]
    cuda.syncthreads()  # read by all before the next use
    return a, b, c


@cuda.jit(device=True)
def _tensor(sti, scratch, means, s, level, offset, p, t, u, k, acc, tid, nthreads):  # noqa: E501  # pragma: no cover
    """``(Jaa, Jat, Jtt)`` of one level over frames ``k`` apart, the later warped by ``k u``."""
    m = t - k
    quarter = np.float32(0.25)
    jaa = 0.0
    jat = 0.0
    jtt = 0.0
    for idx in range(tid, (p - 2) * m, nthreads):
        a = 1 + idx // m
        tt = idx - (a - 1) * m
        a0, f, g = _warp_cell(a, k, u, p)
        if a0 < 0:
            continue
        s2 = tt + k
        x0 = _value(sti, scratch, means, s, level, offset, a0, s2)
        x1 = _value(sti, scratch, means, s, level, offset, a0 + 1, s2)
        w_c = g * x0 + f * x1
        w_p = g * x1 + f * _value(sti, scratch, means, s, level, offset, a0 + 2, s2)
        w_m = g * _value(sti, scratch, means, s, level, offset, a0 - 1, s2) + f * x0
        c = _value(sti, scratch, means, s, level, offset, a, tt)
        da = _value(sti, scratch, means, s, level, offset, a + 1, tt) - _value(
            sti, scratch, means, s, level, offset, a - 1, tt
        )
        ia = quarter * (da + (w_p - w_m))
        it = w_c - c
        jaa += ia * ia
        jat += ia * it
        jtt += it * it
    return _reduce3(acc, jaa, jat, jtt, tid, nthreads)


@cuda.jit(device=True)
def _refine(sti, scratch, means, s, level, offset, p, t, u, k, acc, tid, nthreads):  # noqa: E501  # pragma: no cover
    for _ in range(ITERATIONS):
        jaa, jat, _jtt = _tensor(sti, scratch, means, s, level, offset, p, t, u, k, acc, tid,
                                 nthreads)  # fmt: skip
        if jaa > 0:
            du = -jat / (k * jaa)
            if math.isfinite(du):
                u += du
    return u


@cuda_jit.kernel(TENSOR_BLOCK)
def _orientation_kernel(sti, sizes, offsets, scratch, valid, out):  # pragma: no cover
    n, p, t = sti.shape
    levels = sizes.shape[0]
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    means = cuda.shared.array(MAX_P, np.float32)
    acc = cuda.shared.array((3, TENSOR_BLOCK), np.float64)
    for s in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        for a in range(tid, p, nthreads):  # each row's mean, summed in order as the twin
            total = 0.0
            for tt in range(t):
                total += sti[s, a, tt]
            means[a] = np.float32(total / t)
        cuda.syncthreads()
        for lev in range(1, levels):  # [1, 2, 1] / 4, every other sample
            for idx in range(tid, sizes[lev] * t, nthreads):
                j = idx // t
                tt = idx - j * t
                below, off = lev - 1, offsets[lev - 1]
                scratch[s, offsets[lev] + j, tt] = (
                    np.float32(0.25) * _value(sti, scratch, means, s, below, off, 2 * j, tt)
                    + np.float32(0.5) * _value(sti, scratch, means, s, below, off, 2 * j + 1, tt)
                    + np.float32(0.25) * _value(sti, scratch, means, s, below, off, 2 * j + 2, tt)
                )
            cuda.syncthreads()
        u = 0.0
        for lev in range(levels - 1, -1, -1):
            if lev < levels - 1:
                u = 2.0 * u
            u = _refine(sti, scratch, means, s, lev, offsets[lev], sizes[lev], t, u, 1, acc, tid,
                        nthreads)  # fmt: skip
        base = BASELINE_PX / max(abs(u), 1e-3)
        r = math.floor(base + 0.5)  # round half to even, as the twin
        if r - base == 0.5 and r % 2 != 0:
            r -= 1.0
        k = int(min(max(r, 1.0), max(1, t // 4)))
        if k > 1:
            u = _refine(sti, scratch, means, s, 0, 0, p, t, u, k, acc, tid, nthreads)
        jaa, jat, jtt = _tensor(sti, scratch, means, s, 0, 0, p, t, u, k, acc, tid, nthreads)
        if tid == 0:
            trace = jaa + jtt
            out[s, 0] = u
            ok = trace > 0 and valid[s] != 0
            out[s, 1] = math.sqrt((jaa - jtt) ** 2 + 4.0 * jat**2) / trace if ok else math.nan
        cuda.syncthreads()  # means and the scratch are rewritten for the next STI


def orientation_cuda(sti, sizes, offsets, scratch, valid, out, stream=0, block=TENSOR_BLOCK):
    """Launch the kernel: ``out`` (n, 2) float64 ``(slope px/frame, coherence)``.

    ``sti`` (n, P, T) float32 raw STIs; ``sizes`` and ``offsets`` (levels,) int32: each
    level's samples and its first row in ``scratch`` (n, :func:`scratch_rows`, T) float32
    (offsets[0] unused); ``valid`` (n,) uint8. ``block``: a power of two up to
    :data:`TENSOR_BLOCK`.
    """
    from ivy_gpu import config

    if block < 1 or block > TENSOR_BLOCK or block & (block - 1):
        raise ValueError(f"block: a power of two in [1, {TENSOR_BLOCK}], not {block}")
    if not fits(sti.shape[1]):
        raise ValueError(f"orientation_cuda: lines of {sti.shape[1]} samples (at most {MAX_P})")
    grid = max(1, min(config.CUDA_MAX_BLOCKS, sti.shape[0]))
    _orientation_kernel[grid, block, stream](sti, sizes, offsets, scratch, valid, out)


def pyramid_layout(p: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, offsets)`` int32 of the pyramid of ``p``-sample lines in the scratch rows."""
    sizes = np.asarray(list(level_sizes(p)), np.int32)
    offsets = np.zeros_like(sizes)
    offsets[2:] = np.cumsum(sizes[1:-1])
    return sizes, offsets
