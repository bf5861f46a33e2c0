"""STIV against known truth: textures advected at known speed and direction."""

import numpy as np
import pytest

from ivy_gpu.stiv.driver import stiv_exhaustive

# Realistic STIV settings: 48 px search lines, 300 frames, 1 deg fan steps, streak angles
# between about 40 and 70 deg (0.8 to 2.5 px per frame). Nodes stay a line length away
# from the image edges so every angle of the fan is available.
XS = np.array([60.0, 80.0, 100.0, 120.0, 70.0, 110.0])
YS = np.array([70.0, 90.0, 80.0, 100.0, 110.0, 60.0])
CASES = [  # (px per frame, geographic direction, fan centre offset)
    (1.0, 90.0, 7.0),
    (1.3, 70.0, -5.0),
    (2.2, 33.3, 6.0),
    (1.7, 200.0, 3.0),  # flows down-left
    (0.9, 300.0, -8.0),
    (2.3, 135.0, 0.0),
]
# Off-grid streak angles (tan(theta) not on the 0.5 deg grid) for the refinement check.
OFF_GRID = [(1.1, 90.0, 4.0), (1.55, 60.0, -3.0), (2.05, 250.0, 5.0), (0.85, 20.0, 2.0)]


@pytest.mark.parametrize("speed_px,direction,offset", CASES)
def test_refined_speed_within_2_percent_direction_within_1_degree(
    speed_px, direction, offset, texture_factory
):
    stack = texture_factory((300, 180, 180), speed_px, direction, seed=11)
    gsd, dt = 0.03, 1 / 30
    r = stiv_exhaustive(
        stack,
        XS,
        YS,
        num_pixels=48,
        phi_origin=direction + offset,
        d_phi=1,
        phi_range=20,
        pixel_gsd=gsd,
        d_t=dt,
        refine=True,
        backend="numba",
    )
    truth = speed_px * gsd / dt
    assert np.all(np.abs(r.magnitude / truth - 1) < 0.02), r.magnitude / truth
    err = (r.direction - direction + 180) % 360 - 180
    assert abs(np.median(err)) < 1.0, err  # section-average direction
    assert np.all(np.abs(err) < 2.0), err  # single nodes: texture noise of the fan peak


def test_flow_against_the_fan_reports_the_true_direction(texture_factory):
    # fan centred on geo 90, flow towards geo 270: negative streaks turned by 180 deg
    stack = texture_factory((300, 180, 180), 1.5, 270.0, seed=5)
    r = stiv_exhaustive(
        stack,
        XS,
        YS,
        num_pixels=48,
        phi_origin=90,
        d_phi=1,
        phi_range=15,
        pixel_gsd=0.03,
        d_t=1 / 30,
        refine=True,
        backend="numba",
    )
    assert np.all(np.abs(r.magnitude / (1.5 * 0.9) - 1) < 0.02)
    assert np.all(np.abs((r.direction - 270 + 180) % 360 - 180) < 2.0)


def test_refine_reduces_the_speed_error(texture_factory):
    errors = {False: [], True: []}
    for k, (speed_px, direction, offset) in enumerate(OFF_GRID):
        stack = texture_factory((200, 160, 160), speed_px, direction, seed=20 + k)
        for refine in (False, True):
            r = stiv_exhaustive(
                stack,
                XS - 10,
                YS - 10,
                num_pixels=40,
                phi_origin=direction + offset,
                d_phi=1,
                phi_range=20,
                pixel_gsd=1.0,
                d_t=1.0,
                refine=refine,
                backend="numba",
            )
            errors[refine].extend(np.abs(r.magnitude / speed_px - 1))
    assert np.mean(errors[True]) < 0.8 * np.mean(errors[False]), errors


def test_gradient_method_finds_slow_flow(texture_factory):
    # the structure tensor is accurate while streaks move less than a grain per frame
    stack = texture_factory((300, 180, 180), 0.6, 80.0, seed=2, grain=2.5)
    r = stiv_exhaustive(
        stack,
        XS,
        YS,
        num_pixels=48,
        phi_origin=85,
        d_phi=1,
        phi_range=15,
        pixel_gsd=0.03,
        d_t=1 / 30,
        method="gradient",
        refine=True,
        backend="numba",
    )
    truth = 0.6 * 0.9
    assert np.all(np.abs(r.magnitude / truth - 1) < 0.05), r.magnitude / truth
    assert np.all(np.abs(r.direction - 80.0) < 3.0), r.direction
    assert np.all((r.score > 0.5) & (r.score <= 1.0))


def test_the_diagonal_bias_is_ivytools_stretched_line():
    """2.4 px/frame along a 45 deg diagonal: IVyTools' lines of L = P - 1 read (P-1)/P low.

    Where the line's end points round so that L = P - 1 (spec 8.2), IVyTools spreads P samples
    over P - 1 pixels; the speed in pixels along the line is then short by 1/P. The default
    one-sided unit lines do not have it.
    """
    from ivy_gpu.synthetic.scenes import advected_texture

    speed, direction, p = 2.4, 45.0, 48
    stack = advected_texture((300, 180, 180), speed_px=speed, direction_geo=direction, seed=11)
    common = dict(num_pixels=p, phi_origin=direction + 5, d_phi=1, phi_range=20, pixel_gsd=1.0,
                  d_t=1.0, backend="numba")  # fmt: skip
    ivy = stiv_exhaustive(stack, XS, YS, search_line="ivytools", interpolation="nearest",
                          refine=False, **common)  # fmt: skip
    a = np.deg2rad(90.0 - ivy.phi)
    lengths = np.hypot(p * np.cos(a), p * np.sin(a))
    ends = np.hypot((XS + p * np.cos(a)) - XS, (YS - p * np.sin(a)) - YS).astype(int)
    stretched = ends < p
    assert stretched.any() and (~stretched).any() and np.allclose(lengths, p)
    ratio = ivy.magnitude / speed
    # stretched nodes read about 1/P lower than the others on the same texture
    gap = np.mean(ratio[~stretched]) - np.mean(ratio[stretched])
    assert gap == pytest.approx(1.0 / p, abs=0.005)
    unit = stiv_exhaustive(stack, XS, YS, refine=True, **common)
    assert abs(np.nanmean(unit.magnitude / speed - 1)) < 0.005
