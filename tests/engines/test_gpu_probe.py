"""The GPU probe tells the truth.

Every step the GPU engine calls (the FFT library, the matrix product, each Numba-CUDA kernel)
runs once at engine creation; whatever fails is named, ``auto`` falls back to numba saying so
once, ``--backend cupy`` exits 2 naming it, and the result records the path. CI has no GPU:
the kernels run in numba-cuda's simulator, and a stand-in ``cupy`` module (NumPy underneath,
one device) plays a GPU machine whose CUDA libraries are missing.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from ivy_gpu import config
from ivy_gpu.cli.main import app
from ivy_gpu.engines import backends, xp_engine, xp_probe
from ivy_gpu.engines.xp_engine import GpuProbe, XpEngine
from ivy_gpu.kernels import (
    acf,
    acf_direct_device,
    acf_shared_device,
    rays_device,
    sti,
    sti_device,
    structure_tensor_device,
    track_device,
)
from ivy_gpu.log import IvyGpuWarning


def _clear() -> None:
    for cached in (
        backends.gpu_check,
        backends._warn_gpu_fallback,
        backends._engine,
        xp_engine.probe,
    ):
        cached.cache_clear()


@pytest.fixture
def fresh():
    _clear()
    yield
    _clear()


class _NoBlas(np.ndarray):
    """A device array whose matrix product fails as it does without cuBLAS."""

    def __matmul__(self, other):
        raise RuntimeError("CUBLAS_STATUS_NOT_INITIALIZED")


def _fake_cupy(fft_error: Exception | None = None, blas: bool = True) -> types.ModuleType:
    """A ``cupy`` stand-in: NumPy arrays, one CUDA device, optionally a missing library."""
    m = types.ModuleType("cupy")
    for name in ("empty", "ones", "float32", "complex64", "uint8", "ascontiguousarray"):
        setattr(m, name, getattr(np, name))
    m.asarray = (lambda a, **k: np.asarray(a, **k).view(_NoBlas)) if not blas else np.asarray

    def rfft(*a, **k):
        if fft_error is not None:
            raise fft_error
        return np.fft.rfft(*a, **k)

    m.fft = types.SimpleNamespace(rfft=rfft, irfft=np.fft.irfft)
    m.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        get_current_stream=lambda: types.SimpleNamespace(ptr=0),
    )
    return m


NO_CUFFT = ImportError("libcufft.so.12: cannot open shared object file: No such file")


def test_the_probe_runs_every_kernel_in_the_simulator(fresh):
    kernels = (
        "fused gather + z-score, z-score, cross-spectra, ray peaks, direct ACF window, "
        "shared-memory FFT ACF, structure tensor, Lucas-Kanade tracking kernels"
    )
    assert xp_engine.probe(np) == GpuProbe(True, "kernels", f"{kernels}, scipy.fft and BLAS ran")


def test_kernels_switched_off_mean_array_code(fresh, monkeypatch):
    monkeypatch.setattr(config, "CUDA_KERNELS", "off")
    found = xp_engine.probe(np)
    assert (found.usable, found.path) == (True, "array code")
    assert "IVY_GPU_CUDA_KERNELS=off" in found.detail


# (module, launcher, step named, the launcher's output parameter)
KERNELS = [(sti, "standardize_cuda", "z-score", "sti"),
           (sti_device, "gather_zscore_cuda", "fused gather + z-score", "out"),
           (acf, "cross_spectra_cuda", "cross-spectra", "out"),
           (rays_device, "ray_peaks_cuda", "ray sums + peaks", "out"),
           (acf_direct_device, "acf_direct_cuda", "direct ACF window", "out"),
           (acf_shared_device, "acf_shared_cuda", "shared-memory FFT ACF", "out"),
           (structure_tensor_device, "orientation_cuda", "structure tensor", "out"),
           (track_device, "track_level_cuda", "Lucas-Kanade tracking", "d")]  # fmt: skip


@pytest.mark.parametrize("module, attr, step, out_name", KERNELS)
@pytest.mark.parametrize("fault", ["raises", "wrong values"])
def test_a_kernel_that_fails_or_computes_wrong_is_named(
    fresh, monkeypatch, module, attr, step, out_name, fault
):
    signature = inspect.signature(getattr(module, attr))

    def broken(*args, **kwargs):
        if fault == "raises":
            raise RuntimeError("NvvmSupportError: libNVVM cannot be found")
        signature.bind(*args, **kwargs).arguments[out_name].fill(0)  # the output left wrong

    monkeypatch.setattr(module, attr, broken)
    found = xp_engine.probe(np)
    assert (found.usable, found.path) == (False, "unusable")
    assert found.detail.startswith(f"Numba-CUDA {step} kernel failed"), found.detail
    assert ("NVVM" if fault == "raises" else "wrong values") in found.detail


def test_a_z_score_kernel_that_flags_the_wrong_stis_is_named(fresh, monkeypatch):
    real = sti.standardize_cuda

    def wrong_flags(values, valid, stream=0):
        real(values, valid, stream)
        valid.fill(0)

    monkeypatch.setattr(sti, "standardize_cuda", wrong_flags)
    assert xp_engine.probe(np).detail == (
        "Numba-CUDA z-score kernel failed (RuntimeError: z-score kernel flagged the wrong STIs)"
    )


def test_a_gpu_without_cufft_is_unusable_and_auto_says_so_once(fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(NO_CUFFT))
    check = backends.gpu_check()
    assert (check.found, check.usable) == (True, False)
    assert check.reason.startswith("1 CUDA device(s), but cuFFT failed (ImportError: libcufft")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backends.resolve_backend("auto") == "numba"
        assert backends.resolve_backend("auto") == "numba"
    said = [w for w in caught if issubclass(w.category, IvyGpuWarning)]
    assert len(said) == 1 and "cuFFT failed" in str(said[0].message), said
    with pytest.raises(ValueError, match=r"'cupy' is not usable here: .*cuFFT failed"):
        backends.resolve_backend("cupy")
    assert backends.gpu_path("numba").startswith("unusable: 1 CUDA device(s), but cuFFT")


def test_a_gpu_without_cublas_is_named(fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(blas=False))
    assert backends.gpu_status() == (
        False,
        "1 CUDA device(s), but cuBLAS failed (RuntimeError: CUBLAS_STATUS_NOT_INITIALIZED)",
    )


def test_a_gpu_whose_kernels_cannot_compile_falls_back(fresh, monkeypatch):
    def no_nvvm(xp):
        raise RuntimeError("Numba-CUDA gather kernel failed (NvvmSupportError: no libNVVM)")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.setattr(xp_probe, "_probe_kernels", no_nvvm)
    assert backends.gpu_status()[0] is False
    with pytest.warns(IvyGpuWarning, match="gather kernel failed"):
        assert backends.resolve_backend("auto") == "numba"
    _clear()
    monkeypatch.setattr(xp_probe, "_probe_kernels", lambda xp: None)
    assert backends.gpu_check().path == "kernels"
    assert backends.resolve_backend("auto") == "cupy"
    _clear()
    monkeypatch.setattr(config, "CUDA_KERNELS", "off")
    assert backends.gpu_check().path == "array code"


def test_the_cli_names_the_missing_library(fresh, monkeypatch, video_site):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(NO_CUFFT))
    d, truth = video_site
    runner = CliRunner()
    r = runner.invoke(app, ["backends"])
    assert r.exit_code == 0
    assert "cupy   unavailable: 1 CUDA device(s), but cuFFT failed" in r.output
    assert "auto -> numba" in r.output
    args = ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse", "1"]
    r = runner.invoke(app, [*args, "--backend", "cupy"])
    assert r.exit_code == 2
    assert "'cupy' is not usable here" in r.output and "libcufft" in r.output


def test_an_engine_records_the_path_it_runs(fresh):
    assert XpEngine(np, use_cuda_kernels=True).path == "kernels"
    assert XpEngine(np).path == "array code"
    assert backends.gpu_path("numba") is None  # no GPU on this machine: nothing to say


def test_the_kernel_package_is_numba_cuda_and_its_target_works_with_this_numpy():
    """CI imports the package the GPU extras install, and its real CUDA target initialises.

    Under NumPy 2.5 numba-cuda <= 0.30.4 fails right here (``np.row_stack``), no GPU needed;
    the simulator alone would not show it. Run outside this process's simulator setting.
    """
    from numba import cuda

    assert "numba_cuda" in cuda.__file__, cuda.__file__
    assert cuda.is_available()  # the simulator: the kernel tests run, never skip
    code = (
        "from numba.cuda.descriptor import CUDATarget\n"
        "t = CUDATarget('cuda'); t.typing_context; t.target_context.refresh(); print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_gpu_check_env_step_times_the_probe_in_two_fresh_processes(monkeypatch):
    """gpu-check's env step (simulator): the probe's time, and again in another process
    (on a GPU the second reads every kernel from numba-cuda's disk cache)."""
    from pathlib import Path

    from ivy_gpu.benchmarks import gpu_check

    monkeypatch.setenv("IVY_GPU_REPO", str(Path(__file__).resolve().parents[2]))
    r = gpu_check.step_env(sim=True)
    assert r["probe"]["path"] == "kernels" and r["probe_s"] > 0 and r["probe_again_s"] > 0
    text = gpu_check.markdown({"env": r})
    assert "probe (every kernel compiled or read from the disk cache) in a fresh process" in text
