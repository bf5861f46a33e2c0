"""The ``cupy`` engine, written against an array namespace ``xp``.

On a GPU ``xp`` is CuPy: the stack lives in device memory, frames go up through pinned,
double-buffered staging (:mod:`ivy_gpu.engines.upload`) and are rectified there
(``map_coordinates`` straight into the uint8 stack; a moved frame's tables composed on the
device). STIV reads the crop time-last and runs as Numba-CUDA kernels on CuPy's current
stream: search lines come as geometry and one fused kernel computes their taps, gathers,
z-scores and pads the rows (:mod:`ivy_gpu.kernels.sti_device`); batched cuFFT and the
cross-spectra kernel give the autocorrelation rows; one kernel takes the lag window, the ray
sums and the peak (:mod:`ivy_gpu.kernels.rays_device`); the gradient method is one kernel per
STI (:mod:`ivy_gpu.kernels.structure_tensor_device`). Each scoring call downloads once.

Before the engine is used, :func:`probe` runs every step once on a tiny input (cuFFT,
cuBLAS, each kernel against its NumPy or numba twin): a missing library, a toolchain that
cannot compile (no NVVM, a Numba-CUDA release broken by the installed NumPy) or a wrong
kernel makes the backend unusable with the failure named, and ``auto`` then runs ``numba``.
``IVY_GPU_CUDA_KERNELS=off`` runs the same steps as array-namespace code instead (fancy-index
gather, reductions, cross-spectra by FFT along the pixel axis, the dense ray matrix by cuBLAS,
the structure tensor as array code). With ``xp = numpy`` (CI, no GPU) that code runs on the
CPU; under ``NUMBA_ENABLE_CUDASIM=1`` the kernels run in numba-cuda's CUDA simulator.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.engines import base
from ivy_gpu.engines.base import Lines, PairLines, Taps, Window, as_taps, crop_blur, host_array
from ivy_gpu.engines.upload import FrameUploader
from ivy_gpu.kernels import (
    acf,
    rays,
    rays_device,
    sti,
    sti_device,
    structure_tensor,
    structure_tensor_device,
)
from ivy_gpu.scaffold.rectify import Rectifier, moved_maps

#: Rectifiers whose device coordinates the engine keeps.
COORDS_KEPT = 4


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
    step = "z-score"  # the step in progress, named when it fails
    try:
        out = xp.asarray(want.copy())
        z_want, v_want = sti.standardize_numpy(want)
        valid = xp.ones(want.shape[0], dtype=xp.uint8)
        sti.standardize_cuda(out, valid, stream)
        _same("z-score kernel", out, np.nan_to_num(z_want))
        if not np.array_equal(host_array(valid).astype(bool), v_want):
            raise RuntimeError("z-score kernel flagged the wrong STIs")
        step = "fused gather + z-score"
        lines = PairLines(
            rng.uniform(1, 3, 3), rng.uniform(1, 2, 3), np.array([0, 1, 0], np.int32),
            rng.uniform(-1, 1, (2, 4, 2)), (0, 4, 0, 6), "bilinear",
        )  # fmt: skip
        tl = np.ascontiguousarray(np.moveaxis(stack, 0, -1))
        f_want, fv_want = _fused_twin(tl, lines, 8, True, np)
        # uint8 (the crop as rectified) and float32 (blurred): both compiled here, at
        # engine creation, so no video pays a first-call compilation
        for frames in (tl, tl.astype(np.float32)):
            crop = TimeLastCrop(xp.asarray(frames), 0, tl.shape[2])
            f_got, fv_got = _fused_kernel(xp, crop, lines, 8, True, stream)
            _same("fused gather + z-score kernel", f_got, f_want)
            if not np.array_equal(host_array(fv_got).astype(bool), fv_want):
                raise RuntimeError("fused gather + z-score kernel flagged the wrong STIs")
        step = "cross-spectra"
        zf = np.fft.rfft(np.nan_to_num(z_want), axis=-1).astype(np.complex64)
        cs = xp.empty((zf.shape[0], 3, zf.shape[2]), dtype=xp.complex64)
        acf.cross_spectra_cuda(xp.asarray(zf), 2, cs, stream)
        _same("cross-spectra kernel", cs, acf.cross_spectra_xp(zf.astype(np.complex128), 2, np))
        step = "ray sums + peaks"
        plan = rays.AcfPlan.build(6, 8, 0.5, 2.0)
        op = plan.operator
        n_fft = op.fft_length(8)
        r = rng.standard_normal((3, op.lx_max + 1, n_fft)).astype(np.float32)
        ok = np.array([True, False, True])
        want_peaks = rays_device.ray_peaks_xp(r, op, ok, op.weights, np)
        arrays = (rays_device.window_lags(op, n_fft), *op.sparse)
        for window in rays_device.WIN_SIZES:  # both variants: long lines compile nothing later
            got = xp.empty((3, 4), dtype=xp.float64)
            rays_device.ray_peaks_cuda(
                xp.asarray(r), *(xp.asarray(a) for a in arrays), xp.asarray(ok.astype(np.uint8)),
                got, stream, sti_device.launch_block(rays_device.RAY_BLOCK), window,
            )  # fmt: skip
            got = host_array(got)
            if not np.array_equal(got[:, 0], want_peaks[:, 0]):
                raise RuntimeError("ray sums + peaks kernel gave wrong values (the rays chosen)")
            if not np.allclose(got[:, 1:], want_peaks[:, 1:], rtol=1e-4, atol=1e-5,
                               equal_nan=True):  # fmt: skip
                raise RuntimeError("ray sums + peaks kernel gave wrong values")
        step = "structure tensor"
        raw = np.cumsum(rng.standard_normal((2, 18, 12)), axis=1).astype(np.float32)
        slope, coherence = structure_tensor.orientation_numba(raw)
        sizes, offsets = structure_tensor_device.pyramid_layout(18)
        got = xp.empty((2, 2), dtype=xp.float64)
        structure_tensor_device.orientation_cuda(
            xp.asarray(raw), xp.asarray(sizes), xp.asarray(offsets),
            xp.empty((2, structure_tensor_device.scratch_rows(18), 12), dtype=xp.float32),
            xp.ones(2, dtype=xp.uint8), got, stream,
            sti_device.launch_block(structure_tensor_device.TENSOR_BLOCK),
        )  # fmt: skip
        _same("structure tensor kernel", got, np.stack([slope, coherence], axis=1), atol=1e-5)
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
    kernels = "fused gather + z-score, z-score, cross-spectra, ray peaks, structure tensor kernels"
    return GpuProbe(True, "kernels", f"{kernels}, {libs}")


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


@dataclass(frozen=True)
class TimeLastCrop:
    """The kernels' STIV handle: the crop time-last, ``(h, w, T)``, and the frames read.

    A time window of the clip (quality windows) is the same array with other
    ``start``/``stop``: the fused kernel reads frames from an offset, so no strided view
    and no copy is ever made.
    """

    tl: Any
    start: int
    stop: int

    @property
    def frames(self) -> int:
        """Frames read."""
        return self.stop - self.start

    def view(self) -> Any:
        """The frames read, ``(h, w, frames)`` (a view)."""
        return self.tl[..., self.start : self.stop]


def _fused_args(xp: ModuleType, lines: PairLines) -> tuple[Any, ...]:
    """The fused kernel's line arguments: a few bytes per line (and the offsets) uploaded."""
    y_lo, _, x_lo, _ = lines.window
    d = (xp.asarray(a) for a in (lines.node_x, lines.node_y, lines.angle, lines.offsets))
    return (*d, x_lo, y_lo, lines.interpolation == "nearest")


def _fused_twin(tl: Any, lines: PairLines, n_out: int, standardize: bool, xp: ModuleType):
    """:func:`~ivy_gpu.kernels.sti_device.gather_zscore_numpy` of ``lines`` (window-relative)."""
    return sti_device.gather_zscore_numpy(
        tl, *_fused_args(xp, lines), n_out, xp=xp, standardize=standardize, starts=lines.start
    )


def _fused_kernel(
    xp: ModuleType, crop: TimeLastCrop, lines: PairLines, n_out: int, standardize: bool,
    stream: Any,
) -> tuple[Any, Any]:  # fmt: skip
    """The fused CUDA kernel on ``lines``: ``(out (n, P, n_out) float32, valid uint8)``."""
    n = len(lines)
    out = xp.empty((n, lines.num_pixels, n_out), dtype=xp.float32)
    valid = xp.ones(n, dtype=xp.uint8)
    if lines.start is None:
        starts = xp.zeros(n, dtype=xp.int32)
    else:  # time windows in one batch: checked on the host, where the offsets are
        sti_device.check_starts(lines.start, crop.stop, crop.tl.shape[2])
        starts = xp.asarray(lines.start, dtype=xp.int32)
    sti_device.gather_zscore_cuda(
        crop.tl, *_fused_args(xp, lines), out, valid, stream, sti_device.launch_block(),
        standardize, (crop.start, crop.stop), starts,
    )  # fmt: skip
    return out, valid


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
    uploaders : callable, optional
        Makes a thread's frame uploader (default on a GPU:
        :class:`~ivy_gpu.engines.upload.FrameUploader`; with NumPy, none).
    """

    name = "cupy"

    def __init__(
        self,
        xp: ModuleType,
        use_cuda_kernels: bool | None = None,
        uploaders: Callable[[], Any] | None = None,
    ) -> None:
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
        #: With the kernels, ``unit`` lines come as geometry and the fused kernel computes
        #: their taps on the device (:class:`~ivy_gpu.engines.base.PairLines`).
        self.device_lines = self.use_cuda_kernels
        #: Blocking host synchronizations so far (downloads and ``synchronize``), so a benchmark
        #: can count them per STIV call.
        self.syncs = 0
        # (id(plan), n_fft or 0) -> (plan, its rays in device memory); holding the plan, no
        # stale entry on id reuse. The full clip, the windows and the stride's steps.
        self._ray_arrays: dict[tuple[int, int], tuple[Any, Any]] = {}
        #: Device coordinates of the last few rectifiers: id -> (rectifier, coordinates). A
        #: batch loads the next video on another thread, maybe at another WSE, while this one
        #: is rectified: two sets of tables alternate without being uploaded again.
        self._coords: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        # Frames go up through pinned, double-buffered staging on a non-blocking stream
        # (FrameUploader) on a GPU, with NumPy as they are; ``uploaders`` makes one ring per
        # thread that rectifies (a batch loads the next video on a second thread while this
        # one is rectified: one shared ring would mix their frames).
        if uploaders is None and xp is not np:
            uploaders = functools.partial(FrameUploader, xp)
        self._uploaders = uploaders
        self._local = threading.local()

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

    @property
    def uploader(self) -> Any:
        """The calling thread's frame uploader (None with NumPy and no ``uploaders``)."""
        if self._uploaders is None:
            return None
        mine = getattr(self._local, "uploader", None)
        if mine is None:
            mine = self._local.uploader = self._uploaders()
        return mine

    def _tables(self, tables: Rectifier) -> Any:
        """The remap coordinates ``(rows, cols)`` on the device.

        A still frame's tables are uploaded once per rectifier (kept while it is in use); a
        moved frame's (:class:`~ivy_gpu.frames.stabilize.MovedTables`) are its base tables'
        composed with its motion here, two element-wise passes, with the same float64
        operations as on the host.
        """
        xp = self.xp
        base = getattr(tables, "base", None)
        held = base if base is not None else tables
        with self._lock:
            kept = self._coords.pop(id(held), None)
            if kept is None or kept[0] is not held:  # holding the rectifier: no stale tables
                kept = (held, xp.stack([xp.asarray(held.map_y), xp.asarray(held.map_x)]))
            self._coords[id(held)] = kept  # the most recent last
            while len(self._coords) > COORDS_KEPT:
                del self._coords[next(iter(self._coords))]
        coords = kept[1]
        if base is None:
            return coords
        new_x, new_y = moved_maps(coords[1], coords[0], tables.motion, xp)
        return xp.stack([new_y, new_x])

    def remap(self, frame: np.ndarray, tables: Rectifier, out: Any) -> None:
        """Upload one uint8 frame and rectify it straight into ``out`` (rounded uint8).

        The upload (pinned staging, its own stream) overlaps the previous frame's
        rectification; the rectification waits for it on the device, not on the host.
        """
        coords = self._tables(tables)
        order = 0 if tables.interpolation == "nearest" else 1
        uploader = self.uploader
        source = uploader.upload(frame) if uploader else self.xp.asarray(frame)
        self.ndimage.map_coordinates(
            source,
            coords,
            output=out,
            order=order,
            mode="constant",
            cval=0.0,
        )
        if uploader:
            uploader.release()

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

    def prepare(self, stack: Any, window: Window, sigma: float, taps: Lines | None = None) -> Any:
        """Crop on the device (a host stack is cropped first, then uploaded) and blur there.

        With the kernels the handle is the crop **time-last**, ``(h, w, T)``: the fused
        kernel's threads read consecutive frames of one pixel at consecutive addresses.
        """
        y_lo, y_hi, x_lo, x_hi = window
        region = self.to_device(stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1])
        crop = (0, y_hi - y_lo, 0, x_hi - x_lo)
        blurred = crop_blur(region, crop, sigma, self.xp, self.ndimage)
        if not self.use_cuda_kernels:
            return blurred
        del region
        tl = sti_device.time_last_crop(blurred, crop, self.xp)
        return TimeLastCrop(tl, 0, tl.shape[2])

    def time_slice(self, handle: Any, start: int, stop: int) -> Any:
        """Frames ``start:stop`` of the device handle (a view, or the same crop's offsets)."""
        if isinstance(handle, TimeLastCrop):
            return TimeLastCrop(handle.tl, handle.start + start, handle.start + min(
                stop, handle.frames))  # fmt: skip
        return handle[start:stop]

    @staticmethod
    def _n_frames(handle: Any) -> int:
        return handle.frames if isinstance(handle, TimeLastCrop) else handle.shape[0]

    def _taps(self, taps: Taps) -> tuple[Any, ...]:
        return tuple(self.xp.asarray(a) for a in taps)

    def _gather_device(self, handle: Any, taps: Taps) -> Any:
        """Raw STIs of host taps (IVyTools' lines, the best lines' STIs), on the device.

        From the time-last crop with the kernels (fancy indexing: each tap reads T
        consecutive values), else from the ``(T, h, w)`` crop.
        """
        x0, y0, fx, fy = self._taps(taps)
        if isinstance(handle, TimeLastCrop):
            return sti.gather_time_last_xp(handle.view(), x0, y0, fx, fy, xp=self.xp)
        return sti.gather_numpy(handle, x0, y0, fx, fy, xp=self.xp)

    def _standardize(self, raw: Any) -> tuple[Any, Any]:
        """Z-scored rows (constant rows 0) and the valid flag per STI."""
        xp = self.xp
        if not self.use_cuda_kernels:
            z, valid = sti.standardize_numpy(raw, xp=xp)
            return xp.where(xp.isnan(z), xp.float32(0.0), z), valid
        valid = xp.ones(raw.shape[0], dtype=xp.uint8)
        sti.standardize_cuda(raw, valid, _stream(xp))
        return raw, valid.astype(bool)

    def _stis(self, handle: Any, lines: Lines, n_out: int, standardize: bool) -> tuple[Any, Any]:
        """STIs (n, P, n_out) float32 (zero-padded past T) and their valid flags (bool).

        Geometry goes to the fused kernel (one launch: taps, gather, z-score, padding);
        host taps to the gather and z-score kernels, or to the array code.
        """
        xp = self.xp
        if isinstance(lines, PairLines):
            if not self.use_cuda_kernels:  # pragma: no cover - device_lines is off then
                raise RuntimeError("line geometry needs the CUDA kernels")
            out, valid = _fused_kernel(xp, handle, lines, n_out, standardize, _stream(xp))
            return out, valid.astype(bool)
        raw = self._gather_device(handle, lines)
        if not standardize:
            _, valid = self._standardize(raw.copy())
            return raw, valid
        return self._standardize(raw)

    def _cross_spectra(self, zf: Any, lx_max: int) -> Any:
        if not self.use_cuda_kernels:
            return acf.cross_spectra_fft_xp(zf, lx_max, self.xp)
        zf = self.xp.ascontiguousarray(zf)
        out = self.xp.empty((zf.shape[0], lx_max + 1, zf.shape[2]), dtype=self.xp.complex64)
        acf.cross_spectra_cuda(zf, lx_max, out, _stream(self.xp))
        return out

    def _download(self, *arrays: Any) -> tuple[np.ndarray, ...]:
        """Per-STI results in one download (one synchronization), float64 (exact)."""
        xp = self.xp
        host = self.to_host(xp.stack([a.astype(xp.float64) for a in arrays]))
        return tuple(host)

    def gather(self, stack: Any, taps: Taps) -> np.ndarray:
        """Raw STIs on the host, shape (n, P, T) float32."""
        return self.to_host(self._gather_device(stack, as_taps(taps)))

    def _plan_arrays(self, plan: rays.AcfPlan, n_fft: int) -> Any:
        """The plan's rays in device memory, kept per plan.

        The window's lags and the sparse rays for the kernel (``n_fft`` > 0), the dense ray
        matrix for the array code (``n_fft`` = 0).
        """
        key = (id(plan), n_fft)
        if key not in self._ray_arrays:
            op = plan.operator
            if n_fft:
                arrays = (rays_device.window_lags(op, n_fft), *op.sparse)
                value = tuple(self.xp.asarray(a) for a in arrays)
            else:
                value = self.xp.asarray(op.weights)
            while len(self._ray_arrays) >= rays.PLAN_CACHE_SIZE:
                self._ray_arrays.pop(next(iter(self._ray_arrays)))
            self._ray_arrays[key] = (plan, value)
        return self._ray_arrays[key][1]

    def acf_scores(self, stack: Any, taps: Lines, plan: rays.AcfPlan | rays.PlanGroups):
        """Peak ray integral per STI: ``(idx, peak, before, after)`` on the host (one download).

        STIs, row FFTs, cross-spectra, inverse FFTs; then, with the kernels, lag window,
        normalisation, ray sums and peak in one kernel
        (:mod:`ivy_gpu.kernels.rays_device`), else as array code with the dense ray matrix.
        With :class:`~ivy_gpu.kernels.rays.PlanGroups` every line is gathered and
        autocorrelated in the same launches (the longest FFT and the most pixel lags any
        plan needs: the lags read are the same) and each span gets its plan's rays.
        """
        xp = self.xp
        groups = isinstance(plan, rays.PlanGroups)
        spans = plan.spans() if groups else [(0, base.len_of(taps), plan)]
        t = self._n_frames(stack)
        n_fft = max(p.operator.fft_length(t) for _, _, p in spans)
        lx_max = max(p.operator.lx_max for _, _, p in spans)
        z, valid = self._stis(stack, taps, n_fft, standardize=True)
        r = acf.acf_rows_xp(z, lx_max, n_fft, xp, self.fft, self._cross_spectra)
        out = xp.empty((r.shape[0], 4), dtype=xp.float64)
        for lo, hi, p in spans:
            op = p.operator
            rows = r[lo:hi, : op.lx_max + 1]
            if self.use_cuda_kernels and rays_device.fits(op):
                rays_device.ray_peaks_cuda(
                    rows, *self._plan_arrays(p, n_fft), valid[lo:hi].astype(xp.uint8),
                    out[lo:hi], _stream(xp), sti_device.launch_block(rays_device.RAY_BLOCK),
                )  # fmt: skip
            else:
                out[lo:hi] = rays_device.ray_peaks_xp(
                    rows, op, valid[lo:hi], self._plan_arrays(p, 0), xp
                )
        return tuple(self.to_host(out).T)

    def gradient_scores(self, stack: Any, taps: Lines):
        """Structure-tensor ``(slope px/frame, coherence)`` per STI on the host (one download).

        With the kernels, one block per STI runs the pyramid, the warped tensor sums and the
        slope (:mod:`ivy_gpu.kernels.structure_tensor_device`); else the array code.
        """
        xp = self.xp
        t = self._n_frames(stack)
        raw, valid = self._stis(stack, taps, t, standardize=False)
        p = raw.shape[1]
        if self.use_cuda_kernels and structure_tensor_device.fits(p):
            sizes, offsets = structure_tensor_device.pyramid_layout(p)
            scratch = xp.empty(
                (raw.shape[0], structure_tensor_device.scratch_rows(p), t), dtype=xp.float32
            )
            out = xp.empty((raw.shape[0], 2), dtype=xp.float64)
            structure_tensor_device.orientation_cuda(
                raw, xp.asarray(sizes), xp.asarray(offsets), scratch, valid.astype(xp.uint8), out,
                _stream(xp), sti_device.launch_block(structure_tensor_device.TENSOR_BLOCK),
            )  # fmt: skip
            return tuple(self.to_host(out).T)
        slope, coherence = structure_tensor.orientation_xp(raw, xp)
        return self._download(slope, xp.where(valid, coherence, xp.nan))
