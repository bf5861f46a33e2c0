"""Lag window, normalisation, ray sums and peak in one kernel, against the array code.

The reference is the GPU engine's array code (:func:`ivy_gpu.kernels.rays_device.ray_peaks_xp`:
take, normalise, dense ray matrix, mask, :func:`~ivy_gpu.kernels.rays.peaks_xp`), itself the
path the engine's other tests hold to the numpy engine. The kernel runs in numba-cuda's
simulator here, with 4-thread blocks so every thread strides over many rays and window values.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.kernels import acf, rays_device
from ivy_gpu.kernels.rays import AcfPlan


def _autocorrelation(plan: AcfPlan, n: int, t: int, seed: int) -> np.ndarray:
    """Autocorrelation rows of n random z-scored STIs (the kernel's real input)."""
    op = plan.operator
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, plan.num_pixels, t)).astype(np.float32)
    z -= z.mean(axis=-1, keepdims=True)
    return acf.acf_rows_xp(z, op.lx_max, op.fft_length(t), np, np.fft).astype(np.float32)


def _kernel(r, op, valid, block=4, window=None):
    out = np.full((r.shape[0], 4), -7.0)  # every value must be written
    arrays = (rays_device.window_lags(op, r.shape[-1]), *op.sparse)
    rays_device.ray_peaks_cuda(r, *arrays, valid.astype(np.uint8), out, block=block,
                               window=window)  # fmt: skip
    return out


@pytest.mark.parametrize("lag_step", [1, 2])
def test_the_kernel_equals_the_array_code_per_sti(lag_step):
    t = 24
    plan = AcfPlan.build(8, t // lag_step, 0.5, 2.0, lag_step)
    op = plan.operator
    r = _autocorrelation(plan, 5, t, seed=lag_step)
    r[3, 0, 0] = -1.0  # a non-positive zero lag divides by 1, as the array code
    valid = np.array([True, True, False, True, True])
    want = rays_device.ray_peaks_xp(r, op, valid, op.weights, np)
    got = _kernel(r, op, valid)
    assert np.array_equal(got, _kernel(r, op, valid, window=rays_device.WIN_SIZES[-1]),
                          equal_nan=True)  # the large variant: the same rows  # fmt: skip
    assert np.array_equal(got[:, 0], want[:, 0])  # the same ray for every STI
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-5, atol=1e-6)
    assert got[2, 0] == 0 and np.isnan(got[2, 1:]).all()  # the invalid STI
    # NaN before the first ray / after the last one, as peaks_xp
    assert np.array_equal(np.isnan(got[:, 2]), np.isnan(want[:, 2]))


def test_a_non_finite_ray_sum_gives_nan_and_the_first_ray():
    plan = AcfPlan.build(8, 16, 0.5, 3.0)
    op = plan.operator
    r = _autocorrelation(plan, 2, 16, seed=5)
    lags = rays_device.window_lags(op, r.shape[-1])
    r[1, 1, lags[3]] = np.nan  # read by some ray of STI 1
    got = _kernel(r, op, np.array([True, True]))
    want = rays_device.ray_peaks_xp(r, op, np.array([True, True]), op.weights, np)
    assert got[1, 0] == want[1, 0] == 0 and np.isnan(got[1, 1:]).all()
    assert np.isfinite(got[0, 1])


def test_windows_that_do_not_fit_are_refused():
    small, long = AcfPlan.build(32, 300, 0.5, 0.5), AcfPlan.build(200, 300, 0.5, 0.5)
    assert rays_device.fits(small.operator) and not rays_device.fits(long.operator)
    assert rays_device.fits(AcfPlan.build(138, 300, 0.5, 0.5).operator)  # IVyTools' long lines
    op = long.operator
    r = np.zeros((1, op.lx_max + 1, 16), np.float32)
    with pytest.raises(ValueError, match="window: one of"):
        _kernel(_autocorrelation(small, 1, 300, seed=0), small.operator, np.ones(1, bool),
                window=100)  # fmt: skip
    with pytest.raises(ValueError, match="does not fit"):
        rays_device.ray_peaks_cuda(r, np.zeros(op.n_lt, np.int32), *op.sparse,
                                   np.ones(1, np.uint8), np.zeros((1, 4)))  # fmt: skip
