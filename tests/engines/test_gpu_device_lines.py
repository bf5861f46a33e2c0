"""Search lines as geometry: the GPU engine computes the taps of ``unit`` lines itself.

The driver hands an engine with ``device_lines`` a :class:`~ivy_gpu.engines.base.PairLines`
(node, angle row, the fan's offsets) instead of host taps; the GPU engine scores it with the
fused gather + z-score kernel (numba-cuda's simulator here). The references are the host taps
of today's path (bit for bit) and the numpy engine's velocities per node. Each test asserts
which kernel ran, so a fallback to the host-taps gather cannot pass it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.engines.base import PairLines, chunk_of
from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.kernels import rays_device, sti_device, structure_tensor_device
from ivy_gpu.params import StivParams
from ivy_gpu.stiv.driver import run_stiv, run_stiv_windows
from ivy_gpu.stiv.lines import line_geometry, line_taps, pair_lines, pair_taps, scored_lines


def _cuda():
    from numba import cuda

    assert cuda.is_available(), "neither a CUDA GPU nor numba-cuda's simulator is available"


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("own_angles", [False, True])
def test_geometry_gives_the_host_taps_bit_for_bit(interpolation, own_angles):
    rng = np.random.default_rng(4)
    nodes = rng.uniform([2, 2], [60, 40], (7, 2))  # some lines leave the 64 x 44 stack
    params = StivParams(num_pixels=10, phi_origin=40.0, phi_range=30.0, d_phi=7.5,
                        interpolation=interpolation, sigma=1.5)  # fmt: skip
    phis = rng.uniform(0, 360, (7, 3)) if own_angles else None
    lines = line_geometry(nodes, params, 64, 44, phis)
    assert 0 < lines.pairs.size < lines.n_lines
    p = params.num_pixels
    want = line_taps(lines, lines.sx.reshape(-1, p)[lines.pairs],
                     lines.sy.reshape(-1, p)[lines.pairs], interpolation)  # fmt: skip
    geo = pair_lines(lines, params)
    assert isinstance(geo, PairLines) and len(geo) == lines.pairs.size and geo.num_pixels == p
    for got in (geo.taps(), pair_taps(lines, params)):
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    # a chunk's taps are the chunk of the taps
    for a, b in zip(chunk_of(geo, 3, 9).taps(), want, strict=True):
        assert np.array_equal(a, b[3:9])
    assert scored_lines(lines, params, device_lines=False)[0].shape == want[0].shape
    compat = line_geometry(nodes, params.replace(search_line="ivytools"), 64, 44)
    assert isinstance(scored_lines(compat, params, device_lines=True), tuple)  # host taps
    with pytest.raises(ValueError, match="only unit search lines"):
        pair_lines(compat, params)


@pytest.fixture
def spy(count_launches) -> dict[str, int]:
    """Count the fused kernel's launches, the engine's host-taps gathers, the ray and tensor
    kernels' launches."""
    return count_launches({"fused": (sti_device, "gather_zscore_cuda"),
                           "gather": (XpEngine, "_gather_device"),
                           "rays": (rays_device, "ray_peaks_cuda"),
                           "tensor": (structure_tensor_device, "orientation_cuda")})  # fmt: skip


def _per_node(ref, got, rtol=1e-4):
    """Same best angle per node; theta and speed to float32 rounding (as the engine tests)."""
    assert np.array_equal(np.isnan(ref.magnitude), np.isnan(got.magnitude))
    assert np.array_equal(ref.best_phi_ari, got.best_phi_ari, equal_nan=True)  # same angle
    assert np.allclose(got.theta, ref.theta, rtol=0, atol=2e-3, equal_nan=True)
    assert np.allclose(got.magnitude, ref.magnitude, rtol=rtol, equal_nan=True)


# acf with bilinear taps and a blur: tests/engines/test_gpu_engine.py, over several chunks
CASES = [
    dict(method="acf", interpolation="nearest", sigma=1.0),
    dict(method="gradient", interpolation="bilinear", sigma=0.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_the_engine_scores_geometry_with_the_fused_kernel(texture_factory, monkeypatch, case, spy):
    _cuda()
    stack = texture_factory((16, 40, 44), 1.1, 70.0, seed=6)
    x, y = np.array([14.0, 22.0, 30.0, 41.0]), np.array([20.0, 18.0, 22.0, 20.0])
    params = StivParams(num_pixels=8, phi_origin=70.0, d_phi=4, phi_range=8, **case)
    kw = dict(pixel_gsd=0.1, d_t=0.1)
    ref = run_stiv(stack, x, y, params, backend="numpy", return_sti=True, **kw)
    calls = spy
    engine = XpEngine(np, use_cuda_kernels=True)
    assert engine.device_lines
    got = run_stiv(stack, x, y, params, backend=engine, return_sti=True, **kw)
    # one chunk scored with taps computed in the kernel; the best lines' STIs (return_sti)
    # from host taps, read from the time-last crop
    acf_calls = int(case["method"] == "acf")  # the ray sums and peaks: one launch per chunk
    assert calls == {"fused": 1, "gather": 1, "rays": acf_calls, "tensor": 1 - acf_calls}
    assert not np.isfinite(ref.magnitude[3])  # the last node's lines leave the stack
    _per_node(ref, got)
    assert np.allclose(got.sti, ref.sti, atol=1e-4, equal_nan=True)


def test_compat_lines_keep_the_host_taps(texture_factory, monkeypatch, spy):
    _cuda()
    stack = texture_factory((16, 40, 44), 1.1, 70.0, seed=6)
    x, y = np.array([14.0, 22.0]), np.array([20.0, 18.0])
    params = StivParams(num_pixels=8, phi_origin=70.0, d_phi=4, phi_range=8,
                        search_line="ivytools", interpolation="nearest")  # fmt: skip
    ref = run_stiv(stack, x, y, params, backend="numpy", pixel_gsd=0.1, d_t=0.1)
    calls = spy
    got = run_stiv(stack, x, y, params, backend=XpEngine(np, True), pixel_gsd=0.1, d_t=0.1)
    assert calls == {"fused": 0, "gather": 1, "rays": 1, "tensor": 0}
    _per_node(ref, got)


def test_stride_and_windows_read_the_time_last_crop(monkeypatch, spy):
    """A temporal stride (lags k frames apart) and time windows (views of the crop in time)."""
    from ivy_gpu.synthetic.scenes import advected_texture

    _cuda()
    stack = advected_texture((48, 36, 36), speed_px=0.5, direction_geo=80.0, seed=3)
    x, y = np.array([16.0, 20.0]), np.array([18.0, 21.0])
    params = StivParams(num_pixels=8, phi_origin=80.0, d_phi=3, phi_range=6, stride=False)
    calls = spy
    engine = XpEngine(np, use_cuda_kernels=True)
    kw = dict(pixel_gsd=1.0, d_t=2.0, lag_step=2)
    _per_node(run_stiv(stack, x, y, params, backend="numpy", **kw),
              run_stiv(stack, x, y, params, backend=engine, **kw))  # fmt: skip
    assert calls == {"fused": 1, "gather": 0, "rays": 1, "tensor": 0}
    phis = np.array([[9.0, 12.0], [10.0, 13.0]])
    # windows of one length: one pass (every line once per window, each with its first
    # frame); windows of different lengths: one pass each
    for windows, launches in (([(0, 24), (12, 36), (24, 48)], 1), ([(0, 24), (20, 48)], 2)):
        calls.update(fused=0, gather=0, rays=0, tensor=0)
        ref = run_stiv_windows(stack, x, y, params, windows, phis, pixel_gsd=1.0, d_t=1.0,
                               backend="numpy")  # fmt: skip
        got = run_stiv_windows(stack, x, y, params, windows, phis, pixel_gsd=1.0, d_t=1.0,
                               backend=engine)  # fmt: skip
        assert calls == {"fused": launches, "gather": 0, "rays": launches, "tensor": 0}
        for r, g in zip(ref, got, strict=True):
            _per_node(r, g)


def test_lines_in_time_windows_have_no_host_taps():
    lines = PairLines(np.array([3.0, 4.0]), np.array([5.0, 6.0]), np.array([0, 0], np.int32),
                      np.zeros((1, 4, 2)), (0, 9, 0, 9), "bilinear")  # fmt: skip
    win = lines.in_windows([0, 7, 3])
    assert len(win) == 6 and win.start.tolist() == [0, 0, 7, 7, 3, 3]
    assert win.node_x.tolist() == [3.0, 4.0] * 3 and win.chunk(1, 3).start.tolist() == [0, 7]
    with pytest.raises(ValueError, match="time windows need device taps"):
        win.taps()


def test_the_strides_steps_are_scored_in_one_call(monkeypatch, spy):
    """Slow nodes needing two different steps k: one crop, one fused gather and one ray launch
    per step, against the numpy engine's call per step."""
    from ivy_gpu.synthetic.scenes import advected_texture

    _cuda()
    left = advected_texture((128, 36, 30), speed_px=0.5, direction_geo=90.0, seed=3)
    right = advected_texture((128, 36, 30), speed_px=0.9, direction_geo=90.0, seed=4)
    stack = np.concatenate([left, right], axis=2)
    x, y = np.array([14.0, 46.0]), np.array([18.0, 18.0])
    params = StivParams(num_pixels=8, phi_origin=90.0, d_phi=3, phi_range=6, stride=True)
    kw = dict(pixel_gsd=1.0, d_t=1.0)
    ref = run_stiv(stack, x, y, params, backend="numpy", **kw)
    assert ref.stride[0] > ref.stride[1] > 1  # two steps (k = 4 and 3 on these short lines)
    calls = spy
    prepares = []
    real_prepare = XpEngine.prepare

    def prepare(self, *a, **k):
        prepares.append(1)
        return real_prepare(self, *a, **k)

    monkeypatch.setattr(XpEngine, "prepare", prepare)
    got = run_stiv(stack, x, y, params, backend=XpEngine(np, use_cuda_kernels=True), **kw)
    # the full-rate fan, then both steps in one call: one crop and one gather each, rays per step
    assert len(prepares) == 2
    assert calls == {"fused": 2, "gather": 0, "rays": 3, "tensor": 0}
    np.testing.assert_array_equal(got.stride, ref.stride)
    _per_node(ref, got)  # the stride's accuracy on truth: tests/stiv/test_stride.py


def test_steps_with_fewer_pixel_lags_hand_the_ray_kernel_contiguous_rows(monkeypatch):
    """Two steps whose rays need 6 and 5 pixel lags in one call: the second span's rows are a
    copy in the kernel's layout (a strided view would compile another kernel on a GPU), and
    each span scores as a call of its own."""
    from ivy_gpu.kernels.rays import AcfPlan, PlanGroups
    from ivy_gpu.stiv.driver import score_batch
    from ivy_gpu.stiv.methods import METHODS
    from ivy_gpu.synthetic.scenes import advected_texture

    _cuda()
    stack = advected_texture((24, 30, 30), speed_px=0.6, direction_geo=80.0, seed=2)
    params = StivParams(num_pixels=8, phi_origin=80.0, d_phi=4, phi_range=4)
    lines = line_geometry(np.array([[12.0, 14.0], [17.0, 15.0]]), params, 30, 30)
    engine = XpEngine(np, use_cuda_kernels=True)
    batch = scored_lines(lines, params, engine.device_lines)
    handle = engine.prepare(stack, lines.window, 0.0, batch)
    plans = (AcfPlan.build(8, 12, 0.5, 2.0, 2), AcfPlan.build(8, 6, 0.5, 2.0, 4))
    assert plans[0].operator.lx_max == 5 and plans[1].operator.lx_max == 4
    seen = []
    real = rays_device.ray_peaks_cuda

    def watched(r, *a, **k):
        seen.append((r.shape[1], r.flags.c_contiguous))
        return real(r, *a, **k)

    monkeypatch.setattr(rays_device, "ray_peaks_cuda", watched)
    n = len(batch)
    method = METHODS["acf"]
    got, _ = score_batch(engine, method, handle, batch, PlanGroups(plans, (0, 3, n)), 24)
    assert seen == [(6, True), (5, True)]
    for (lo, hi), plan in zip(((0, 3), (3, n)), plans, strict=True):
        want, _ = score_batch(engine, method, handle, batch.chunk(lo, hi), plan, 24)
        np.testing.assert_allclose(got[lo:hi], want, rtol=1e-5)
