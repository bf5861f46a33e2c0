"""Each STI autocorrelated by a radix-2 FFT in shared memory, its rays and peak in one kernel.

The reference is the linear autocorrelation's window the direct kernel sums
(:func:`ivy_gpu.kernels.acf_direct_device.acf_window_direct_xp`, float64), equal to the FFT
path's (its own test); the array twin of this kernel's arithmetic (row pairs packed into one
complex FFT, per-bin cross-spectra, lag pairs packed into one inverse) is checked against it
at the real size. The kernel runs in numba-cuda's simulator with its own block (a thread per
frequency bin), on odd and even row counts, negative and positive lags, lag steps 1 to 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.kernels import acf, acf_direct_device, acf_shared_device, rays_device
from ivy_gpu.kernels.rays import AcfPlan


def _kernel(z, t, op, valid):
    out = np.full((z.shape[0], 4), -7.0)  # every value must be written
    tw = acf_shared_device.twiddles(acf_shared_device.fft_size(op, t))
    acf_shared_device.acf_shared_cuda(z, t, op, *tw, *op.sparse, valid.astype(np.uint8), out)
    return out


def test_the_fft_length_covers_the_clip_and_its_longest_lag():
    op = AcfPlan.build(32, 300, 0.5, 0.5).operator
    k_lag = max(-op.lt_lo, op.lt_hi)
    assert acf_shared_device.fft_size(op, 300) == 1 << (300 + k_lag - 1).bit_length()
    assert acf_shared_device.fft_size(op, 300) == 512
    # lags of the clip's length or more read nothing: no longer FFT for them
    far = AcfPlan.build(8, 20, 0.5, 2.0, lag_step=9).operator
    assert acf_shared_device.fft_size(far, 20) == 64  # 20 + 19 frames, not 20 + 9 * lt_hi


@pytest.mark.parametrize(("p", "t", "lag_step"), [(8, 60, 1), (7, 60, 1), (8, 60, 3), (32, 300, 1)])
def test_the_twin_of_the_kernels_arithmetic_is_the_linear_window(p, t, lag_step, streak_stis):
    op = AcfPlan.build(p, t // lag_step, 0.5, 2.0, lag_step).operator
    z = streak_stis(3, p, t, seed=p + lag_step)
    want = acf_direct_device.acf_window_direct_xp(z, t, op)
    got = acf_shared_device.acf_window_shared_xp(z, t, op)
    assert got.shape == want.shape == (3, op.lx_max + 1, op.n_lt) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)  # float32 FFTs against float64 sums
    valid = np.array([True, False, True])
    rows = acf_shared_device.ray_peaks_shared_xp(z, t, op, valid, op.weights)
    ref = acf_direct_device.ray_peaks_direct_xp(z, t, op, valid, op.weights)
    assert np.array_equal(rows[:, 0], ref[:, 0])
    np.testing.assert_allclose(rows[:, 1:], ref[:, 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("p", "lag_step"), [(8, 1), (7, 2), (5, 3)])
def test_the_kernel_equals_the_direct_sums_and_the_fft_paths_rays(p, lag_step, streak_stis):
    """Odd row counts (the last row paired with zeros), every lag step the stride uses."""
    t = 24
    op = AcfPlan.build(p, t // lag_step, 0.5, 2.0, lag_step).operator
    z = streak_stis(4, p, t, seed=10 + p)
    z[1, 2] = 0.0  # a constant row: invalid, as the fused kernel flags it
    valid = np.array([True, False, True, True])
    got = _kernel(z, t, op, valid)
    want = acf_direct_device.ray_peaks_direct_xp(z, t, op, valid, op.weights)
    assert np.array_equal(got[:, 0], want[:, 0])  # the same ray for every STI
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-5, atol=1e-6)
    assert got[1, 0] == 0 and np.isnan(got[1, 1:]).all()
    n_fft = op.fft_length(t)  # the cuFFT path: full autocorrelation, then the ray kernel's code
    r = acf.acf_rows_xp(z, op.lx_max, n_fft, np, np.fft).astype(np.float32)
    fft_path = rays_device.ray_peaks_xp(r, op, valid, op.weights, np)
    assert np.array_equal(got[:, 0], fft_path[:, 0])
    np.testing.assert_allclose(got[:, 1:], fft_path[:, 1:], rtol=1e-5, atol=1e-6)


def test_more_lags_than_rows_and_the_same_result_every_run(streak_stis):
    """Pixel lags past the last row are zero; a second launch gives the same bits."""
    t = 16
    op = AcfPlan.build(6, t, 0.5, 3.0).operator
    z = streak_stis(2, 3, t, seed=5)  # 3 rows, up to lx_max = 4 lags
    assert op.lx_max >= 3
    valid = np.ones(2, bool)
    first = _kernel(z, t, op, valid)
    want = acf_direct_device.ray_peaks_direct_xp(z, t, op, valid, op.weights)
    assert np.array_equal(first[:, 0], want[:, 0])
    np.testing.assert_allclose(first[:, 1:], want[:, 1:], rtol=1e-5, atol=1e-6)
    assert np.array_equal(first, _kernel(z, t, op, valid))


def test_what_does_not_fit_is_refused():
    assert not acf_shared_device.fits(AcfPlan.build(138, 300, 0.5, 0.5).operator, 300)
    assert acf_shared_device.fits(AcfPlan.build(32, 300, 0.5, 0.5).operator, 300)
    long_clip = AcfPlan.build(32, 1100, 0.5, 0.5).operator  # 1100 + lags: an FFT of 2048
    assert acf_shared_device.fft_size(long_clip, 1100) > acf_shared_device.N_MAX
    assert not acf_shared_device.fits(long_clip, 1100)
    small = AcfPlan.build(6, 20, 0.5, 3.0).operator
    with pytest.raises(ValueError, match="do not fit"):
        _kernel(np.zeros((1, 32, 1100), np.float32), 1100, long_clip, np.ones(1, bool))
    with pytest.raises(ValueError, match="t_len"):
        _kernel(np.zeros((1, 6, 10), np.float32), 20, small, np.ones(1, bool))
    out = np.empty((1, 4))
    with pytest.raises(ValueError, match="twiddles"):
        acf_shared_device.acf_shared_cuda(
            np.zeros((1, 6, 20), np.float32), 20, small, *acf_shared_device.twiddles(16),
            *small.sparse, np.ones(1, np.uint8), out,
        )  # fmt: skip


# ------------------------------------------------------------------ real GPU only
@pytest.mark.gpu
def test_the_shared_kernel_on_the_device_at_the_real_size(
    per_sti_kernel_on_device, per_sti_path_on_device
):
    """The kernel as NVVM compiles it (256-thread blocks at n = 512), 2,000 STIs of P = 32,
    T = 300 against the direct sums' twin; then the engine's shared path end to end, which
    must launch it (a fallback to the cuFFT path cannot pass)."""
    import cupy

    def launch(z, t, op, valid, out):
        n = acf_shared_device.fft_size(op, t)
        arrays = (cupy.asarray(a) for a in (*acf_shared_device.twiddles(n), *op.sparse))
        acf_shared_device.acf_shared_cuda(z, t, op, *arrays, valid, out)

    per_sti_kernel_on_device(launch)
    per_sti_path_on_device("shared", acf_shared_device, "acf_shared_cuda")
