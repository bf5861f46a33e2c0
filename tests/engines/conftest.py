"""Fixtures of the engine tests: counting kernel launches, the per-STI ACF paths end to end."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


@pytest.fixture
def count_launches(monkeypatch):
    """``count({key: (module, launcher name)})``: the calls of each launcher, counted as they run.

    GPU tests assert the path that ran, so a fallback cannot pass them.
    """

    def count(targets: dict[str, tuple[Any, str]]) -> dict[str, int]:
        calls = dict.fromkeys(targets, 0)
        for key, (module, name) in targets.items():
            real = getattr(module, name)

            def counted(*a, _key=key, _real=real, **k):
                calls[_key] += 1
                return _real(*a, **k)

            monkeypatch.setattr(module, name, counted)
        return calls

    return count


@pytest.fixture
def per_sti_path_on_device(count_launches):
    """``check(acf_kernel, module, launcher)``: the GPU engine with ``IVY_GPU_ACF=acf_kernel``
    end to end against numba (5 nodes, P = 32, T = 300, refined): the same best angle on every
    node, speeds within 1e-5, and its launcher ran (real GPU only)."""

    def check(acf_kernel: str, module: Any, launcher: str) -> None:
        import cupy

        from ivy_gpu.engines.xp_engine import XpEngine
        from ivy_gpu.params import StivParams
        from ivy_gpu.stiv.driver import run_stiv
        from ivy_gpu.synthetic.scenes import advected_texture

        calls = count_launches({"kernel": (module, launcher)})
        engine = XpEngine(cupy, use_cuda_kernels=True)
        engine.acf_kernel = acf_kernel
        stack = advected_texture((300, 120, 160), speed_px=1.3, direction_geo=75.0, seed=6)
        params = StivParams(num_pixels=32, phi_origin=75.0, d_phi=1, phi_range=10, refine=True)
        x, y = np.linspace(40, 120, 5), np.full(5, 60.0)
        kw = dict(pixel_gsd=1.0, d_t=1.0)
        ref = run_stiv(stack, x, y, params, backend="numba", **kw)
        got = run_stiv(cupy.asarray(stack), x, y, params, backend=engine, **kw)
        assert calls["kernel"]  # the path ran
        np.testing.assert_array_equal(got.best_phi_ari, ref.best_phi_ari)
        np.testing.assert_allclose(got.magnitude, ref.magnitude, rtol=1e-5)

    return check


@pytest.fixture
def per_sti_kernel_on_device(streak_stis):
    """``check(launch)``: a per-STI ACF kernel on the real GPU at the real size (2,000 STIs of
    P = 32, T = 300, the sixth one invalid) against the direct sums' twin on the first 100;
    ``launch(z, t, op, valid, out)`` runs it on device arrays (real GPU only)."""

    def check(launch) -> None:
        import cupy

        from ivy_gpu.kernels import acf_direct_device
        from ivy_gpu.kernels.rays import AcfPlan

        t = 300
        op = AcfPlan.build(32, t, 0.5, 0.5).operator
        z = streak_stis(2000, 32, t, seed=7)
        valid = np.ones(2000, bool)
        valid[5] = False
        out = cupy.full((2000, 4), -7.0)
        launch(cupy.asarray(z), t, op, cupy.asarray(valid.astype(np.uint8)), out)
        got = out.get()
        want = acf_direct_device.ray_peaks_direct_xp(z[:100], t, op, valid[:100], op.weights)
        assert np.array_equal(got[:100, 0], want[:, 0])
        np.testing.assert_allclose(got[:100, 1:], want[:, 1:], rtol=1e-5, atol=1e-6)
        assert np.isfinite(got[:, 1]).sum() == 1999 and (got[:, 0] >= 0).all()

    return check


@pytest.fixture
def streak_stis():
    """``make(n, p, t, seed, pad=0)``: row-z-scored STIs of streaks (a smooth random texture
    moving 0.4 to 1.6 px per frame, one speed per STI, plus noise) float32, zero-padded by
    ``pad`` frames (the fused kernel's output for the cuFFT path)."""

    def make(n: int, p: int, t: int, seed: int, pad: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = np.empty((n, p, t))
        for s, v in enumerate(np.linspace(0.4, 1.6, n)):
            band = np.convolve(rng.standard_normal(p + 2 * t + 8), np.ones(4) / 4, mode="same")
            pos = np.arange(p)[:, None] + t + 1 - v * np.arange(t)[None, :]
            z[s] = np.interp(pos, np.arange(band.size), band)
        z += 0.1 * rng.standard_normal(z.shape)
        z = z.astype(np.float32)
        z -= z.mean(axis=-1, keepdims=True)
        z /= z.std(axis=-1, ddof=1, keepdims=True)
        return np.concatenate([z, np.zeros((n, p, pad), np.float32)], axis=-1)

    return make


@pytest.fixture
def two_speed_stride(monkeypatch):
    """``scene(frames)``: ``(stack, x, y)``, two nodes at 0.5 and 0.9 px/frame (the stride
    re-measures both, with different steps), ``STRIDE_MIN_FRAMES`` a quarter of ``frames``
    so that k = 4 fits (simulator time)."""
    from ivy_gpu import config
    from ivy_gpu.synthetic.scenes import advected_texture

    def scene(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        monkeypatch.setattr(config, "STRIDE_MIN_FRAMES", frames // 4)
        left = advected_texture((frames, 36, 30), speed_px=0.5, direction_geo=90.0, seed=3)
        right = advected_texture((frames, 36, 30), speed_px=0.9, direction_geo=90.0, seed=4)
        return np.concatenate([left, right], axis=2), np.array([14.0, 46.0]), np.array([18.0, 18.0])

    return scene
