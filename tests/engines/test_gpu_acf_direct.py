"""The lag window summed directly, its rays and peak in one kernel, against the FFT path.

Two references: the FFT path's window (:func:`ivy_gpu.kernels.acf.acf_window_xp`, what the
numba engine and the GPU engine's cuFFT path compute) for the direct sums' twin, and the
ray kernel's array code for the kernel's rows. The kernel runs in numba-cuda's simulator
with 4-thread blocks, so every thread strides over several lag groups.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.kernels import acf, acf_direct_device, rays_device
from ivy_gpu.kernels.rays import AcfPlan


@pytest.mark.parametrize("lag_step", [1, 3])
def test_direct_sums_are_the_fft_paths_window(lag_step, streak_stis):
    t = 60
    op = AcfPlan.build(8, t // lag_step, 0.5, 2.0, lag_step).operator
    z = streak_stis(3, 8, t, pad=5, seed=lag_step)
    want = acf.acf_window_xp(z[..., :t], op.lx_max, op.lt_lo, op.lt_hi, np, np.fft,
                             lag_step=lag_step)  # fmt: skip
    got = acf_direct_device.acf_window_direct_xp(z, t, op)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)


def _kernel(z, t, op, valid, block=4):
    out = np.full((z.shape[0], 4), -7.0)  # every value must be written
    ptr, lag, w = op.sparse
    acf_direct_device.acf_direct_cuda(z, t, op, ptr, lag, w, valid.astype(np.uint8), out,
                                      block=block)  # fmt: skip
    return out


@pytest.mark.parametrize("lag_step", [1, 2])
def test_the_kernel_equals_its_twin_and_the_fft_paths_rays(lag_step, streak_stis):
    t = 24
    op = AcfPlan.build(8, t // lag_step, 0.5, 2.0, lag_step).operator
    z = streak_stis(4, 8, t, pad=3, seed=10 + lag_step)
    z[1, 2] = 0.0  # a constant row: invalid, as the fused kernel flags it
    valid = np.array([True, False, True, True])
    got = _kernel(z, t, op, valid)
    twin = acf_direct_device.ray_peaks_direct_xp(z, t, op, valid, op.weights)
    assert np.array_equal(got[:, 0], twin[:, 0])  # the same ray for every STI
    np.testing.assert_allclose(got[:, 1:], twin[:, 1:], rtol=1e-5, atol=1e-6)
    assert got[1, 0] == 0 and np.isnan(got[1, 1:]).all()
    # the FFT path's rays (the ray kernel's array code on the full autocorrelation)
    n_fft = op.fft_length(t)
    r = acf.acf_rows_xp(z[..., :t], op.lx_max, n_fft, np, np.fft).astype(np.float32)
    fft_path = rays_device.ray_peaks_xp(r, op, valid, op.weights, np)
    assert np.array_equal(got[:, 0], fft_path[:, 0])
    np.testing.assert_allclose(got[:, 1:], fft_path[:, 1:], rtol=1e-5, atol=1e-6)


def test_one_thread_or_four_per_block(streak_stis):
    """The lag groups and the zero lag's reduction split over 1 or 4 threads: same rays, same
    values to float rounding (the engine runs one block size per device: its own rows are
    the same every run)."""
    t = 20
    op = AcfPlan.build(6, t, 0.5, 3.0).operator
    z = streak_stis(3, 6, t, pad=0, seed=3)
    valid = np.ones(3, bool)
    one, four = _kernel(z, t, op, valid, block=1), _kernel(z, t, op, valid, block=4)
    assert np.array_equal(one[:, 0], four[:, 0])
    np.testing.assert_allclose(one[:, 1:], four[:, 1:], rtol=1e-6)
    assert np.array_equal(four, _kernel(z, t, op, valid, block=4), equal_nan=True)


def test_what_does_not_fit_is_refused():
    op = AcfPlan.build(138, 300, 0.5, 0.5).operator
    assert not acf_direct_device.fits(op)  # P = 138: the cuFFT path
    assert acf_direct_device.fits(AcfPlan.build(32, 300, 0.5, 0.5).operator)
    z = np.zeros((1, 138, 300), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        _kernel(z, 300, op, np.ones(1, bool))
    small = AcfPlan.build(6, 20, 0.5, 3.0).operator
    with pytest.raises(ValueError, match="t_len"):
        _kernel(np.zeros((1, 6, 10), np.float32), 20, small, np.ones(1, bool))
    with pytest.raises(ValueError, match="block"):
        _kernel(np.zeros((1, 6, 20), np.float32), 20, small, np.ones(1, bool), block=3)


def test_the_engine_scores_with_the_direct_kernel_when_asked(
    monkeypatch, count_launches, two_speed_stride
):
    """``IVY_GPU_ACF=direct``: the full fan and the stride's steps through the direct kernel
    (no cross-spectra or ray kernel launched), per node as the numpy engine."""
    from ivy_gpu import config
    from ivy_gpu.engines.xp_engine import XpEngine
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.driver import run_stiv

    calls = count_launches({"direct": (acf_direct_device, "acf_direct_cuda"),
                            "cross": (acf, "cross_spectra_cuda"),
                            "rays": (rays_device, "ray_peaks_cuda")})  # fmt: skip
    monkeypatch.setattr(config, "GPU_ACF", "direct")
    engine = XpEngine(np, use_cuda_kernels=True)
    assert engine.acf_kernel == "direct"
    stack, x, y = two_speed_stride(64)  # k = 4 from 64 frames
    params = StivParams(num_pixels=8, phi_origin=90.0, d_phi=3, phi_range=6, stride=True)
    ref = run_stiv(stack, x, y, params, backend="numpy", pixel_gsd=1.0, d_t=1.0)
    got = run_stiv(stack, x, y, params, backend=engine, pixel_gsd=1.0, d_t=1.0)
    assert ref.stride[0] > ref.stride[1] > 1
    # the fan, then the stride's two steps (one call, a launch per step)
    assert calls == {"direct": 3, "cross": 0, "rays": 0}
    np.testing.assert_array_equal(got.stride, ref.stride)
    np.testing.assert_array_equal(got.best_phi_ari, ref.best_phi_ari)
    np.testing.assert_allclose(got.magnitude, ref.magnitude, rtol=1e-4)
    # the full-rate refined ray of 64 x 8 STIs: the kernel's float32 sums move it by 2.5e-3
    # degrees here; a wrong ray would be a 0.5-degree step off
    np.testing.assert_allclose(got.theta, ref.theta, atol=5e-3)


def test_an_unknown_acf_setting_is_named(monkeypatch):
    from ivy_gpu import config
    from ivy_gpu.engines.xp_engine import XpEngine

    monkeypatch.setattr(config, "GPU_ACF", "radix")
    with pytest.raises(ValueError, match="IVY_GPU_ACF: one of fft, direct, shared, not 'radix'"):
        XpEngine(np, use_cuda_kernels=True)
    monkeypatch.setattr(config, "GPU_ACF", "direct")
    assert XpEngine(np, use_cuda_kernels=False).acf_kernel == "fft"  # array code: no kernels


def test_results_record_the_direct_path(monkeypatch):
    from ivy_gpu.engines import backends
    from ivy_gpu.engines.xp_engine import XpEngine

    engine = XpEngine(np, use_cuda_kernels=True)
    monkeypatch.setattr(backends, "get_engine", lambda name: engine)
    assert backends.gpu_path("cupy") == "kernels"
    engine.acf_kernel = "direct"
    assert backends.gpu_path("cupy") == "kernels, direct ACF window"


# ------------------------------------------------------------------ real GPU only
@pytest.mark.gpu
def test_the_direct_kernel_on_the_device_at_the_real_size(
    per_sti_kernel_on_device, per_sti_path_on_device
):
    """The kernel as NVVM compiles it (shared arrays, 128-thread blocks), 2,000 STIs of
    P = 32, T = 300 against its twin; then the engine's direct path end to end, which must
    launch it (a fallback to the cuFFT path cannot pass)."""
    import cupy

    def launch(z, t, op, valid, out):
        sparse = (cupy.asarray(a) for a in op.sparse)
        acf_direct_device.acf_direct_cuda(z, t, op, *sparse, valid, out)

    per_sti_kernel_on_device(launch)
    per_sti_path_on_device("direct", acf_direct_device, "acf_direct_cuda")
