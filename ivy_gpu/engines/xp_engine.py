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
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.engines import base
from ivy_gpu.engines.base import Lines, PairLines, Taps, Window, as_taps, crop_blur, host_array
from ivy_gpu.engines.upload import FrameUploader
from ivy_gpu.engines.xp_probe import (  # noqa: F401 - GpuProbe: the engine's API
    GpuProbe,
    TimeLastCrop,
    current_stream,
    fused_kernel,
    gpu_budget,
    probe,
)
from ivy_gpu.kernels import (
    acf,
    acf_direct_device,
    acf_shared_device,
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


#: How the kernels may autocorrelate: cuFFT, the direct window sums, the shared-memory FFT.
ACF_PATHS = ("fft", "direct", "shared")


def acf_path(kernels: bool) -> str:
    """``config.GPU_ACF`` checked: the per-STI ACF kernels only run with the kernels."""
    if config.GPU_ACF not in ACF_PATHS:
        raise ValueError(f"IVY_GPU_ACF: one of {', '.join(ACF_PATHS)}, not {config.GPU_ACF!r}")
    return config.GPU_ACF if kernels else "fft"


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
        #: How the kernels autocorrelate (``config.GPU_ACF``): one of :data:`ACF_PATHS`.
        self.acf_kernel = acf_path(self.use_cuda_kernels)
        #: Blocking host synchronizations so far (downloads and ``synchronize``), so a benchmark
        #: can count them per STIV call.
        self.syncs = 0
        # (id(plan), n_fft, 0 or None) -> (plan, its rays on the device); holding the plan, no
        # stale entry on id reuse. The full clip, the windows and the stride's steps.
        self._ray_arrays: dict[tuple[int, int], tuple[Any, Any]] = {}
        #: The shared-memory FFT kernel's twiddle tables on the device, per FFT length.
        self._twiddles: dict[int, tuple[Any, Any]] = {}
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

    def remap(self, frame: Any, tables: Rectifier, out: Any, on_device: bool = False) -> None:
        """Upload one uint8 frame and rectify it straight into ``out`` (rounded uint8).

        The upload (pinned staging, its own stream) overlaps the previous frame's
        rectification; the rectification waits for it on the device, not on the host. A
        frame already on the device (``on_device``: decoded there) is read where it is.
        """
        coords = self._tables(tables)
        order = 0 if tables.interpolation == "nearest" else 1
        uploader = None if on_device else self.uploader
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
        sti.standardize_cuda(raw, valid, current_stream(xp))
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
            out, valid = fused_kernel(xp, handle, lines, n_out, standardize, current_stream(xp))
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
        acf.cross_spectra_cuda(zf, lx_max, out, current_stream(self.xp))
        return out

    def _download(self, *arrays: Any) -> tuple[np.ndarray, ...]:
        """Per-STI results in one download (one synchronization), float64 (exact)."""
        xp = self.xp
        host = self.to_host(xp.stack([a.astype(xp.float64) for a in arrays]))
        return tuple(host)

    def gather(self, stack: Any, taps: Taps) -> np.ndarray:
        """Raw STIs on the host, shape (n, P, T) float32."""
        return self.to_host(self._gather_device(stack, as_taps(taps)))

    def _plan_arrays(self, plan: rays.AcfPlan, n_fft: int | None) -> Any:
        """The plan's rays in device memory, kept per plan.

        The window's lags and the sparse rays for the ray kernel (``n_fft`` > 0), the sparse
        rays alone for the direct kernel (``n_fft`` None), the dense ray matrix for the array
        code (``n_fft`` = 0).
        """
        key = (id(plan), n_fft)
        if key not in self._ray_arrays:
            op = plan.operator
            if n_fft is None:
                value = tuple(self.xp.asarray(a) for a in op.sparse)
            elif n_fft:
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
        With ``acf = "direct"`` or ``"shared"`` (``config.GPU_ACF``) and lines that fit, one
        kernel per span autocorrelates each STI (window sums,
        :mod:`ivy_gpu.kernels.acf_direct_device`; an FFT in shared memory,
        :mod:`ivy_gpu.kernels.acf_shared_device`) and takes its rays and peak instead.
        """
        xp = self.xp
        groups = isinstance(plan, rays.PlanGroups)
        spans = plan.spans() if groups else [(0, base.len_of(taps), plan)]
        t = self._n_frames(stack)
        if self._per_sti_fits(spans, t):
            z, valid = self._stis(stack, taps, t, standardize=True)  # no padding
            valid = valid.astype(xp.uint8)
            out = xp.empty((z.shape[0], 4), dtype=xp.float64)
            for lo, hi, p in spans:
                self._per_sti_launch(z[lo:hi], t, p, valid[lo:hi], out[lo:hi])
            return tuple(self.to_host(out).T)
        n_fft = max(p.operator.fft_length(t) for _, _, p in spans)
        lx_max = max(p.operator.lx_max for _, _, p in spans)
        z, valid = self._stis(stack, taps, n_fft, standardize=True)
        r = acf.acf_rows_xp(z, lx_max, n_fft, xp, self.fft, self._cross_spectra)
        out = xp.empty((r.shape[0], 4), dtype=xp.float64)
        for lo, hi, p in spans:
            op = p.operator
            rows = r[lo:hi, : op.lx_max + 1]
            if op.lx_max + 1 < r.shape[1]:  # a step with fewer pixel lags: the kernel's layout
                rows = xp.ascontiguousarray(rows)  # (C), never a new compilation for a view
            if self.use_cuda_kernels and rays_device.fits(op):
                rays_device.ray_peaks_cuda(
                    rows, *self._plan_arrays(p, n_fft), valid[lo:hi].astype(xp.uint8),
                    out[lo:hi], current_stream(xp), sti_device.launch_block(rays_device.RAY_BLOCK),
                )  # fmt: skip
            else:
                out[lo:hi] = rays_device.ray_peaks_xp(
                    rows, op, valid[lo:hi], self._plan_arrays(p, 0), xp
                )
        return tuple(self.to_host(out).T)

    def _per_sti_fits(self, spans: list, t: int) -> bool:
        """Whether a per-STI ACF kernel is on and every span's lines fit it."""
        if self.acf_kernel == "direct":
            return all(acf_direct_device.fits(p.operator) for *_, p in spans)
        if self.acf_kernel == "shared":
            return all(acf_shared_device.fits(p.operator, t) for *_, p in spans)
        return False

    def _per_sti_launch(self, z: Any, t: int, plan: rays.AcfPlan, valid: Any, out: Any) -> None:
        """One span's STIs through the direct or the shared-memory FFT kernel into ``out``."""
        stream = current_stream(self.xp)
        arrays = self._plan_arrays(plan, None)
        if self.acf_kernel == "direct":
            acf_direct_device.acf_direct_cuda(
                z, t, plan.operator, *arrays, valid, out, stream,
                sti_device.launch_block(acf_direct_device.DIRECT_BLOCK),
            )  # fmt: skip
            return
        n = acf_shared_device.fft_size(plan.operator, t)
        if n not in self._twiddles:
            self._twiddles[n] = tuple(self.xp.asarray(a) for a in acf_shared_device.twiddles(n))
        acf_shared_device.acf_shared_cuda(
            z, t, plan.operator, *self._twiddles[n], *arrays, valid, out, stream
        )

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
                current_stream(xp), sti_device.launch_block(structure_tensor_device.TENSOR_BLOCK),
            )  # fmt: skip
            return tuple(self.to_host(out).T)
        slope, coherence = structure_tensor.orientation_xp(raw, xp)
        return self._download(slope, xp.where(valid, coherence, xp.nan))
