"""The ``numba`` engine: parallel CPU kernels and the lag-limited ACF shortcut.

The gather, z-scoring and zero padding are one Numba kernel over a time-last copy of
the cropped stack; the per-row temporal FFTs run in SciPy's
multi-threaded pocketfft; the cross-spectra are a Numba kernel; the ray integral
is one BLAS matrix product over the few lags the rays need.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.engines.base import HostMemory, Taps, Window, chunk_of
from ivy_gpu.kernels import acf, acf_fused, rays, sti, structure_tensor


def _threaded_fft() -> SimpleNamespace:
    workers = config.FFT_WORKERS
    return SimpleNamespace(
        rfft=lambda a, n, axis: scipy.fft.rfft(a, n=n, axis=axis, workers=workers),
        irfft=lambda a, n, axis: scipy.fft.irfft(a, n=n, axis=axis, workers=workers),
    )


#: The kernels a first STIV call compiles (Numba caches them on disk, ``cache=True``).
_CACHED_KERNELS = ("acf_fused._scores", "sti._gather_numba")


def kernels_cached() -> bool:
    """Whether Numba's on-disk cache already holds this engine's main kernels.

    False on a fresh install (or a new Python): the first STIV call then compiles them,
    about a minute on two cores, and every later run loads them. Looks where Numba writes:
    ``NUMBA_CACHE_DIR`` when set, else ``__pycache__`` beside the kernels' source.
    """
    root = os.environ.get("NUMBA_CACHE_DIR")
    where = Path(root) if root else Path(acf_fused.__file__).parent / "__pycache__"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    try:
        return all(any(where.rglob(f"{name}-*.{tag}.nbi")) for name in _CACHED_KERNELS)
    except OSError:
        return False


class NumbaEngine(HostMemory):
    """Parallel CPU engine."""

    name = "numba"

    #: One pass per STI (:mod:`ivy_gpu.kernels.acf_fused`) when Rocket-FFT is installed;
    #: otherwise the chunked steps.
    fused: bool = acf_fused.AVAILABLE

    def chunk_pairs(self, p: int, t: int) -> int:
        """(node, angle) pairs per chunk within the CPU budget.

        Sized for the chunked ACF steps (a chunk's spectra and windows), which also bounds
        the gradient method's raw STIs; the fused ACF path needs far less and does not gain
        from larger chunks (measured: 59-75 against 67-70 us per pair on ``grid``).
        """
        n_fft = t + p
        per_pair = 4 * p * t + 8 * p * (n_fft // 2 + 1) * 3 + 4 * (p // 2 + 3) * n_fft * 4
        return max(1, min(config.MAX_CHUNK_PAIRS, config.CPU_CHUNK_BYTES // per_pair))

    def prepare(
        self, stack: np.ndarray, window: Window, sigma: float, taps: Taps | None = None
    ) -> sti.PackedStack:
        """Time-last rows of the pixels the ``taps`` read, or of the whole crop.

        Without a blur only those pixels are copied, straight from the stack, so the cost
        follows the number of pixels read, not the size of the box around them.
        """
        y_lo, y_hi, x_lo, x_hi = window
        h, w = y_hi - y_lo + 1, x_hi - x_lo + 1
        cells = None if taps is None else sti.read_cells(h, w, taps[0], taps[1])
        if cells is not None and cells.size < 0.5 * h * w:
            if sigma > 0:
                return sti.pack_pixels(self.crop(stack, window, sigma), 0, 0, h, w, cells)
            return sti.pack_pixels(self.to_host(stack), y_lo, x_lo, h, w, cells)
        if sigma > 0:
            return sti.time_last(self.crop(stack, window, sigma))
        return sti.time_last(self.to_host(stack), window)

    def time_slice(self, handle: sti.PackedStack, start: int, stop: int) -> sti.PackedStack:
        """Frames ``start:stop`` of the packed rows (each tap stays one contiguous run)."""
        return sti.PackedStack(handle.rows[:, start:stop], handle.index)

    def gather(self, stack_hwt: np.ndarray, taps: Taps) -> np.ndarray:
        """Raw STIs, shape (n, P, T) float32."""
        return sti.gather_numba(stack_hwt, *taps)[0]

    def acf_scores(self, stack_hwt: np.ndarray, taps: Taps, plan: rays.AcfPlan | rays.PlanGroups):
        """Peak ray integral per STI: ``(idx, peak, before, after)``."""
        if isinstance(plan, rays.PlanGroups):  # the stride's steps: one plan per span
            return plan.each(
                lambda lo, hi, p: self.acf_scores(stack_hwt, chunk_of(taps, lo, hi), p)
            )
        op = plan.operator
        t = stack_hwt.rows.shape[1]
        n_fft = op.fft_length(t)
        if self.fused:
            return acf_fused.acf_scores_numba(stack_hwt, *taps, n_fft, op, sti.CONSTANT_ROW_STD)
        z, valid = sti.gather_numba(stack_hwt, *taps, n_out=n_fft, standardize=True)
        win = acf.acf_window_xp(
            z,
            op.lx_max,
            op.lt_lo,
            op.lt_hi,
            np,
            _threaded_fft(),
            acf.cross_spectra_numba,
            t,
            op.lag_step,
        )
        f = rays.apply_ray_operator(win.reshape(win.shape[0], -1), op.weights, config.FFT_WORKERS)
        f[~valid] = np.nan
        return rays.peaks_xp(f, np)

    def gradient_scores(self, stack_hwt: sti.PackedStack, taps: Taps):
        """Structure-tensor ``(slope px/frame, coherence)`` per STI, one pass per STI."""
        return structure_tensor.orientation_packed_numba(stack_hwt, *taps, sti.CONSTANT_ROW_STD)
