"""The GPU engine's parts: CUDA kernels (simulator in CI), their array-code fallbacks,
device rectification and the stack allocation. ``gpu``-marked tests need a real GPU."""

from __future__ import annotations

import numpy as np
import pytest

import ivy_gpu.engines.backends as backends
from ivy_gpu import config
from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.kernels import acf, sti
from ivy_gpu.stiv.driver import stiv_exhaustive

KW = dict(num_pixels=16, phi_origin=80, d_phi=2, phi_range=6, pixel_gsd=0.05, d_t=0.1)


def _cuda():
    """numba-cuda's CUDA target: a GPU, or its simulator in CI. Never a skip: without it the
    kernels would go untested, so the test fails (the dev extras install numba-cuda)."""
    from numba import cuda

    assert cuda.is_available(), "neither a CUDA GPU nor numba-cuda's simulator is available"
    return cuda


def test_grid_stride_kernels_cover_more_items_than_one_launch(monkeypatch):
    """Few blocks of few threads: every kernel must loop over the rest (no launch limit)."""
    cuda = _cuda()
    monkeypatch.setattr(config, "CUDA_BLOCK", 4)
    monkeypatch.setattr(config, "CUDA_MAX_BLOCKS", 3)
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 255, (5, 7, 9), dtype=np.uint8)
    taps = sti.bilinear_taps(rng.uniform(0, 8, (6, 4)), rng.uniform(0, 6, (6, 4)), 9, 7, "bilinear")
    want = sti.gather_numpy(stack, *taps)
    out = cuda.device_array(want.shape, dtype=np.float32)
    sti.gather_cuda(*(cuda.to_device(a) for a in (stack, *taps)), out)
    got = out.copy_to_host()
    assert np.allclose(got, want, rtol=1e-6)
    valid = cuda.to_device(np.ones(6, np.uint8))
    d = cuda.to_device(got)
    sti.standardize_cuda(d, valid)
    z_want, v_want = sti.standardize_numpy(got)
    assert np.array_equal(valid.copy_to_host().astype(bool), v_want)
    assert np.allclose(d.copy_to_host(), np.nan_to_num(z_want), atol=1e-5)


def test_cross_spectra_kernel_and_fft_fallback_match_the_definition(monkeypatch):
    cuda = _cuda()
    monkeypatch.setattr(config, "CUDA_BLOCK", 8)
    monkeypatch.setattr(config, "CUDA_MAX_BLOCKS", 2)
    rng = np.random.default_rng(5)
    z = rng.standard_normal((3, 6, 10)).astype(np.float32)
    zf = np.fft.rfft(z, axis=-1).astype(np.complex64)
    want = acf.cross_spectra_xp(zf.astype(np.complex128), 3, np)
    out = cuda.device_array((3, 4, zf.shape[2]), dtype=np.complex64)
    acf.cross_spectra_cuda(cuda.to_device(zf), 3, out)
    assert np.allclose(out.copy_to_host(), want, atol=1e-4)
    assert np.allclose(acf.cross_spectra_fft_xp(zf, 3, np), want, atol=1e-4)


@pytest.mark.parametrize("kernels", [False, True])
def test_gpu_engine_code_matches_reference_across_chunks_and_blur(
    texture_factory, small_chunks, monkeypatch, kernels
):
    """The GPU engine (NumPy namespace; CUDA kernels in the simulator) with tiny chunks."""
    if kernels:
        _cuda()
    stack = texture_factory((20, 48, 56), 1.2, 80.0, seed=2)
    x, y = [20.0, 28.0, 36.0], [24.0, 22.0, 26.0]
    ref = stiv_exhaustive(stack, x, y, sigma=1.0, backend="numpy", **KW)
    monkeypatch.setattr(backends, "get_engine", lambda name: XpEngine(np, kernels))
    got = stiv_exhaustive(stack, x, y, sigma=1.0, backend="cupy", **KW)
    assert np.array_equal(np.isnan(ref.magnitude), np.isnan(got.magnitude))
    assert np.allclose(got.theta, ref.theta, equal_nan=True)
    assert np.allclose(got.magnitude, ref.magnitude, rtol=1e-4, equal_nan=True)


def test_gpu_engine_remap_matches_opencv():
    """Device rectification (map_coordinates into the uint8 stack) against cv2.remap."""
    from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
    from ivy_gpu.synthetic.sites import Site, SiteSpec

    site = Site(SiteSpec(width_px=320, height_px=180))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    rect = Rectifier(params, site.spec.wse_m, (320, 180))
    frame = np.random.default_rng(1).integers(0, 255, (180, 320), dtype=np.uint8)
    out = np.empty(rect.output_shape, np.uint8)
    XpEngine(np, False).remap(frame, rect, out)
    ref = rect.rectify(frame)
    diff = np.abs(out.astype(int) - ref.astype(int))
    # OpenCV interpolates in 1/32-px fixed point and blends at the frame border
    inner = diff[2:-2, 2:-2]
    assert inner.max() <= 2 and inner.mean() < 0.3


def test_stack_starts_small_and_grows(video_site, monkeypatch):
    from ivy_gpu.frames.stack import load_stack
    from ivy_gpu.results import VideoConfig
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    d, truth = video_site
    scaffold = load_scaffold(d / "site.ivy")
    cfg = VideoConfig(d / truth["video"], truth["wse_m"], max_frames=11)
    engine = backends.get_engine("numba")
    big = load_stack(scaffold, cfg, engine)
    monkeypatch.setattr(config, "STACK_INITIAL_FRAMES", 2)
    small = load_stack(scaffold, cfg, engine)
    assert small.stack.shape == big.stack.shape == (11, *big.rectifier.output_shape)
    assert np.array_equal(small.stack, big.stack)
    # grown to 16 frames for 11: the stack is its own 11-frame array, not a view that keeps
    # the larger buffer alive
    assert small.stack.base is None and small.stack.flags.owndata
    # two frames over the container's estimate (92 for 90): a view of the buffer, not a
    # third copy of the stack
    monkeypatch.setattr(config, "STACK_INITIAL_FRAMES", 512)
    whole = load_stack(scaffold, VideoConfig(d / truth["video"], truth["wse_m"]), engine)
    assert whole.stack.shape[0] == truth["num_frames"] == 90
    assert whole.stack.base is not None and whole.stack.base.shape[0] == 92
    assert whole.stack.flags.c_contiguous and np.array_equal(whole.stack[:11], big.stack)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.0, 2.5])
def test_the_blur_reads_uint8_and_writes_float32_once(sigma):
    """Same values as blurring a float32 copy of the window, without that copy."""
    import scipy.ndimage as ndimage

    from ivy_gpu.engines.base import crop_blur

    stack = np.random.default_rng(4).integers(0, 255, (5, 30, 40), dtype=np.uint8)
    window = (3, 24, 5, 33)
    got = crop_blur(stack, window, sigma, np, ndimage)
    region = stack[:, 3:25, 5:34]
    if sigma == 0:
        assert got.dtype == np.uint8 and np.array_equal(got, region)
        return
    want = ndimage.gaussian_filter(region.astype(np.float32), (0.0, sigma, sigma), mode="reflect")
    assert got.dtype == np.float32 and np.array_equal(got, want)


# ------------------------------------------------------------------ real GPU only
@pytest.mark.gpu
def test_fused_launch_with_many_pairs_on_a_short_clip():
    """16,400 STIs x P=32 at T=4 through the engine's fused kernel: the launch loops over
    STIs beyond its grid (the 2-D launch of an earlier gather overflowed grid y)."""
    import cupy

    from ivy_gpu.engines.base import PairLines
    from ivy_gpu.engines.xp_probe import TimeLastCrop, fused_kernel, fused_twin

    n, p = 16400, 32
    rng = np.random.default_rng(1)
    tl = rng.integers(0, 255, (40, 40, 4), np.uint8)
    lines = PairLines(rng.uniform(2, 30, n), rng.uniform(2, 30, n),
                      rng.integers(0, 3, n).astype(np.int32), rng.uniform(-2, 2, (3, p, 2)),
                      (0, 39, 0, 39), "bilinear")  # fmt: skip
    assert backends.get_engine("cupy").path == "kernels"  # the probe passed
    want, ok = fused_twin(tl, lines, 8, True, np)
    crop = TimeLastCrop(cupy.asarray(tl), 0, 4)
    got, got_ok = fused_kernel(cupy, crop, lines, 8, True, 0)
    assert np.allclose(got.get(), want, atol=2e-5)
    assert np.array_equal(got_ok.get().astype(bool), ok)


@pytest.mark.gpu
def test_gpu_backend_chunks_blur_and_device_stack(texture_factory, small_chunks):
    import cupy

    stack = texture_factory((60, 64, 80), 1.3, 75.0, seed=6)
    x, y = np.linspace(22, 58, 6), np.full(6, 32.0)
    ref = stiv_exhaustive(stack, x, y, sigma=1.0, backend="numba", **KW)
    got = stiv_exhaustive(cupy.asarray(stack), x, y, sigma=1.0, backend="cupy", **KW)
    assert backends.get_engine("cupy").path == "kernels"
    assert np.allclose(got.theta, ref.theta, equal_nan=True)
    assert np.allclose(got.magnitude, ref.magnitude, rtol=1e-4, equal_nan=True)


@pytest.mark.gpu
def test_gpu_remap_matches_opencv():
    from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
    from ivy_gpu.synthetic.sites import Site, SiteSpec

    site = Site(SiteSpec(width_px=640, height_px=360))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    rect = Rectifier(params, site.spec.wse_m, (640, 360))
    frame = np.random.default_rng(2).integers(0, 255, (360, 640), dtype=np.uint8)
    engine = backends.get_engine("cupy")
    frames = [frame, 255 - frame, frame[::-1].copy()]  # through both slots of the upload ring
    out = engine.empty((3, *rect.output_shape), np.uint8)
    before = engine.uploader.count
    for i, f in enumerate(frames):
        engine.remap(f, rect, out[i])
    assert engine.uploader.count - before == 3  # the pinned ring ran, not a plain upload
    for i, f in enumerate(frames):
        diff = np.abs(engine.to_host(out[i]).astype(int) - rect.rectify(f).astype(int))
        assert diff[2:-2, 2:-2].max() <= 2 and diff[2:-2, 2:-2].mean() < 0.3
