"""The ``cupy`` engine, written against an array namespace ``xp``.

On a GPU ``xp`` is CuPy: the stack lives in device memory, frames are rectified there
(``map_coordinates`` straight into the uint8 stack), the gather, z-scoring and
cross-spectra are Numba-CUDA kernels launched on CuPy's current stream, the temporal
FFTs are batched cuFFT and the ray integral is one cuBLAS matrix product.

Before the engine is used, :func:`probe` runs every step once on a tiny input (cuFFT,
cuBLAS, each kernel against its NumPy twin): a missing library, a toolchain that cannot
compile (no NVVM, a Numba-CUDA release broken by the installed NumPy) or a wrong kernel
makes the backend unusable with the failure named, and ``auto`` then runs ``numba``.
``IVY_GPU_CUDA_KERNELS=off`` runs the same steps as array-namespace code instead (fancy-index
gather, reductions, cross-spectra by FFT along the pixel axis). With ``xp = numpy`` (CI, no
GPU) that code runs on the CPU; under ``NUMBA_ENABLE_CUDASIM=1`` the kernels run in Numba's
CUDA simulator.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.engines.base import Taps, Window, crop_blur, host_array
from ivy_gpu.kernels import acf, rays, sti, structure_tensor

if TYPE_CHECKING:  # pragma: no cover
    from ivy_gpu.scaffold.rectify import Rectifier


@dataclass(frozen=True)
class GpuProbe:
    """What the GPU engine can run on an array namespace, found by running it once.

    Attributes
    ----------
    usable : bool
        Every step the engine will call ran and gave the right values.
    path : str
        ``"kernels"`` (Numba-CUDA kernels, FFT library, BLAS), ``"array code"``
        (``IVY_GPU_CUDA_KERNELS=off``: FFT library and BLAS only) or ``"unusable"``.
    detail : str
        One line: what ran, or which library or kernel failed and how.
    """

    usable: bool
    path: str
    detail: str


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _same(name: str, got: Any, want: np.ndarray, atol: float = 1e-4) -> None:
    if not np.allclose(host_array(got), want, rtol=1e-4, atol=atol):
        raise RuntimeError(f"{name} gave wrong values")


def _probe_kernels(xp: ModuleType) -> None:
    """Compile and launch every Numba-CUDA kernel on a tiny input against its NumPy twin."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (6, 5, 7), dtype=np.uint8)
    taps = sti.bilinear_taps(rng.uniform(0, 5, (3, 4)), rng.uniform(0, 3, (3, 4)), 7, 5, "bilinear")
    want = sti.gather_numpy(stack, *taps)
    stream = _stream(xp)
    step = "gather"  # the step in progress, named when it fails
    try:
        out = xp.empty(want.shape, dtype=xp.float32)
        sti.gather_cuda(xp.asarray(stack), *(xp.asarray(a) for a in taps), out, stream)
        _same("gather kernel", out, want)
        step = "z-score"
        z_want, v_want = sti.standardize_numpy(want)
        valid = xp.ones(want.shape[0], dtype=xp.uint8)
        sti.standardize_cuda(out, valid, stream)
        _same("z-score kernel", out, np.nan_to_num(z_want))
        if not np.array_equal(host_array(valid).astype(bool), v_want):
            raise RuntimeError("z-score kernel flagged the wrong STIs")
        step = "cross-spectra"
        zf = np.fft.rfft(np.nan_to_num(z_want), axis=-1).astype(np.complex64)
        cs = xp.empty((zf.shape[0], 3, zf.shape[2]), dtype=xp.complex64)
        acf.cross_spectra_cuda(xp.asarray(zf), 2, cs, stream)
        _same("cross-spectra kernel", cs, acf.cross_spectra_xp(zf.astype(np.complex128), 2, np))
    except Exception as exc:
        raise RuntimeError(f"Numba-CUDA {step} kernel failed ({_why(exc)})") from exc


@functools.lru_cache(maxsize=4)
def probe(xp: ModuleType) -> GpuProbe:
    """Run every GPU step once on a tiny input: FFT, matrix product, each kernel (cached).

    A missing library (CuPy without cuFFT or cuBLAS), a toolchain that cannot compile the
    kernels (no NVVM, a Numba-CUDA release that does not work with the installed NumPy) or
    a kernel that gives wrong values is found here, at engine creation, and named; never at
    the first STIV call. With ``IVY_GPU_CUDA_KERNELS=off`` the kernels are not tried and the
    engine runs its array code.
    """
    gpu = xp is not np
    fft_lib, blas_lib = ("cuFFT", "cuBLAS") if gpu else ("scipy.fft", "BLAS")
    fft = xp.fft if gpu else scipy.fft
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    try:
        f = fft.rfft(xp.asarray(x), axis=-1)
        _same("rfft", f, np.fft.rfft(x, axis=-1))
        _same("irfft", fft.irfft(f, n=16, axis=-1), x)
    except Exception as exc:
        return GpuProbe(False, "unusable", f"{fft_lib} failed ({_why(exc)})")
    a = rng.standard_normal((8, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    try:
        _same("matmul", xp.asarray(a) @ xp.asarray(b), a @ b)
    except Exception as exc:
        return GpuProbe(False, "unusable", f"{blas_lib} failed ({_why(exc)})")
    libs = f"{fft_lib} and {blas_lib} ran"
    if config.CUDA_KERNELS == "off":
        return GpuProbe(True, "array code", f"{libs}; kernels off (IVY_GPU_CUDA_KERNELS=off)")
    try:
        from numba import cuda

        if not gpu and not cuda.is_available():
            raise RuntimeError("no CUDA device or simulator")
        _probe_kernels(xp)
    except Exception as exc:
        detail = str(exc) if str(exc).startswith("Numba-CUDA") else f"Numba-CUDA: {_why(exc)}"
        return GpuProbe(False, "unusable", detail)
    return GpuProbe(True, "kernels", f"gather, z-score and cross-spectra kernels, {libs}")


def gpu_budget(xp: ModuleType) -> int:
    """Bytes one STIV chunk may use on the device.

    This worker's share of the chunk budget, and at most
    :data:`~ivy_gpu.config.GPU_FREE_FRACTION` of the memory free now: the device's
    (``memGetInfo``) plus what CuPy's pool holds unused, split between the workers sharing
    the device like the budget. Without a way to ask (an older CuPy), the budget alone.
    """
    budget = config.gpu_chunk_bytes()
    try:
        free, _ = xp.cuda.runtime.memGetInfo()
        free += xp.get_default_memory_pool().free_bytes()
    except Exception:  # noqa: BLE001 - no memory query here: the configured budget
        return budget
    return max(1, min(budget, int(config.GPU_FREE_FRACTION * free) // config.gpu_share()))


def _stream(xp: ModuleType) -> Any:
    """A Numba stream wrapping CuPy's current stream (0 for NumPy / the simulator)."""
    if xp is np:
        return 0
    from numba import cuda

    return cuda.external_stream(xp.cuda.get_current_stream().ptr)


class XpEngine:
    """GPU engine on CuPy (or any NumPy-compatible namespace for testing).

    Parameters
    ----------
    xp : module
        ``cupy`` on a GPU, ``numpy`` for CPU tests.
    use_cuda_kernels : bool, optional
        Use the Numba-CUDA kernels. Default: on a GPU, what :func:`probe` found (the kernels
        unless ``IVY_GPU_CUDA_KERNELS=off``; ``RuntimeError`` naming the failure when the
        probe fails); with NumPy, the array code.
    """

    name = "cupy"

    def __init__(self, xp: ModuleType, use_cuda_kernels: bool | None = None) -> None:
        self.xp = xp
        self.fft = scipy.fft if xp is np else xp.fft
        if xp is np:
            import scipy.ndimage as ndimage
        else:
            import cupyx.scipy.ndimage as ndimage
        self.ndimage = ndimage
        if use_cuda_kernels is None:
            use_cuda_kernels = False
            if xp is not np:
                found = probe(xp)
                if not found.usable:
                    raise RuntimeError(f"the GPU backend is unusable: {found.detail}")
                use_cuda_kernels = found.path == "kernels"
        self.use_cuda_kernels = bool(use_cuda_kernels)
        #: The path this engine runs: ``"kernels"`` or ``"array code"`` (recorded in results).
        self.path = "kernels" if self.use_cuda_kernels else "array code"
        #: Blocking host synchronizations so far (downloads and ``synchronize``), so a benchmark
        #: can count them per STIV call.
        self.syncs = 0
        self._weights: tuple[Any, Any] = (None, None)  # (plan, its ray matrix on the device)
        self._coords: tuple[Any, Any] = (None, None)  # (rectifier, its coordinates on device)

    # ------------------------------------------------------------------ memory
    def to_device(self, a: Any) -> Any:
        """Copy (or view) ``a`` in device memory."""
        return self.xp.asarray(a)

    def to_host(self, a: Any) -> np.ndarray:
        """Copy a device array to a NumPy array (a blocking download: counted in ``syncs``)."""
        self.syncs += 1
        return host_array(a)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Device allocation (CuPy's memory pool)."""
        return self.xp.empty(shape, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for the current device's queued work."""
        self.syncs += 1
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()

    def remap(self, frame: np.ndarray, tables: Rectifier, out: Any) -> None:
        """Upload one uint8 frame and rectify it straight into ``out`` (rounded uint8)."""
        if self._coords[0] is not tables:  # holding the rectifier: no stale tables
            coords = self.xp.stack([self.xp.asarray(tables.map_y), self.xp.asarray(tables.map_x)])
            self._coords = (tables, coords)
        order = 0 if tables.interpolation == "nearest" else 1
        self.ndimage.map_coordinates(
            self.xp.asarray(frame),
            self._coords[1],
            output=out,
            order=order,
            mode="constant",
            cval=0.0,
        )

    # ------------------------------------------------------------------ STIV
    def chunk_pairs(self, p: int, t: int) -> int:
        """(node, angle) pairs per chunk within the GPU budget."""
        n_fft = t + p
        nf = n_fft // 2 + 1
        per_pair = (
            4 * p * n_fft * 2 + 8 * p * nf * 2 + 8 * 2 * p * nf * 2 + 4 * (p // 2 + 3) * n_fft * 4
        )
        budget = gpu_budget(self.xp) if self.xp is not np else config.CPU_CHUNK_BYTES
        return max(1, min(config.MAX_CHUNK_PAIRS, budget // per_pair))

    def prepare(self, stack: Any, window: Window, sigma: float, taps: Taps | None = None) -> Any:
        """Crop on the device (a host stack is cropped first, then uploaded) and blur there."""
        y_lo, y_hi, x_lo, x_hi = window
        region = self.to_device(stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1])
        return crop_blur(region, (0, y_hi - y_lo, 0, x_hi - x_lo), sigma, self.xp, self.ndimage)

    def time_slice(self, handle: Any, start: int, stop: int) -> Any:
        """Frames ``start:stop`` of the device handle (a view)."""
        return handle[start:stop]

    def _taps(self, taps: Taps) -> tuple[Any, ...]:
        return tuple(self.xp.asarray(a) for a in taps)

    def _gather_device(self, stack: Any, taps: Taps) -> Any:
        x0, y0, fx, fy = self._taps(taps)
        if not self.use_cuda_kernels:
            return sti.gather_numpy(stack, x0, y0, fx, fy, xp=self.xp)
        out = self.xp.empty((x0.shape[0], x0.shape[1], stack.shape[0]), dtype=self.xp.float32)
        sti.gather_cuda(stack, x0, y0, fx, fy, out, _stream(self.xp))
        return out

    def _standardize(self, raw: Any) -> tuple[Any, Any]:
        """Z-scored rows (constant rows 0) and the valid flag per STI."""
        xp = self.xp
        if not self.use_cuda_kernels:
            z, valid = sti.standardize_numpy(raw, xp=xp)
            return xp.where(xp.isnan(z), xp.float32(0.0), z), valid
        valid = xp.ones(raw.shape[0], dtype=xp.uint8)
        sti.standardize_cuda(raw, valid, _stream(xp))
        return raw, valid.astype(bool)

    def _cross_spectra(self, zf: Any, lx_max: int) -> Any:
        if not self.use_cuda_kernels:
            return acf.cross_spectra_fft_xp(zf, lx_max, self.xp)
        zf = self.xp.ascontiguousarray(zf)
        out = self.xp.empty((zf.shape[0], lx_max + 1, zf.shape[2]), dtype=self.xp.complex64)
        acf.cross_spectra_cuda(zf, lx_max, out, _stream(self.xp))
        return out

    def gather(self, stack: Any, taps: Taps) -> np.ndarray:
        """Raw STIs on the host, shape (n, P, T) float32."""
        return self.to_host(self._gather_device(stack, taps))

    def acf_scores(self, stack: Any, taps: Taps, plan: rays.AcfPlan):
        """Peak ray integral per STI: ``(idx, peak, before, after)`` on the host."""
        xp = self.xp
        z, valid = self._standardize(self._gather_device(stack, taps))
        op = plan.operator
        if self._weights[0] is not plan:  # holding the plan: no stale weights on id reuse
            self._weights = (plan, xp.asarray(op.weights))
        win = acf.acf_window_xp(
            z,
            op.lx_max,
            op.lt_lo,
            op.lt_hi,
            xp,
            self.fft,
            self._cross_spectra,
            lag_step=op.lag_step,
        )
        f = win.reshape(win.shape[0], -1) @ self._weights[1]
        f = xp.where(valid[:, None], f, xp.float32(np.nan))
        peaks = rays.peaks_xp(f, xp)
        return tuple(self.to_host(a) for a in peaks)

    def gradient_scores(self, stack: Any, taps: Taps):
        """Structure-tensor ``(slope px/frame, coherence)`` per STI on the host."""
        raw = self._gather_device(stack, taps)
        slope, coherence = structure_tensor.orientation_xp(raw, self.xp)
        _, valid = self._standardize(raw.copy())
        return self.to_host(slope), self.to_host(self.xp.where(valid, coherence, self.xp.nan))
