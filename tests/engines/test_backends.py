"""Every backend against the NumPy reference, and the ACF shortcut against the full ACF."""

import numpy as np
import pytest

import ivy_gpu.engines.backends as backends
from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.kernels import acf, rays, sti
from ivy_gpu.stiv.driver import stiv_exhaustive

KW = dict(num_pixels=16, phi_origin=70, d_phi=2, phi_range=20, pixel_gsd=0.1, d_t=0.1)


@pytest.fixture
def scene(texture_factory):
    stack = texture_factory((48, 56, 64), 1.4, 70.0, seed=4)
    x = np.array([10.0, 25.5, 40.2, 3.0, 60.0])
    y = np.array([40.0, 30.0, 33.3, 20.0, 2.0])
    return stack, x, y


def _same(a, b, rtol=2e-4):
    for name in ("magnitude", "direction", "theta", "phi"):
        assert np.allclose(getattr(a, name), getattr(b, name), rtol=rtol, equal_nan=True), name
    assert np.allclose(a.score, b.score, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_numba_matches_numpy(scene, refine, interpolation, small_chunks):
    stack, x, y = scene
    ref = stiv_exhaustive(
        stack, x, y, refine=refine, interpolation=interpolation, backend="numpy", **KW
    )
    got = stiv_exhaustive(
        stack, x, y, refine=refine, interpolation=interpolation, backend="numba", **KW
    )
    assert got.backend == "numba" and ref.backend == "numpy"
    _same(ref, got)
    assert np.isnan(ref.magnitude[4])  # node in the corner: lines leave the image


def test_float32_stack_and_sigma_agree(scene):
    stack, x, y = scene
    f = stack.astype(np.float32)
    ref = stiv_exhaustive(f, x, y, sigma=1.0, backend="numpy", **KW)
    got = stiv_exhaustive(f, x, y, sigma=1.0, backend="numba", **KW)
    _same(ref, got)


@pytest.mark.parametrize("method", ["acf", "gradient"])
def test_xp_engine_on_numpy_matches_reference(scene, monkeypatch, method):
    """The CuPy engine's code path, run with NumPy as its array namespace."""
    stack, x, y = scene
    ref = stiv_exhaustive(stack, x, y, method=method, backend="numpy", return_sti=True, **KW)
    monkeypatch.setattr(backends, "get_engine", lambda name: XpEngine(np, use_cuda_kernels=False))
    got = stiv_exhaustive(stack, x, y, method=method, backend="cupy", return_sti=True, **KW)
    _same(ref, got)
    assert np.allclose(ref.sti, got.sti, equal_nan=True)


def test_gradient_method_agrees_across_cpu_backends(scene):
    stack, x, y = scene
    ref = stiv_exhaustive(stack, x, y, method="gradient", backend="numpy", **KW)
    got = stiv_exhaustive(stack, x, y, method="gradient", backend="numba", **KW)
    _same(ref, got, rtol=1e-5)


def test_acf_shortcut_equals_reference_window():
    rng = np.random.default_rng(8)
    for p, t in [(16, 40), (32, 300), (8, 6), (12, 13)]:
        z, _ = sti.standardize_numpy(rng.standard_normal((3, p, t)).astype(np.float32))
        plan = rays.AcfPlan.build(p, t, 0.5, 0.5)
        op = plan.operator
        full = acf.acf_full_numpy(z)
        want = full[:, p - 1 : p + op.lx_max, t - 1 + op.lt_lo : t + op.lt_hi]
        import scipy.fft

        fast_np = acf.acf_window_xp(z, op.lx_max, op.lt_lo, op.lt_hi, np, scipy.fft)
        fast_nb = acf.acf_window_xp(
            z, op.lx_max, op.lt_lo, op.lt_hi, np, scipy.fft, acf.cross_spectra_numba
        )
        assert np.allclose(fast_np, want, atol=2e-6)
        assert np.allclose(fast_nb, want, atol=2e-6)
        # and the folded ray operator reproduces the reference ray integrals
        r0, r1, c0, c1 = rays.crop_bounds(p, t)
        f_ref = rays.ray_integrals_numpy(full[:, r0:r1, c0:c1], p, t, plan.rho, plan.theta, 0.5)
        f_fast = fast_np.reshape(3, -1) @ op.weights
        assert np.allclose(f_fast, f_ref, atol=2e-5 * plan.rho[-1])


def test_cuda_kernels_match_numpy_under_simulator_or_gpu():
    from numba import cuda

    assert cuda.is_available(), "neither a CUDA GPU nor numba-cuda's simulator is available"
    rng = np.random.default_rng(9)
    stack = rng.integers(0, 255, (6, 9, 10), dtype=np.uint8)
    x = rng.uniform(0, 9, (3, 4))
    y = rng.uniform(0, 8, (3, 4))
    taps = sti.bilinear_taps(x, y, 10, 9, "bilinear")
    want = sti.gather_numpy(stack, *taps)
    d = [cuda.to_device(a) for a in (stack, *taps)]
    out = cuda.device_array(want.shape, dtype=np.float32)
    sti.gather_cuda(*d, out)
    got = out.copy_to_host()
    assert np.allclose(got, want, rtol=1e-6)
    got[1, 2] = 7.0  # a constant row
    z_want, v_want = sti.standardize_numpy(got)
    d_sti = cuda.to_device(got)
    d_valid = cuda.to_device(np.ones(3, dtype=np.uint8))
    sti.standardize_cuda(d_sti, d_valid)
    assert np.array_equal(d_valid.copy_to_host().astype(bool), v_want)
    # constant rows become 0 (the STI is flagged invalid), like the fused CPU kernel
    assert np.allclose(d_sti.copy_to_host(), np.nan_to_num(z_want), atol=1e-5)


def test_xp_engine_with_cuda_kernels_end_to_end(monkeypatch, texture_factory):
    """The GPU engine with its CUDA kernels (simulator in CI) on a tiny scene."""
    from numba import cuda

    assert cuda.is_available(), "neither a CUDA GPU nor numba-cuda's simulator is available"
    stack = texture_factory((12, 20, 24), 1.0, 90.0, seed=1)
    kw = dict(num_pixels=6, phi_origin=90, d_phi=5, phi_range=5, pixel_gsd=0.1, d_t=0.1)
    ref = stiv_exhaustive(stack, [8.0, 12.0], [10.0, 9.0], backend="numpy", **kw)
    monkeypatch.setattr(backends, "get_engine", lambda name: XpEngine(np, use_cuda_kernels=True))
    got = stiv_exhaustive(stack, [8.0, 12.0], [10.0, 9.0], backend="cupy", **kw)
    _same(ref, got)


@pytest.mark.gpu
def test_cupy_backend_matches_numpy_on_gpu(texture_factory):
    stack = texture_factory((120, 96, 96), 1.4, 70.0, seed=4)
    x = np.linspace(20, 60, 9)
    y = np.full(9, 50.0)
    for method in ("acf", "gradient"):
        ref = stiv_exhaustive(stack, x, y, method=method, backend="numpy", refine=True, **KW)
        got = stiv_exhaustive(stack, x, y, method=method, backend="cupy", refine=True, **KW)
        assert got.backend == "cupy" and backends.get_engine("cupy").path == "kernels"
        _same(ref, got)


def test_auto_picks_numba_without_gpu(monkeypatch):
    monkeypatch.setattr(backends, "gpu_status", lambda: (False, "no CUDA device"))
    assert backends.resolve_backend("auto") == "numba"
    with pytest.raises(ValueError, match="backend: 'cupy' is not usable here: no CUDA"):
        backends.resolve_backend("cupy")
    monkeypatch.setattr(backends, "gpu_status", lambda: (True, "1 CUDA device(s)"))
    assert backends.resolve_backend("auto") == "cupy"


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int64])  # int64: NumPy's copy
@pytest.mark.parametrize(
    "shape, window",
    [
        ((9, 11, 13), None),
        ((70, 40, 75), (3, 38, 5, 70)),  # sizes that are no multiple of a block
        ((33, 5, 64), (0, 4, 31, 63)),
        ((5, 6, 7), (2, 9, 3, 12)),  # past the edge: clipped as a slice is
        ((5, 6, 7), (7, 9, 1, 3)),  # wholly past it: empty
    ],
)
def test_time_last_is_the_moveaxis_copy_of_its_window(shape, window, dtype):
    rng = np.random.default_rng(3)
    stack = (rng.random(shape) * 255).astype(dtype)
    y0, y1, x0, x1 = window or (0, shape[1] - 1, 0, shape[2] - 1)
    crop = stack[:, y0 : y1 + 1, x0 : x1 + 1]
    packed = sti.time_last(stack, window)
    h, w = crop.shape[1:]
    assert packed.rows.dtype == dtype and packed.index.shape == (h, w)
    assert np.array_equal(packed.rows, np.moveaxis(crop, 0, -1).reshape(h * w, shape[0]))
    assert np.array_equal(packed.index.ravel(), np.arange(h * w))


def test_time_last_refuses_a_window_before_the_stack():
    with pytest.raises(ValueError, match="outside the stack"):
        sti.time_last(np.zeros((3, 4, 4), np.uint8), (-1, 2, 0, 2))


def test_fused_time_last_gather_matches_the_reference():
    rng = np.random.default_rng(12)
    stack = rng.integers(0, 255, (9, 11, 13), dtype=np.uint8)
    stack[:, 5, 2:6] = 77  # constant in time: a no-data row for some lines
    x = np.array([[1.2, 2.0, 3.7, 4.0], [6.5, 7.25, 8.0, 9.9]])
    y = np.array([[5.0, 5.0, 5.0, 5.0], [1.5, 2.5, 3.5, 9.0]])
    taps = sti.bilinear_taps(x, y, 13, 11, "bilinear")
    hwt = sti.time_last(stack)
    raw, _ = sti.gather_numba(hwt, *taps)
    # packing only the pixels the taps read gives the same STIs
    cells = np.unique(
        np.concatenate(
            [(taps[1] + dy) * 13 + taps[0] + dx for dy in (0, 1) for dx in (0, 1)]
        ).ravel()
    )
    packed = sti.pack_pixels(stack, 0, 0, 11, 13, cells)
    assert packed.rows.shape[0] == cells.size < 11 * 13
    assert np.array_equal(sti.gather_numba(packed, *taps)[0], raw)
    assert np.allclose(raw, sti.gather_numpy(stack, *taps), rtol=1e-6)
    z, valid = sti.gather_numba(hwt, *taps, n_out=16, standardize=True)
    z_ref, valid_ref = sti.standardize_numpy(sti.gather_numpy(stack, *taps))
    assert list(valid) == list(valid_ref) == [False, True]
    assert np.allclose(z[1, :, :9], z_ref[1], atol=1e-5)
    assert np.all(z[:, :, 9:] == 0)  # FFT padding


def test_constant_rows_are_no_data_whatever_the_rounding():
    # a static (bank) row sampled between pixels: float32 rounding may differ by an ulp
    # between vectorized and scalar code, which must not make it "textured"
    stack = np.full((40, 6, 8), 119, dtype=np.uint8)
    stack[:, :, 5:] = 121
    taps = sti.bilinear_taps(np.array([[4.56089, 2.0]]), np.array([[1.3, 2.0]]), 8, 6, "bilinear")
    _, v_numba = sti.gather_numba(sti.time_last(stack), *taps, standardize=True)
    _, v_numpy = sti.standardize_numpy(sti.gather_numpy(stack, *taps))
    assert not v_numba[0] and not v_numpy[0]


@pytest.mark.parametrize(
    ("frames", "pixel_fft"), [((0, 48), False), ((5, 44), False), ((0, 48), True), ((5, 44), True)]
)
def test_fused_numba_scores_match_the_chunked_steps(
    texture_factory, frames, pixel_fft, monkeypatch
):
    """One pass per STI (gather to ray peaks in one compiled loop, FFTs by Rocket-FFT)
    against the chunked steps (gather, SciPy FFTs, cross-spectra, BLAS ray product).

    13 lines (not a multiple of the per-thread block), one crossing a patch that is
    constant in time (an invalid STI), on the whole stack and on a frame window (the
    strided re-measurement reads such non-contiguous views); with the cross-spectra as a
    direct sum over rows and by FFT along the pixel axis (the path of long lines).
    """
    from ivy_gpu.engines.numba_engine import NumbaEngine
    from ivy_gpu.kernels import acf_fused

    monkeypatch.setattr(acf_fused, "PIXEL_FFT_MIN_PIXELS", 16 if pixel_fft else 10_000)
    assert bool(acf_fused.pixel_fft_length(16, 9)) == pixel_fft

    assert acf_fused.AVAILABLE  # a dependency: the fast path must not go missing quietly
    stack = texture_factory((48, 40, 60), 1.3, 60.0, seed=9)
    stack[:, 30:34, 5:40] = 90
    rng = np.random.default_rng(21)
    x = rng.uniform(2, 40, (13, 1)) + np.arange(16)[None, :] * 0.9
    y = rng.uniform(2, 26, (13, 1)) + np.arange(16)[None, :] * 0.4
    x[12], y[12] = 10 + np.arange(16) * 0.9, 31.5  # along the constant patch
    taps = sti.bilinear_taps(x, y, 60, 40, "bilinear")
    engine = NumbaEngine()
    handle = engine.time_slice(sti.time_last(stack), *frames)
    plan = rays.AcfPlan.build(16, frames[1] - frames[0], 1.0, 2.0)
    assert engine.fused
    fused = engine.acf_scores(handle, taps, plan)
    engine.fused = False
    chunked = engine.acf_scores(handle, taps, plan)
    assert np.array_equal(fused[0], chunked[0])
    for got, ref in zip(fused[1:], chunked[1:], strict=True):
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(fused[1][12]) and np.isfinite(fused[1][:12]).all()


def test_sparse_rays_equal_the_dense_operator():
    op = rays.AcfPlan.build(32, 300, 1.0, 1.0).operator
    ptr, lag, w = rays.sparse_rays(op.weights)
    win = np.random.default_rng(3).standard_normal(op.weights.shape[0]).astype(np.float32)
    got = np.array(
        [np.dot(w[ptr[q] : ptr[q + 1]], win[lag[ptr[q] : ptr[q + 1]]]) for q in range(ptr.size - 1)]
    )
    assert np.allclose(got, win @ op.weights, rtol=1e-5, atol=1e-5)
    assert lag.size < 0.15 * op.weights.size  # why the fused path sums lists, not the matrix


def test_fused_gradient_equals_gather_then_orientation(texture_factory):
    """The numba engine's one-pass gradient scores equal the gather + orientation steps."""
    from ivy_gpu.kernels import structure_tensor

    stack = texture_factory((48, 40, 60), 1.3, 60.0, seed=9)
    stack[:, 30:34, 5:40] = 90  # constant in time: an invalid STI
    rng = np.random.default_rng(21)
    x = rng.uniform(2, 40, (13, 1)) + np.arange(16)[None, :] * 0.9
    y = rng.uniform(2, 26, (13, 1)) + np.arange(16)[None, :] * 0.4
    x[12], y[12] = 10 + np.arange(16) * 0.9, 31.5
    taps = sti.bilinear_taps(x, y, 60, 40, "bilinear")
    packed = sti.time_last(stack)
    slope, coherence = structure_tensor.orientation_packed_numba(
        packed, *taps, sti.CONSTANT_ROW_STD
    )
    raw, _ = sti.gather_numba(packed, *taps)
    want_slope, want_coherence = structure_tensor.orientation_numba(raw)
    _, valid = sti.gather_numba(packed, *taps, standardize=True)
    assert list(valid) == [True] * 12 + [False]
    assert np.array_equal(slope, want_slope)
    assert np.array_equal(coherence, np.where(valid, want_coherence, np.nan), equal_nan=True)
