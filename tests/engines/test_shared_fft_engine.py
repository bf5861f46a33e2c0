"""The GPU engine with ``IVY_GPU_ACF=shared``: every ACF call through the shared-memory FFT kernel.

Apart from the kernel's own tests (``test_gpu_acf_shared.py``) because the simulator runs this
one for about 35 s (a thread per frequency bin, a barrier per FFT stage), more than the
rehearsal of ``make gpu-check`` can give its kernel tests; CI runs it.
"""

from __future__ import annotations

import numpy as np

from ivy_gpu.kernels import acf, acf_direct_device, acf_shared_device, rays_device


def test_the_engine_scores_with_the_shared_kernel_when_asked(
    monkeypatch, count_launches, two_speed_stride
):
    """``IVY_GPU_ACF=shared``: the full fan and the stride's steps through this kernel (no
    cross-spectra, ray or direct kernel launched), per node as the numpy engine."""
    from ivy_gpu import config
    from ivy_gpu.engines import backends
    from ivy_gpu.engines.xp_engine import XpEngine
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.driver import run_stiv

    calls = count_launches({"shared": (acf_shared_device, "acf_shared_cuda"),
                            "direct": (acf_direct_device, "acf_direct_cuda"),
                            "cross": (acf, "cross_spectra_cuda"),
                            "rays": (rays_device, "ray_peaks_cuda")})  # fmt: skip
    monkeypatch.setattr(config, "GPU_ACF", "shared")
    engine = XpEngine(np, use_cuda_kernels=True)
    assert engine.acf_kernel == "shared"
    with monkeypatch.context() as m:  # what results.json records
        m.setattr(backends, "get_engine", lambda name: engine)
        assert backends.gpu_path("cupy") == "kernels, shared-memory FFT ACF"
    stack, x, y = two_speed_stride(24)  # k = 4 from 24 frames (simulator time)
    params = StivParams(num_pixels=6, phi_origin=90.0, d_phi=3, phi_range=3, stride=True)
    ref = run_stiv(stack, x, y, params, backend="numpy", pixel_gsd=1.0, d_t=1.0)
    got = run_stiv(stack, x, y, params, backend=engine, pixel_gsd=1.0, d_t=1.0)
    assert ref.stride[0] > ref.stride[1] > 1
    # the fan, then the stride's two steps (one call, a launch per step, each step its own
    # FFT length: 32 points for the fan, 64 for k = 3 and 4)
    assert calls == {"shared": 3, "direct": 0, "cross": 0, "rays": 0}
    np.testing.assert_array_equal(got.stride, ref.stride)
    np.testing.assert_array_equal(got.best_phi_ari, ref.best_phi_ari)
    np.testing.assert_allclose(got.magnitude, ref.magnitude, rtol=1e-4)
    np.testing.assert_allclose(got.theta, ref.theta, atol=5e-3)
