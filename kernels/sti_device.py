"""STIs gathered and z-scored in one kernel, with the taps computed on the device (issue 22).

The GPU engine's path for ``unit`` search lines. The earlier two-kernel path
(:func:`ivy_gpu.kernels.sti.gather_cuda` then :func:`~ivy_gpu.kernels.sti.standardize_cuda`,
still timed beside it by ``make gpu-check``) uploaded every pair's taps from the host (four
``(pairs, P)`` arrays: 9 MB for ``grid``'s 17,825 pairs at P = 32), read the ``(T, H, W)``
crop one frame apart for consecutive threads, and z-scored with one thread per row. This
kernel instead

- reads a **time-last** copy of the crop, ``(H, W, T)`` (:func:`time_last_crop`, once per
  video and crop): the ``T`` values of one tap are contiguous, so the threads of a block,
  one per frame, read consecutive addresses;
- computes each sample's bilinear cell and weights **in the kernel** from the pair's node
  (float64), its angle index and the fan's unit offsets (``(angles, P, 2)``): 20 bytes per
  pair and a few KB per fan are uploaded instead of 16 bytes per sample;
- runs **one block per STI**: the block gathers a row, reduces its sum and then its squared
  deviations in shared memory (float64), writes the z-scored row and the FFT's zero padding
  up to ``n_fft``, and clears the STI's valid flag when a row is constant.

The taps are exactly :func:`ivy_gpu.stiv.lines.line_taps`' (same float64 operations in the
same order: node + offset, minus the crop's corner, rounding for ``nearest``, clipping), so
the STIs agree with the two-kernel path to float32 rounding of the sums. Only the ``unit``
search lines have per-angle offsets; IVyTools' own lines (compat mode) keep the host taps.

Twins: :func:`gather_zscore_numpy` (the reference, array-API-shaped: NumPy or CuPy) and
:func:`gather_zscore_cuda` (Numba-CUDA; runs under the simulator in CI).
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit
from ivy_gpu.kernels.sti import (
    CONSTANT_ROW_STD,
    bilinear_taps,
    gather_time_last_xp,
    standardize_numpy,
)

#: Threads per block of the fused kernel (one block per STI, threads over frames); a power
#: of two for the shared-memory tree reduction.
FUSED_BLOCK = 128

#: The block the engine's kernels launch under numba-cuda's simulator, which runs every thread
#: of a block as a Python thread and polls them at each barrier: one thread does all of a
#: block's work at a cost CI can pay (a 128-thread block made one small STIV call 200 s, two
#: threads 30 % slower than one). The kernels' own tests launch blocks of 4, so the block
#: reductions run several steps there.
SIM_BLOCK = 1


def launch_block(block: int = FUSED_BLOCK) -> int:
    """Threads per block for the engine: ``block`` on a GPU, :data:`SIM_BLOCK` when simulated."""
    from numba import config as numba_config

    return SIM_BLOCK if numba_config.ENABLE_CUDASIM else block


def time_last_crop(stack, window: tuple[int, int, int, int], xp: ModuleType = np):
    """The crop ``(y_lo, y_hi, x_lo, x_hi)`` of a ``(T, H, W)`` stack, ``(h, w, T)`` contiguous."""
    y_lo, y_hi, x_lo, x_hi = window
    crop = stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1]
    return xp.ascontiguousarray(xp.moveaxis(crop, 0, -1))


def _positions(node_x, node_y, pair_angle, offsets, x_lo, y_lo, xp):
    """Sample positions (pairs, P) in crop coordinates, as ``line_taps`` computes them."""
    off = offsets[pair_angle]  # (pairs, P, 2)
    sx = (node_x[:, None] + off[..., 0]) - x_lo
    sy = (node_y[:, None] + off[..., 1]) - y_lo
    return sx, sy


def gather_zscore_numpy(
    tl,
    node_x,
    node_y,
    pair_angle,
    offsets,
    x_lo: int,
    y_lo: int,
    nearest: bool,
    n_fft: int,
    xp: ModuleType = np,
    standardize: bool = True,
    starts=None,
    t_len: int | None = None,
):
    """Reference twin: z-scored STIs zero-padded to ``n_fft``, and the valid flags.

    Parameters
    ----------
    tl : array (h, w, T)
        The time-last crop (:func:`time_last_crop`).
    node_x, node_y : array (pairs,) float64
        Each pair's node, stack pixels.
    pair_angle : array (pairs,) int32
        Each pair's index into ``offsets``.
    offsets : array (angles, P, 2) float64
        The fan's unit-line offsets (dx, dy) (:func:`ivy_gpu.stiv.lines.line_offsets`).
    x_lo, y_lo : int
        The crop's corner in stack pixels.
    nearest : bool
        Nearest-neighbour sampling (rounding half down), else bilinear.
    n_fft : int
        Columns of the output (>= T); those past ``T`` are 0.
    xp : module
        The array namespace (NumPy, or CuPy for device arrays).
    standardize : bool
        Z-score the rows (the ACF method); False leaves the raw samples (the gradient
        method) and only flags constant rows.
    starts : array (pairs,) int, optional
        Each pair's first frame of ``tl`` (time windows in one batch); default 0.
    t_len : int, optional
        Frames per STI (default: all of ``tl``'s).

    Returns
    -------
    z : array (pairs, P, n_fft) float32
        Rows z-scored over time (ddof 1); a constant row is 0. Raw samples when not
        ``standardize``.
    valid : array (pairs,) bool
        False where any row is constant.
    """
    h, w, t_all = tl.shape
    t_len = t_all if t_len is None else t_len
    sx, sy = _positions(node_x, node_y, pair_angle, offsets, x_lo, y_lo, xp)
    taps = bilinear_taps(sx, sy, w, h, "nearest" if nearest else "bilinear", xp)
    raw = gather_time_last_xp(tl, *taps, xp=xp)  # (pairs, P, T of tl)
    if starts is not None or t_len < t_all:  # each STI's own frames
        first = xp.zeros(len(node_x), dtype=xp.int64) if starts is None else xp.asarray(starts)
        frames = (first[:, None] + xp.arange(t_len))[:, None, :]  # (pairs, 1, t_len)
        raw = xp.take_along_axis(raw, xp.broadcast_to(frames, (*raw.shape[:2], t_len)), axis=-1)
    z, valid = standardize_numpy(raw, xp=xp)  # constant rows NaN
    z = xp.where(xp.isnan(z), xp.float32(0.0), z) if standardize else raw
    out = xp.zeros((raw.shape[0], raw.shape[1], n_fft), dtype=xp.float32)
    out[..., :t_len] = z
    return out, valid


@cuda_jit.kernel(FUSED_BLOCK)
def _gather_zscore_kernel(
    tl,
    node_x,
    node_y,
    pair_angle,
    offsets,
    x_lo,
    y_lo,
    nearest,
    standardize,
    min_std,
    out,
    valid,
    t0,
    line_t0,
    t_len,
):  # pragma: no cover - device code
    # one block per STI (grid-stride over STIs), threads over its frames
    # t0 + line_t0[s] ... + t_len - 1
    h, w = tl.shape[0], tl.shape[1]
    n_pairs = node_x.shape[0]
    p_len = offsets.shape[1]
    n_fft = out.shape[2]
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    acc = cuda.shared.array(FUSED_BLOCK, np.float64)
    one = np.float32(1.0)
    for s in range(cuda.blockIdx.x, n_pairs, cuda.gridDim.x):
        a = pair_angle[s]
        first = t0 + line_t0[s]
        for i in range(p_len):
            # the cell and weights, as line_taps computes them (float64, same order)
            sx = (node_x[s] + offsets[a, i, 0]) - x_lo
            sy = (node_y[s] + offsets[a, i, 1]) - y_lo
            if nearest:
                sx = float(math.ceil(sx - 0.5))
                sy = float(math.ceil(sy - 0.5))
            xa = min(max(int(math.floor(sx)), 0), w - 2)
            ya = min(max(int(math.floor(sy)), 0), h - 2)
            gx = np.float32(sx - xa)
            gy = np.float32(sy - ya)
            total = 0.0
            for t in range(tid, t_len, nthreads):  # consecutive threads, consecutive frames
                f = first + t
                v = (
                    (one - gx) * (one - gy) * np.float32(tl[ya, xa, f])
                    + gx * (one - gy) * np.float32(tl[ya, xa + 1, f])
                    + (one - gx) * gy * np.float32(tl[ya + 1, xa, f])
                    + gx * gy * np.float32(tl[ya + 1, xa + 1, f])
                )
                out[s, i, t] = v
                total += v
            mean = block_sum(acc, total, tid, nthreads) / t_len
            dev = 0.0
            for t in range(tid, t_len, nthreads):
                d = out[s, i, t] - mean
                dev += d * d
            sd = math.sqrt(block_sum(acc, dev, tid, nthreads) / (t_len - 1))
            constant = sd < min_std * (1.0 + abs(mean))
            if constant and tid == 0:
                valid[s] = 0
            if standardize:
                inv = 0.0 if constant else 1.0 / sd
                for t in range(tid, t_len, nthreads):
                    out[s, i, t] = (out[s, i, t] - mean) * inv
            for t in range(t_len + tid, n_fft, nthreads):
                out[s, i, t] = 0.0


@cuda.jit(device=True)
def block_sum(acc, value, tid, nthreads):  # pragma: no cover - device code
    """Sum of every thread's ``value`` (float64, tree order: deterministic), to all threads."""
    acc[tid] = value
    cuda.syncthreads()
    step = nthreads // 2
    while step > 0:
        if tid < step:
            acc[tid] += acc[tid + step]
        cuda.syncthreads()
        step //= 2
    total = acc[0]
    cuda.syncthreads()  # every thread has read it before the next use overwrites it
    return total


def check_starts(starts: np.ndarray, stop: int, frames: int) -> None:
    """Refuse per-STI first frames (host array) that read before 0 or past ``frames``."""
    if starts.size and (starts.min() < 0 or stop + int(starts.max()) > frames):
        raise ValueError(f"starts: frames past the {frames} of the crop")


def gather_zscore_cuda(
    tl, node_x, node_y, pair_angle, offsets, x_lo, y_lo, nearest, out, valid, stream=0,
    block: int = FUSED_BLOCK, standardize: bool = True, frames: tuple[int, int] | None = None,
    starts=None,
) -> None:  # fmt: skip
    """Launch the fused kernel: ``out`` (pairs, P, n_fft) float32, ``valid`` uint8 (ones).

    ``standardize=False`` writes the raw samples (``n_fft`` = T for the gradient method)
    and only clears ``valid`` for constant rows, as :func:`gather_zscore_numpy`.
    ``frames`` ``(start, stop)`` reads only those frames of ``tl`` (a time window of the
    clip), which stays one contiguous array: the kernel never receives a strided view.
    ``starts`` (pairs,) int32 shifts each STI's frames by its own offset within ``frames``
    (several time windows in one launch); ``starts.max() + stop`` must stay within ``tl``.

    Device arrays on a GPU; host arrays under the simulator. One block of ``block`` threads
    (:data:`FUSED_BLOCK`; a smaller power of two runs the same reductions, and lets the
    simulator's tests cover rows longer than a block) per STI, at most
    ``config.CUDA_MAX_BLOCKS`` blocks: the kernel loops over the rest.
    """
    from ivy_gpu import config

    if block < 1 or block > FUSED_BLOCK or block & (block - 1):
        raise ValueError(f"block: a power of two in [1, {FUSED_BLOCK}], not {block}")
    start, stop = frames if frames is not None else (0, tl.shape[2])
    if not 0 <= start < stop <= tl.shape[2] or stop - start > out.shape[2]:
        raise ValueError(f"frames: {start}:{stop} of {tl.shape[2]}, into {out.shape[2]} columns")
    n_pairs = node_x.shape[0]
    if starts is None:  # the engine passes its own (device) offsets
        starts = cuda.to_device(np.zeros(max(1, n_pairs), np.int32))
    elif isinstance(starts, np.ndarray):  # device offsets: the caller checked them on the host
        check_starts(starts, stop, tl.shape[2])
    grid = max(1, min(config.CUDA_MAX_BLOCKS, n_pairs))
    _gather_zscore_kernel[grid, block, stream](
        tl, node_x, node_y, pair_angle, offsets, float(x_lo), float(y_lo), bool(nearest),
        bool(standardize), CONSTANT_ROW_STD, out, valid, int(start), starts, int(stop - start),
    )  # fmt: skip
