"""Space-time image (STI) gather and row standardization.

An STI is the stack sampled along one search line: ``P`` points along the
line (rows) by ``T`` frames (columns). All twins take the same *taps*: for every
sample point the top-left integer pixel ``(x0, y0)`` of its bilinear cell and the
fractional weights ``(fx, fy)`` (see :func:`bilinear_taps`). Nearest-neighbour
sampling is expressed with 0/1 weights, so one gather serves both.

Twins
-----
``gather_numpy`` / ``gather_numba`` / ``gather_cuda`` and ``standardize_numpy`` /
``standardize_cuda``; ``gather_numba`` fuses the z-scoring and the FFT zero padding and
reads a time-last copy of the stack (:func:`time_last`).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ivy_gpu.kernels import cuda_jit

#: A row is "constant" (no data) when its temporal standard deviation is below
#: ``CONSTANT_ROW_STD * (1 + |mean|)``: above float32 rounding noise (an ulp of 120 is ~8e-6,
#: and vectorized and scalar code round differently), far below any real texture.
CONSTANT_ROW_STD = 1e-5


def bilinear_taps(
    x: np.ndarray, y: np.ndarray, width: int, height: int, interpolation: str,
    xp: ModuleType = np,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Return the cell corners and weights that sample an image at ``(x, y)``.

    Parameters
    ----------
    x, y : ndarray of float64
        Sample positions in pixels (column, row), all inside
        ``[0, width - 1] x [0, height - 1]``.
    width, height : int
        Image size (both at least 2).
    interpolation : {"bilinear", "nearest"}
        ``"nearest"`` rounds half down, as SciPy's regular-grid interpolator.
    xp : module
        Array namespace of ``x`` and ``y`` (NumPy, or CuPy for the device twins).

    Returns
    -------
    x0, y0 : ndarray of int32
        Top-left corner of the 2x2 cell, clipped so that ``x0 + 1 < width``.
    fx, fy : ndarray of float32
        Weights of the right / lower neighbours.
    """
    if interpolation == "nearest":
        xs = xp.ceil(x - 0.5)
        ys = xp.ceil(y - 0.5)
    else:
        xs, ys = x, y
    x0 = xp.clip(xp.floor(xs), 0, width - 2)
    y0 = xp.clip(xp.floor(ys), 0, height - 2)
    fx = (xs - x0).astype(xp.float32)
    fy = (ys - y0).astype(xp.float32)
    return x0.astype(xp.int32), y0.astype(xp.int32), fx, fy


def gather_numpy(stack, x0, y0, fx, fy, xp: ModuleType = np):
    """Sample STIs from a ``(T, H, W)`` stack (reference; array-API shaped).

    Parameters
    ----------
    stack : ndarray, shape (T, H, W)
        uint8 or float32 frames in time order.
    x0, y0, fx, fy : ndarray, shape (n, P)
        Taps from :func:`bilinear_taps`.
    xp : module
        Array namespace of the inputs (NumPy, or CuPy on the GPU fallback path).

    Returns
    -------
    ndarray of float32, shape (n, P, T)
    """
    return gather_time_last_xp(xp.moveaxis(stack, 0, -1), x0, y0, fx, fy, xp=xp)


def gather_time_last_xp(tl, x0, y0, fx, fy, xp: ModuleType = np):
    """STIs sampled from a time-last ``(H, W, T)`` crop (or view): float32 (n, P, T).

    The bilinear combination of :func:`gather_numpy` (which reads its ``(T, H, W)`` stack
    through this). The GPU engine keeps its crop time-last for the fused kernel; host taps
    (IVyTools' lines, the best lines' STIs) are read from it here, one contiguous run of T
    values per tap.
    """
    w00 = ((1 - fx) * (1 - fy))[..., None]
    w10 = (fx * (1 - fy))[..., None]
    w01 = ((1 - fx) * fy)[..., None]
    w11 = (fx * fy)[..., None]

    def corner(dy: int, dx: int):
        return tl[y0 + dy, x0 + dx].astype(xp.float32)  # (n, P, T)

    return w00 * corner(0, 0) + w10 * corner(0, 1) + w01 * corner(1, 0) + w11 * corner(1, 1)


def standardize_numpy(sti, xp: ModuleType = np):
    """Z-score every row of every STI along time (sample std, ddof=1).

    Returns
    -------
    z : ndarray of float32, shape (n, P, T)
        Standardized STIs; rows that are constant in time are NaN.
    valid : ndarray of bool, shape (n,)
        False where any row is constant (the STI is then unusable).
    """
    mean = sti.mean(axis=-1, dtype=xp.float64, keepdims=True)
    std = sti.std(axis=-1, ddof=1, dtype=xp.float64, keepdims=True)
    const = std < CONSTANT_ROW_STD * (1.0 + xp.abs(mean))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = ((sti - mean) / xp.where(const, xp.nan, std)).astype(xp.float32)
    return z, ~const[..., 0].any(axis=-1)


class PackedStack(NamedTuple):
    """Time-last rows of the pixels STIV reads: ``rows[index[y, x]]`` is pixel (y, x) over time.

    ``index`` covers the crop (``-1`` for pixels no line reads). With time last, each
    bilinear tap is one contiguous run of ``T`` values, and only the pixels the search
    lines touch are copied: a layout of nodes spread over the frame costs what a compact
    one does.
    """

    rows: np.ndarray
    index: np.ndarray


def time_last(stack: np.ndarray, window: tuple[int, int, int, int] | None = None) -> PackedStack:
    """Pack every pixel of a ``(T, H, W)`` stack time-last, for :func:`gather_numba`.

    ``window`` (``y_lo, y_hi, x_lo, x_hi``, inclusive) packs only that box, read straight
    from the stack (no crop copied first). Each image row of the box, a ``(T, w)`` matrix
    in the stack, is transposed by OpenCV's blocked ``transpose`` into its ``w`` rows of the
    result: on 2 cores measured 5-6x less CPU than a tiled Numba loop on both cores
    (0.035 against 0.19-0.20 s for a 300-frame, 141 x 1347 px band), the same bytes. A
    dtype OpenCV does not take is copied by NumPy.
    """
    import cv2

    t, h, w = stack.shape
    y0 = x0 = 0
    if window is not None:
        y0, y1, x0, x1 = (int(v) for v in window)
        if min(y0, x0) < 0:
            raise ValueError(f"time_last: window {window} starts outside the stack")
        h, w = max(0, min(y1 + 1, h) - y0), max(0, min(x1 + 1, w) - x0)  # as a slice clips
    rows = np.empty((h * w, t), dtype=stack.dtype)
    if rows.size:
        box = stack[:, y0 : y0 + h, x0 : x0 + w]
        if stack.dtype in TRANSPOSED_BY_OPENCV:
            for y in range(h):
                cv2.transpose(box[:, y, :], rows[y * w : (y + 1) * w])
        else:
            rows[:] = np.moveaxis(box, 0, -1).reshape(h * w, t)
    return PackedStack(rows, np.arange(h * w, dtype=np.int32).reshape(h, w))


#: Dtypes :func:`time_last` hands to OpenCV (which writes into the given rows).
TRANSPOSED_BY_OPENCV = tuple(
    np.dtype(d) for d in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)
)


def pack_pixels(
    stack: np.ndarray, y0: int, x0: int, h: int, w: int, cells: np.ndarray
) -> PackedStack:
    """Pack only ``cells`` (flat indices into the ``h x w`` crop at ``(y0, x0)``) time-last.

    ``cells`` must hold every pixel a bilinear tap reads (both corners of each cell).
    """
    cy, cx = np.divmod(cells, w)
    rows = np.empty((cells.size, stack.shape[0]), dtype=stack.dtype)
    _pack_rows(stack, (cy + y0).astype(np.int64), (cx + x0).astype(np.int64), rows)
    return PackedStack(rows, cell_index(cells, h, w))


def read_cells(h: int, w: int, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Flat indices (into an ``h x w`` crop) of every pixel the bilinear taps ``(x0, y0)`` read.

    ``x0, y0`` are the taps' top-left corners (:func:`bilinear_taps`); each tap reads its
    corner and the right, lower and lower-right neighbours.
    """
    base = (y0.astype(np.int64) * w + x0).ravel()
    mask = np.zeros(h * w, bool)
    for off in (0, 1, w, w + 1):
        mask[base + off] = True
    return np.flatnonzero(mask)


def cell_index(cells: np.ndarray, h: int, w: int) -> np.ndarray:
    """The ``PackedStack.index`` of ``cells`` (flat, in an ``h x w`` crop) packed in order."""
    index = np.full(h * w, -1, dtype=np.int32)
    index[cells] = np.arange(cells.size, dtype=np.int32)
    return index.reshape(h, w)


@njit(parallel=True, cache=True, nogil=True)
def _pack_rows(stack, ys, xs, rows):  # pragma: no cover - compiled
    n_t = stack.shape[0]
    for k in prange(ys.size):
        y = ys[k]
        x = xs[k]
        for t in range(n_t):
            rows[k, t] = stack[t, y, x]


#: Numba float flags of the gather loops: reassociation lets the row sums vectorize (a
#: serial float64 sum otherwise); no NaN/infinity assumptions.
GATHER_MATH = {"reassoc", "nsz", "contract"}


@njit(cache=True, nogil=True, fastmath=GATHER_MATH)
def gather_row(rows, index, xa, ya, gx, gy, row):  # pragma: no cover - compiled
    """Bilinear samples of one STI row (one tap over time) into ``row``; returns their sum."""
    w00 = (1 - gx) * (1 - gy)
    w10 = gx * (1 - gy)
    w01 = (1 - gx) * gy
    w11 = gx * gy
    a = rows[index[ya, xa]]
    b = rows[index[ya, xa + 1]]
    c = rows[index[ya + 1, xa]]
    d = rows[index[ya + 1, xa + 1]]
    m = 0.0
    for t in range(row.size):
        v = (
            w00 * np.float32(a[t])
            + w10 * np.float32(b[t])
            + w01 * np.float32(c[t])
            + w11 * np.float32(d[t])
        )
        row[t] = v
        m += v
    return m


@njit(cache=True, nogil=True, fastmath=GATHER_MATH)
def row_stats(row, total):  # pragma: no cover - compiled
    """Mean and sample standard deviation of ``row`` given its sum."""
    t_len = row.size
    m = total / t_len
    ss = 0.0
    for t in range(t_len):
        dl = row[t] - m
        ss += dl * dl
    return m, math.sqrt(ss / (t_len - 1))


@njit(cache=True, nogil=True)
def row_varies(row, total, min_std):  # pragma: no cover - compiled
    """False when ``row`` is constant in time (no data): std below ``min_std * (1 + |mean|)``."""
    m, sd = row_stats(row, total)
    return sd >= min_std * (1.0 + abs(m))


@njit(cache=True, nogil=True, fastmath=GATHER_MATH)
def standardize_row(row, total, min_std):  # pragma: no cover - compiled
    """Z-score ``row`` in place (sample std) given its sum; False (row untouched) if constant."""
    m, sd = row_stats(row, total)
    if sd < min_std * (1.0 + abs(m)):
        return False
    inv = 1.0 / sd
    for t in range(row.size):
        row[t] = (row[t] - m) * inv
    return True


@njit(parallel=True, cache=True, nogil=True)
def _gather_numba(
    rows, index, x0, y0, fx, fy, out, valid, min_std, standardize
):  # pragma: no cover
    n, p = x0.shape
    t_len = rows.shape[1]
    n_out = out.shape[2]
    for s in prange(n):
        ok = True
        for i in range(p):
            row = out[s, i]
            total = gather_row(rows, index, x0[s, i], y0[s, i], fx[s, i], fy[s, i], row[:t_len])
            if standardize and not standardize_row(row[:t_len], total, min_std):
                ok = False
                row[:t_len] = 0.0
            row[t_len:n_out] = 0.0
        valid[s] = ok


def gather_numba(
    packed: PackedStack,
    x0: np.ndarray,
    y0: np.ndarray,
    fx: np.ndarray,
    fy: np.ndarray,
    n_out: int | None = None,
    standardize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Parallel CPU twin of :func:`gather_numpy` (+ :func:`standardize_numpy`), fused.

    Parameters
    ----------
    packed : PackedStack
        The pixels in time-last layout (:func:`time_last` or :func:`pack_pixels`).
    x0, y0, fx, fy : ndarray, shape (n, P)
        Taps from :func:`bilinear_taps`.
    n_out : int, optional
        Length of the time axis of the output (>= T); the extra samples are zero, ready
        for a zero-padded FFT.
    standardize : bool
        Z-score every row (sample std); rows constant in time become 0 and clear
        ``valid``.

    Returns
    -------
    out : ndarray of float32, shape (n, P, n_out or T)
    valid : ndarray of bool, shape (n,)
    """
    t_len = packed.rows.shape[1]
    out = np.empty((x0.shape[0], x0.shape[1], max(n_out or t_len, t_len)), dtype=np.float32)
    valid = np.empty(x0.shape[0], dtype=np.bool_)
    _gather_numba(
        packed.rows, packed.index, x0, y0, fx, fy, out, valid, CONSTANT_ROW_STD, standardize
    )
    return out, valid


@cuda_jit.kernel(cuda_jit.ELEMENTWISE_BLOCK_MAX)
def _gather_cuda_kernel(stack, x0, y0, fx, fy, out):  # pragma: no cover - device code
    # one thread per output value, frames fastest (coalesced writes); a grid-stride
    # loop, so the launch shape never depends on the chunk size (1-D grid limits)
    n_frames = stack.shape[0]
    n = x0.shape[0]
    p = x0.shape[1]
    total = n * p * n_frames
    one = np.float32(1.0)
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, total, stride):
        si = k // n_frames
        t = k - si * n_frames
        s = si // p
        i = si - s * p
        xa = x0[s, i]
        ya = y0[s, i]
        gx = fx[s, i]
        gy = fy[s, i]
        out[s, i, t] = (
            (one - gx) * (one - gy) * np.float32(stack[t, ya, xa])
            + gx * (one - gy) * np.float32(stack[t, ya, xa + 1])
            + (one - gx) * gy * np.float32(stack[t, ya + 1, xa])
            + gx * gy * np.float32(stack[t, ya + 1, xa + 1])
        )


@cuda_jit.kernel(cuda_jit.ELEMENTWISE_BLOCK_MAX)
def _standardize_cuda_kernel(sti, valid, min_std):  # pragma: no cover - device code
    # one thread per row (grid-stride); sums in float64, sequential in t: deterministic
    n, p, t_len = sti.shape
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for row in range(start, n * p, stride):
        s = row // p
        i = row - s * p
        m = 0.0
        for t in range(t_len):
            m += sti[s, i, t]
        m /= t_len
        ss = 0.0
        for t in range(t_len):
            d = sti[s, i, t] - m
            ss += d * d
        sd = math.sqrt(ss / (t_len - 1))
        if sd < min_std * (1.0 + abs(m)):
            valid[s] = 0
            for t in range(t_len):
                sti[s, i, t] = 0.0
        else:
            inv = 1.0 / sd
            for t in range(t_len):
                sti[s, i, t] = (sti[s, i, t] - m) * inv


def launch_shape(total: int, block: int, max_blocks: int) -> tuple[int, int]:
    """``(blocks, threads)`` of a 1-D grid-stride launch over ``total`` items.

    The block count is capped (``config.CUDA_MAX_BLOCKS``), so no chunk size can exceed a
    launch limit; the kernels loop over what one grid does not cover. ``block`` is at most
    the element-wise kernels' launch bound (``cuda_jit.ELEMENTWISE_BLOCK_MAX``).
    """
    if not 0 < block <= cuda_jit.ELEMENTWISE_BLOCK_MAX:
        raise ValueError(f"block: 1 to {cuda_jit.ELEMENTWISE_BLOCK_MAX} threads, not {block}")
    return max(1, min(max_blocks, (total + block - 1) // block)), block


def gather_cuda(stack, x0, y0, fx, fy, out, stream=0) -> None:
    """Launch the CUDA gather into ``out`` (device arrays, or host arrays under the simulator).

    ``stream`` is a Numba stream (the engine passes CuPy's current stream); 0 is the default.
    """
    from ivy_gpu import config

    total = x0.shape[0] * x0.shape[1] * stack.shape[0]
    grid, block = launch_shape(total, config.CUDA_BLOCK, config.CUDA_MAX_BLOCKS)
    _gather_cuda_kernel[grid, block, stream](stack, x0, y0, fx, fy, out)


def standardize_cuda(sti, valid, stream=0) -> None:
    """Launch the CUDA row z-scoring in place; ``valid`` (uint8, ones) is cleared for bad STIs.

    Constant rows become 0 (like :func:`gather_numba`), so invalid STIs need no masking.
    """
    from ivy_gpu import config

    grid, block = launch_shape(
        sti.shape[0] * sti.shape[1], config.CUDA_BLOCK, config.CUDA_MAX_BLOCKS
    )
    _standardize_cuda_kernel[grid, block, stream](sti, valid, CONSTANT_ROW_STD)
