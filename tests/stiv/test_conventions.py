"""Hand-checked cases for each STIV convention of the domain spec, section 8."""

import numpy as np
import pytest

from ivy_gpu.angles import ari_to_geo, geo_to_ari
from ivy_gpu.kernels import acf, rays, sti
from ivy_gpu.stiv.driver import stiv_exhaustive
from ivy_gpu.stiv.lines import line_offsets, search_angles


def test_angle_conversions():
    assert geo_to_ari(0) == 90 and geo_to_ari(90) == 0 and geo_to_ari(180) == 270
    assert geo_to_ari(-90) == 180  # negative geo wraps first
    assert ari_to_geo(0) == 90 and ari_to_geo(90) == 0 and ari_to_geo(270) == 180
    g = np.arange(0, 360, 7.5)
    assert np.allclose(ari_to_geo(geo_to_ari(g)), g)


def test_search_fan_is_half_open():
    a = search_angles(phi_origin=90.0, phi_range=90.0, d_phi=1.0)  # geo 90 = ari 0
    assert a.size == 181 and a[0] == -90 and a[-1] == 90
    b = search_angles(phi_origin=90.0, phi_range=90.0, d_phi=0.5)
    assert b[-1] == 90.5


def test_search_line_is_one_sided_and_even():
    p = 32
    phis = np.arange(0, 360, 0.25)
    off = line_offsets(phis, p)
    assert off.shape == (phis.size, p, 2)
    assert np.all(off[:, 0] == 0)  # starts at the node
    # geo 90 (ari 0) points right; ari 90 points up (row decreases)
    assert np.allclose(off[0, 1], [1, 0])
    up = line_offsets(np.array([90.0]), p)[0]
    assert np.allclose(up[1], [0, -1], atol=1e-12)
    spacing = np.hypot(*np.diff(off, axis=1).transpose(2, 0, 1))
    # the default ("unit") lines have 1-px spacing on every angle
    assert np.allclose(spacing, 1.0, atol=1e-12)


@pytest.mark.parametrize("search_line", ["unit", "ivytools"])
def test_usable_lines_and_window_follow_every_sample(search_line):
    """A line is usable when all its samples are inside; the window covers them and the blur."""
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.lines import line_geometry

    rng = np.random.default_rng(21)
    w, h, p, sigma = 90, 60, 16, 1.5
    nodes = np.column_stack([rng.uniform(0, w - 1, 300), rng.uniform(0, h - 1, 300)])
    nodes[:4] = [[0, 0], [w - 1, h - 1], [15, 30], [w - 16, 30]]  # lines ending on an edge
    params = StivParams(num_pixels=p, phi_origin=73.0, phi_range=180, d_phi=7.5,
                        sigma=sigma, search_line=search_line)  # fmt: skip
    lines = line_geometry(nodes, params, w, h)
    sx, sy = lines.sx.reshape(-1, p), lines.sy.reshape(-1, p)
    inside = (sx >= 0).all(1) & (sx <= w - 1).all(1) & (sy >= 0).all(1) & (sy <= h - 1).all(1)
    assert 0 < inside.sum() < inside.size
    assert np.array_equal(lines.pairs, np.flatnonzero(inside))
    y_lo, y_hi, x_lo, x_hi = lines.window
    m = int(4 * sigma + 0.5) + 2
    used_x, used_y = sx[inside], sy[inside]
    assert x_lo == max(0, int(np.floor(used_x.min())) - m)
    assert x_hi == min(w - 1, int(np.ceil(used_x.max())) + m)
    assert y_lo == max(0, int(np.floor(used_y.min())) - m)
    assert y_hi == min(h - 1, int(np.ceil(used_y.max())) + m)


def test_nearest_taps_round_half_down():
    x0, y0, fx, fy = sti.bilinear_taps(
        np.array([2.5, 2.51, 9.0]), np.array([0.5, 0.0, 9.0]), 10, 10, "nearest"
    )
    assert list(x0 + fx) == [2, 3, 9] and list(y0 + fy) == [0, 0, 9]


def test_crop_is_asymmetric():
    p, t = 4, 6
    full = np.arange(7 * 11, dtype=float).reshape(7, 11)
    r0, r1, c0, c1 = rays.crop_bounds(p, t)
    sub = full[r0:r1, c0:c1]
    assert sub.shape == (5, 7)
    # zero lag (P-1, T-1) of the full ACF sits at (P//2 - 1, T//2 - 1) in the crop
    assert sub[p // 2 - 1, t // 2 - 1] == full[p - 1, t - 1]


def test_full_acf_zero_lag_and_symmetry():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, 6, 9)).astype(np.float32)
    r = acf.acf_full_numpy(z)
    assert r.shape == (2, 11, 17)
    assert np.allclose(r[:, 5, 8], 1.0) and np.all(r <= 1 + 1e-12)
    assert np.allclose(r, r[:, ::-1, ::-1])  # R(l) = R(-l)
    # lag (1 pixel, 2 frames) by hand
    lag = np.sum(z[0, 1:, 2:] * z[0, :-1, :-2]) / np.sum(z[0] ** 2)
    assert np.isclose(r[0, 5 + 1, 8 + 2], lag)


def test_rays_on_a_linear_acf_match_the_analytic_integral():
    # On R_sub[i, j] = 10 i + j bilinear interpolation and linear extrapolation are exact,
    # and the trapezoid rule is exact for a linear integrand.
    p, t = 8, 6  # rho_max = min(4, 3) = 3 reaches frame lag -3 < -(T//2 - 1): extrapolation
    r0, r1, c0, c1 = rays.crop_bounds(p, t)
    i, j = np.mgrid[0 : r1 - r0, 0 : c1 - c0]
    sub = (10.0 * i + j)[None]
    rho, theta = rays.polar_grid(p, t, 0.5, 0.5)
    assert rho[-1] == 3 and theta.size == 361
    f = rays.ray_integrals_numpy(sub, p, t, rho, theta, 0.5)[0]
    x0, t0, rm = p // 2 - 1, t // 2 - 1, rho[-1]
    th = np.deg2rad(theta)
    expect = rm * (10 * x0 + t0) + rm**2 / 2 * (10 * np.sin(th) + np.cos(th))
    assert np.allclose(f, expect)


def test_speed_is_tan_theta_times_gsd_over_dt(texture_factory):
    stack = texture_factory((80, 64, 64), 1.2, 90.0)
    r = stiv_exhaustive(
        stack,
        [20.0],
        [32.0],
        num_pixels=16,
        phi_origin=90,
        d_phi=1,
        phi_range=3,
        pixel_gsd=0.05,
        d_t=0.2,
        backend="numpy",
    )
    assert np.isclose(r.magnitude[0], np.tan(np.deg2rad(r.theta[0])) * 0.05 / 0.2)
    assert r.theta[0] % 0.5 == 0  # refine=False stays on the reference grid


def test_lines_leaving_the_image_give_nan_not_zero(texture_factory):
    stack = texture_factory((40, 48, 48), 1.0, 90.0)
    # node at the right edge, fan pointing right: every line leaves the image
    r = stiv_exhaustive(
        stack,
        [46.0, 10.0],
        [24.0, 24.0],
        num_pixels=16,
        phi_origin=90,
        d_phi=1,
        phi_range=10,
        pixel_gsd=0.1,
        d_t=0.1,
        backend="numpy",
        return_sti=True,
    )
    assert np.isnan(r.magnitude[0]) and np.isnan(r.direction[0]) and np.isnan(r.score[0])
    assert np.all(np.isnan(r.sti[0]))
    assert np.isfinite(r.magnitude[1]) and np.all(np.isfinite(r.sti[1]))


def test_constant_no_data_gives_nan(texture_factory):
    stack = texture_factory((40, 48, 48), 1.0, 90.0)
    stack[:, :, 30:] = 0  # no-data strip (constant in time)
    for backend in ("numpy", "numba"):
        r = stiv_exhaustive(
            stack,
            [20.0, 2.0],
            [24.0, 24.0],
            num_pixels=16,
            phi_origin=90,
            d_phi=1,
            phi_range=10,
            pixel_gsd=0.1,
            d_t=0.1,
            backend=backend,
        )
        assert np.isnan(r.magnitude[0]) and np.isnan(r.direction[0])  # lines reach the strip
        assert np.isfinite(r.magnitude[1])


def test_negative_streak_turns_direction(texture_factory):
    # flow to the left (geo 270) searched with a fan around geo 90: the best line points
    # right and sees a negative streak, so the direction turns by 180 and speed is positive
    stack = texture_factory((200, 96, 112), 1.5, 270.0)
    r = stiv_exhaustive(
        stack,
        [40.0, 50.0, 60.0],
        [40.0, 48.0, 56.0],
        num_pixels=40,
        phi_origin=90,
        d_phi=1,
        phi_range=10,
        pixel_gsd=0.1,
        d_t=0.1,
        backend="numba",
        refine=True,
    )
    assert np.all(r.theta > 90)
    assert np.allclose(r.direction, 270.0, atol=1.5) and np.allclose(r.phi, 90.0, atol=1.5)
    assert np.allclose(r.magnitude, 1.5, rtol=0.02)


def test_velocity_threshold(texture_factory):
    stack = texture_factory((80, 64, 64), 2.0, 90.0)
    r = stiv_exhaustive(
        stack,
        [16.0],
        [32.0],
        num_pixels=16,
        phi_origin=90,
        d_phi=1,
        phi_range=3,
        pixel_gsd=0.1,
        d_t=0.1,
        max_vel_threshold=1.0,
        backend="numba",
    )
    assert np.isnan(r.magnitude[0]) and np.isfinite(r.direction[0])


def test_sigma_is_a_spatial_blur_of_that_sigma(texture_factory):
    import scipy.ndimage

    stack = texture_factory((60, 64, 64), 1.0, 90.0)
    kw = dict(
        num_pixels=16, phi_origin=90, d_phi=1, phi_range=5, pixel_gsd=0.1, d_t=0.1, backend="numpy"
    )
    blurred = scipy.ndimage.gaussian_filter(stack.astype(np.float32), sigma=(0, 1.7, 1.7))
    a = stiv_exhaustive(stack, [12.0, 30.0], [20.0, 40.0], sigma=1.7, **kw)
    b = stiv_exhaustive(blurred, [12.0, 30.0], [20.0, 40.0], sigma=0.0, **kw)
    assert np.allclose(a.score, b.score, rtol=1e-5) and np.array_equal(a.theta, b.theta)


@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
def test_gather_samples_the_stack(interp):
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 255, (5, 12, 14), dtype=np.uint8)
    x = np.array([[1.0, 2.25, 13.0]])
    y = np.array([[0.0, 4.5, 11.0]])
    taps = sti.bilinear_taps(x, y, 14, 12, interp)
    got = sti.gather_numpy(stack, *taps)
    assert got.shape == (1, 3, 5)
    assert np.allclose(got[0, 0], stack[:, 0, 1]) and np.allclose(got[0, 2], stack[:, 11, 13])
    if interp == "nearest":
        assert np.allclose(got[0, 1], stack[:, 4, 2])  # 2.25 -> 2, 4.5 -> 4 (half down)
    else:
        s = stack.astype(float)
        want = (
            0.75 * 0.5 * s[:, 4, 2]
            + 0.25 * 0.5 * s[:, 4, 3]
            + 0.75 * 0.5 * s[:, 5, 2]
            + 0.25 * 0.5 * s[:, 5, 3]
        )
        assert np.allclose(got[0, 1], want, rtol=1e-6)


def test_no_valid_line_anywhere_gives_all_nan(texture_factory):
    stack = texture_factory((20, 24, 24), 1.0, 90.0)
    for method in ("acf", "gradient"):
        r = stiv_exhaustive(
            stack,
            [22.0, 23.0],
            [12.0, 3.0],
            num_pixels=16,
            phi_origin=90,
            d_phi=1,
            phi_range=5,
            pixel_gsd=0.1,
            d_t=0.1,
            backend="numba",
            method=method,
            return_sti=True,
        )
        assert np.all(np.isnan(r.magnitude)) and np.all(np.isnan(r.direction))
        assert np.all(np.isnan(r.sti))


def test_the_rays_at_0_and_180_degrees_are_one_still_streak():
    """Both ends of the ray fan mean no motion: a slope of exactly 0, never tan(180) < 0
    (which turned a still node's direction by 180 degrees and flagged it upstream)."""
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.methods import METHODS

    plan = rays.AcfPlan.build(16, 40, 0.5, 0.5)
    assert plan.theta[0] == 0.0 and plan.theta[-1] == 180.0
    idx = np.array([0, len(plan.theta) - 1, 90])
    aux = {"idx": idx.astype(float), "before": np.full(3, np.nan), "after": np.full(3, np.nan)}
    theta, slope = METHODS["acf"].slope(aux, np.ones(3), StivParams(refine=False), plan)
    assert theta.tolist() == [0.0, 180.0, 45.0]
    assert slope[0] == 0.0 and slope[1] == 0.0 and not np.signbit(slope[1])
    assert slope[2] == pytest.approx(1.0)
