"""The ``cupy`` engine, written against an array namespace ``xp``.

On a GPU ``xp`` is CuPy: the stack crop lives in device memory, the gather and
z-scoring are Numba-CUDA kernels, the temporal FFTs are batched cuFFT, and the
ray integral is one cuBLAS matrix product. With ``xp = numpy`` (CI, no GPU) the
same code runs on the CPU, with the array-API gather in place of the kernels or,
under ``NUMBA_ENABLE_CUDASIM=1``, with the CUDA kernels in the simulator.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.kernels import acf, rays, sti, structure_tensor

Taps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def to_host(a: Any) -> np.ndarray:
    """Copy a device array to a NumPy array (no-op for NumPy)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


class XpEngine:
    """GPU engine on CuPy (or any NumPy-compatible namespace for testing).

    Parameters
    ----------
    xp : module
        ``cupy`` on a GPU, ``numpy`` for CPU tests.
    use_cuda_kernels : bool, optional
        Use the Numba-CUDA gather/z-score kernels. Default: when ``xp`` is not
        NumPy and Numba sees a CUDA device.
    """

    name = "cupy"

    def __init__(self, xp: ModuleType, use_cuda_kernels: bool | None = None) -> None:
        self.xp = xp
        self.fft = scipy.fft if xp is np else xp.fft
        if use_cuda_kernels is None:
            from numba import cuda

            use_cuda_kernels = xp is not np and cuda.is_available()
        self.use_cuda_kernels = use_cuda_kernels
        self._weights: tuple[Any, Any] = (None, None)  # (plan, its ray matrix on the device)

    def chunk_pairs(self, p: int, t: int) -> int:
        """(node, angle) pairs per chunk within the GPU budget."""
        n_fft = t + p
        per_pair = 4 * p * t * 2 + 8 * p * (n_fft // 2 + 1) * 4 + 4 * (p // 2 + 3) * n_fft * 4
        budget = config.GPU_CHUNK_BYTES if self.xp is not np else config.CPU_CHUNK_BYTES
        return max(1, min(config.MAX_CHUNK_PAIRS, budget // per_pair))

    def prepare(self, stack: np.ndarray) -> Any:
        """Copy the (cropped) stack to the device once; later calls reuse it."""
        return self.xp.asarray(stack)

    def _taps(self, taps: Taps) -> tuple[Any, ...]:
        return tuple(self.xp.asarray(a) for a in taps)

    def _gather_device(self, stack: Any, taps: Taps) -> Any:
        x0, y0, fx, fy = self._taps(taps)
        if not self.use_cuda_kernels:
            return sti.gather_numpy(stack, x0, y0, fx, fy, xp=self.xp)
        out = self.xp.empty((x0.shape[0], x0.shape[1], stack.shape[0]), dtype=self.xp.float32)
        sti.gather_cuda(stack, x0, y0, fx, fy, out)
        return out

    def _standardize(self, raw: Any) -> tuple[Any, Any]:
        if not self.use_cuda_kernels:
            return sti.standardize_numpy(raw, xp=self.xp)
        valid = self.xp.ones(raw.shape[0], dtype=self.xp.uint8)
        sti.standardize_cuda(raw, valid)
        return raw, valid.astype(bool)

    def gather(self, stack: Any, taps: Taps) -> np.ndarray:
        """Raw STIs on the host, shape (n, P, T) float32."""
        return to_host(self._gather_device(stack, taps))

    def acf_scores(self, stack: Any, taps: Taps, plan: rays.AcfPlan):
        """Peak ray integral per STI: ``(idx, peak, before, after)`` on the host."""
        xp = self.xp
        z, valid = self._standardize(self._gather_device(stack, taps))
        z = xp.where(valid[:, None, None], z, xp.float32(0.0))
        op = plan.operator
        if self._weights[0] is not plan:  # holding the plan: no stale weights on id reuse
            self._weights = (plan, xp.asarray(op.weights))
        win = acf.acf_window_xp(z, op.lx_max, op.lt_lo, op.lt_hi, xp, self.fft)
        f = win.reshape(win.shape[0], -1) @ self._weights[1]
        f = xp.where(valid[:, None], f, xp.float32(np.nan))
        return tuple(to_host(a) for a in rays.peaks_xp(f, xp))

    def gradient_scores(self, stack: Any, taps: Taps):
        """Structure-tensor ``(slope px/frame, coherence)`` per STI on the host."""
        raw = self._gather_device(stack, taps)
        slope, coherence = structure_tensor.orientation_xp(raw, self.xp)
        _, valid = self._standardize(raw.copy())
        return to_host(slope), to_host(self.xp.where(valid, coherence, self.xp.nan))
