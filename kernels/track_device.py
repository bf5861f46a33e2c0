"""One pyramid level of Lucas-Kanade tracking for every corner in one CUDA kernel.

:class:`~ivy_gpu.frames.track_xp.ArrayTracker` as array code launches about 40 small
kernels per Gauss-Newton step (gathers, products, sums), 10 steps on each of 3 levels: on a
GPU about 1,200 launches per frame, launch-bound. Here one block per corner runs all the
steps of a level: per step each thread samples its share of the corner's window in the frame
(bilinear, clamped at the border, as the array code), takes the difference to the reference
window and its products with the reference's gradients, two float64 block sums give the
right-hand side, and thread 0 applies the corner's inverse structure matrix to the estimate
kept in shared memory. One launch per level (three per frame at half resolution), nothing
downloaded between them. A corner that is not one at this level (``good`` 0) takes no step,
as in the array code.

Twin: :func:`track_level_xp`, the array code :class:`~ivy_gpu.frames.track_xp.ArrayTracker`
runs without the kernels (the same arithmetic in float64, the sums in another order).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit
from ivy_gpu.kernels.sti_device import block_sum

#: Threads per block (a power of two: the block sums' tree).
TRACK_BLOCK = 128


def bilinear_xp(img: Any, x: Any, y: Any, xp: ModuleType = np) -> Any:
    """``img`` (H, W) at float positions ``x``, ``y`` (any shape), clamped at the border."""
    h, w = img.shape
    x = xp.clip(x, 0, w - 1.001)
    y = xp.clip(y, 0, h - 1.001)
    x0 = xp.floor(x).astype(xp.int64)
    y0 = xp.floor(y).astype(xp.int64)
    fx, fy = x - x0, y - y0
    flat = img.reshape(-1)
    i = y0 * w + x0
    top = flat[i] * (1 - fx) + flat[i + 1] * fx
    bottom = flat[i + w] * (1 - fx) + flat[i + w + 1] * fx
    return top * (1 - fy) + bottom * fy


def track_level_xp(img, ref_t, ref_ix, ref_iy, inv, good, pos, d, iterations: int,
                   xp: ModuleType = np) -> Any:  # fmt: skip
    """Array twin of the kernel: ``d`` (N, 2) after ``iterations`` steps (a new array).

    Per step: the frame sampled at each corner's window moved by ``d``, the difference to the
    reference window, ``d -= inv @ sum(grad T (J - T))``; a corner with ``good`` 0 takes no
    step.
    """
    win = ref_t.shape[1]
    grid = xp.arange(win, dtype=xp.float64) - win // 2
    a, b, c = inv[:, 0], inv[:, 1], inv[:, 2]
    keep = xp.asarray(good).astype(bool)[:, None]
    for _ in range(iterations):
        x = pos[:, 0, None, None] + d[:, 0, None, None] + grid[None, None, :]
        y = pos[:, 1, None, None] + d[:, 1, None, None] + grid[None, :, None]
        e = bilinear_xp(img, x, y, xp) - ref_t
        bx, by = (e * ref_ix).sum(axis=(1, 2)), (e * ref_iy).sum(axis=(1, 2))
        step = xp.stack([a * bx + b * by, b * bx + c * by], axis=1)
        d = d - xp.where(keep, step, 0.0)
    return d


@cuda.jit(device=True, inline=True)
def _sample(img, x, y):  # pragma: no cover - device code
    """``img`` at ``(x, y)`` bilinearly, the position clamped inside the image."""
    h = img.shape[0]
    w = img.shape[1]
    x = min(max(x, 0.0), w - 1.001)
    y = min(max(y, 0.0), h - 1.001)
    x0 = int(x)  # the floor: x is not negative
    y0 = int(y)
    fx = x - x0
    fy = y - y0
    top = img[y0, x0] * (1.0 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1.0 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1.0 - fy) + bottom * fy


@cuda_jit.kernel(TRACK_BLOCK)
def _level_kernel(img, ref_t, ref_ix, ref_iy, inv, good, pos, d, iterations):  # pragma: no cover
    n = pos.shape[0]
    win = ref_t.shape[1]
    r = win // 2
    npx = win * win
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    acc = cuda.shared.array(TRACK_BLOCK, np.float64)
    est = cuda.shared.array(2, np.float64)
    for s in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        if tid == 0:
            est[0] = d[s, 0]
            est[1] = d[s, 1]
        cuda.syncthreads()
        if good[s] != 0:  # the whole block takes this branch
            for _ in range(iterations):
                bx = 0.0
                by = 0.0
                x0 = pos[s, 0] + est[0] - r
                y0 = pos[s, 1] + est[1] - r
                for k in range(tid, npx, nthreads):
                    ky = k // win
                    kx = k - ky * win
                    e = _sample(img, x0 + kx, y0 + ky) - ref_t[s, ky, kx]
                    bx += e * ref_ix[s, ky, kx]
                    by += e * ref_iy[s, ky, kx]
                sx = block_sum(acc, bx, tid, nthreads)
                sy = block_sum(acc, by, tid, nthreads)
                if tid == 0:
                    est[0] -= inv[s, 0] * sx + inv[s, 1] * sy
                    est[1] -= inv[s, 1] * sx + inv[s, 2] * sy
                cuda.syncthreads()
        if tid == 0:
            d[s, 0] = est[0]
            d[s, 1] = est[1]
        cuda.syncthreads()


def track_level_cuda(img, ref_t, ref_ix, ref_iy, inv, good, pos, d, iterations: int,
                     stream=0, block: int = TRACK_BLOCK) -> None:  # fmt: skip
    """Launch one level: ``d`` (N, 2) float64, updated in place, for every corner.

    ``img`` (H, W) float32 is the frame's level; ``ref_t``/``ref_ix``/``ref_iy`` (N, w, w) the
    reference windows and gradients, ``inv`` (N, 3) the inverse structure matrices
    ``(a, b, c)`` of ``[[a, b], [b, c]]``, ``good`` (N,) uint8, ``pos`` (N, 2) the corners at
    this level. Device arrays on a GPU, host arrays under the simulator. ``block``: a power of
    two up to :data:`TRACK_BLOCK`.
    """
    from ivy_gpu import config

    if block < 1 or block > TRACK_BLOCK or block & (block - 1):
        raise ValueError(f"block: a power of two in [1, {TRACK_BLOCK}], not {block}")
    n = pos.shape[0]
    if not (ref_t.shape[0] == inv.shape[0] == good.shape[0] == d.shape[0] == n):
        raise ValueError(f"track_level_cuda: {n} corners, but arrays for a different count")
    grid = max(1, min(config.CUDA_MAX_BLOCKS, n))
    _level_kernel[grid, block, stream](img, ref_t, ref_ix, ref_iy, inv, good, pos, d,
                                       int(iterations))  # fmt: skip
