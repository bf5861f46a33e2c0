"""The GPU engine's probe, and the kernel launches it shares with the engine.

:func:`probe` runs every step the GPU engine will call once on a tiny input (the FFT
library, the BLAS, each Numba-CUDA kernel against its NumPy or numba twin) and says which
path the engine can run, naming what failed. The launch helpers (:class:`TimeLastCrop`, the
fused gather's arguments, CuPy's current stream for Numba) are the engine's own, used here
so the probe launches exactly what the engine launches.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft

from ivy_gpu import config
from ivy_gpu.engines.base import PairLines, host_array
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


def _same_peaks(name: str, got: Any, want: np.ndarray) -> None:
    """Peak rows ``(idx, peak, before, after)``: the same rays, values to float32 rounding."""
    got = host_array(got)
    if not np.array_equal(got[:, 0], want[:, 0]):
        raise RuntimeError(f"{name} gave wrong values (the rays chosen)")
    if not np.allclose(got[:, 1:], want[:, 1:], rtol=1e-4, atol=1e-5, equal_nan=True):
        raise RuntimeError(f"{name} gave wrong values")


def _probe_kernels(xp: ModuleType) -> None:
    """Compile and launch every Numba-CUDA kernel on a tiny input against its NumPy twin."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (6, 5, 7), dtype=np.uint8)
    taps = sti.bilinear_taps(rng.uniform(0, 5, (3, 4)), rng.uniform(0, 3, (3, 4)), 7, 5, "bilinear")
    want = sti.gather_numpy(stack, *taps)
    stream = current_stream(xp)
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
        f_want, fv_want = fused_twin(tl, lines, 8, True, np)
        # uint8 (the crop as rectified) and float32 (blurred): both compiled here, at
        # engine creation, so no video pays a first-call compilation
        for frames in (tl, tl.astype(np.float32)):
            crop = TimeLastCrop(xp.asarray(frames), 0, tl.shape[2])
            f_got, fv_got = fused_kernel(xp, crop, lines, 8, True, stream)
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
            _same_peaks("ray sums + peaks kernel", got, want_peaks)
        step = "direct ACF window"
        v = np.array([0.5, 1.0, 1.5])[:, None, None]  # streaks: one clear ray each
        z = np.sin(0.7 * (np.arange(6)[None, :, None] - v * np.arange(8))).astype(np.float32)
        z -= z.mean(axis=-1, keepdims=True)
        want_direct = acf_direct_device.ray_peaks_direct_xp(z, 8, op, ok, op.weights, np)
        got = xp.empty((3, 4), dtype=xp.float64)
        acf_direct_device.acf_direct_cuda(
            xp.asarray(z), 8, op, *(xp.asarray(a) for a in op.sparse),
            xp.asarray(ok.astype(np.uint8)), got, stream,
            sti_device.launch_block(acf_direct_device.DIRECT_BLOCK),
        )  # fmt: skip
        _same_peaks("direct ACF window kernel", got, want_direct)
        step = "shared-memory FFT ACF"
        got = xp.empty((3, 4), dtype=xp.float64)
        tw = acf_shared_device.twiddles(acf_shared_device.fft_size(op, 8))
        acf_shared_device.acf_shared_cuda(
            xp.asarray(z), 8, op, *(xp.asarray(a) for a in (*tw, *op.sparse)),
            xp.asarray(ok.astype(np.uint8)), got, stream,
        )  # fmt: skip
        _same_peaks("shared-memory FFT ACF kernel", got, want_direct)
        step = "Lucas-Kanade tracking"
        _probe_tracking(xp, stream)
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


def _probe_tracking(xp: ModuleType, stream: Any) -> None:
    """One pyramid level of corner tracking: the kernel against its array twin."""
    from ivy_gpu.kernels import track_device

    rng = np.random.default_rng(2)
    img = (rng.random((12, 14)) * 255).astype(np.float32)
    pos = np.array([[5.0, 5.0], [7.5, 6.0], [8.0, 4.5]])
    win = rng.random((3, 5, 5)) * 255  # the reference windows, gradients and matrices
    ix, iy = rng.standard_normal((2, 3, 5, 5))
    inv = np.array([[1e-3, 0.0, 1e-3], [2e-3, 1e-4, 1e-3], [1e-3, 0.0, 1e-3]])
    good = np.array([1, 1, 0], np.uint8)
    want = track_device.track_level_xp(img, win, ix, iy, inv, good, pos, np.zeros((3, 2)), 2)
    d = xp.zeros((3, 2), dtype=xp.float64)
    track_device.track_level_cuda(
        xp.asarray(img), *(xp.asarray(a) for a in (win, ix, iy, inv, good, pos)), d, 2, stream,
        sti_device.launch_block(track_device.TRACK_BLOCK),
    )  # fmt: skip
    _same("Lucas-Kanade tracking kernel", d, want, atol=1e-6)


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
    kernels = (
        "fused gather + z-score, z-score, cross-spectra, ray peaks, direct ACF window, "
        "shared-memory FFT ACF, structure tensor, Lucas-Kanade tracking kernels"
    )
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


def fused_args(xp: ModuleType, lines: PairLines) -> tuple[Any, ...]:
    """The fused kernel's line arguments: a few bytes per line (and the offsets) uploaded."""
    y_lo, _, x_lo, _ = lines.window
    d = (xp.asarray(a) for a in (lines.node_x, lines.node_y, lines.angle, lines.offsets))
    return (*d, x_lo, y_lo, lines.interpolation == "nearest")


def fused_twin(tl: Any, lines: PairLines, n_out: int, standardize: bool, xp: ModuleType):
    """:func:`~ivy_gpu.kernels.sti_device.gather_zscore_numpy` of ``lines`` (window-relative)."""
    return sti_device.gather_zscore_numpy(
        tl, *fused_args(xp, lines), n_out, xp=xp, standardize=standardize, starts=lines.start
    )


def fused_kernel(
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
        crop.tl, *fused_args(xp, lines), out, valid, stream, sti_device.launch_block(),
        standardize, (crop.start, crop.stop), starts,
    )  # fmt: skip
    return out, valid


def current_stream(xp: ModuleType) -> Any:
    """A Numba stream wrapping CuPy's current stream (0 for NumPy / the simulator)."""
    if xp is np:
        return 0
    from numba import cuda

    return cuda.external_stream(xp.cuda.get_current_stream().ptr)
