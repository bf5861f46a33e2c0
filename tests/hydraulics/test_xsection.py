"""Cross-section survey: the real AC3 file, water edges, depths and analytic channels."""

import numpy as np
import pytest
import scipy.io

from ivy_gpu.hydraulics.discharge import midsection
from ivy_gpu.hydraulics.xsection import CrossSection, read_ac3, write_ac3


def test_boneyard_ac3_is_a_6m_rectangle(data_dir):
    cs = read_ac3(data_dir / "boneyard" / "Cross-Section_AC3_meters.mat")
    assert cs.units == "English"
    assert cs.stations[-1] - cs.stations[0] == pytest.approx(19.686 * 0.3048)
    assert cs.stations[0] == cs.stations[1]  # vertical wall: duplicate stations
    wse = 318.211 * 0.3048  # the sample batch row, in feet
    lo, hi = cs.water_edges(wse)
    assert (lo, hi) == pytest.approx((0.0, 6.0002928))
    depth = wse - 315.39 * 0.3048
    # walls resolve to the wetted side: full depth at both water edges
    assert np.allclose(cs.depth_at([lo, 3.0, hi], wse), depth, atol=1e-3)
    assert cs.wetted_area(wse) == pytest.approx(6.0002928 * depth, rel=1e-4)


def test_wse_outside_the_section_is_a_clear_error(data_dir):
    cs = read_ac3(data_dir / "boneyard" / "Cross-Section_AC3_meters.mat")
    with pytest.raises(
        ValueError,
        match=r"Cross-Section_AC3_meters.mat: water-surface elevation "
        r"101.000 m is above a bank",
    ):
        cs.water_edges(101.0)
    with pytest.raises(ValueError, match="at or below the lowest bed point"):
        cs.water_edges(90.0)


def test_ac3_without_survey_and_round_trip(tmp_path):
    bad = tmp_path / "empty.mat"
    scipy.io.savemat(str(bad), {"units": "Metric", "survey_names": np.array([])})
    with pytest.raises(ValueError, match="empty.mat: AreaComp file has no survey"):
        read_ac3(bad)
    (tmp_path / "junk.mat").write_bytes(b"not matlab")
    with pytest.raises(ValueError, match="junk.mat: not a readable AreaComp .mat file"):
        read_ac3(tmp_path / "junk.mat")
    cs = CrossSection(np.array([0.0, 1, 2, 3]), np.array([5.0, 3, 3.2, 5]), "English")
    write_ac3(tmp_path / "x.mat", cs)
    back = read_ac3(tmp_path / "x.mat")
    assert back.units == "English" and np.allclose(back.stations, cs.stations)
    assert np.allclose(back.elevations, cs.elevations)


def _midsection_by_hand(b, d, v, alpha):
    w = np.empty_like(b)
    w[1:-1] = (b[2:] - b[:-2]) / 2
    w[0], w[-1] = (b[1] - b[0]) / 2, (b[-1] - b[-2]) / 2
    return float(np.sum(w * d)), float(np.sum(alpha * v * w * d))


@pytest.mark.parametrize("shape", ["rectangle", "trapezoid", "parabola"])
def test_analytic_channels(shape):
    wse, width = 10.0, 8.0
    if shape == "rectangle":
        b = np.array([0.0, 0.0, width, width])
        z = np.array([12.0, 7.0, 7.0, 12.0])
        area = width * 3.0
        depth = lambda s: np.full_like(s, 3.0)  # noqa: E731
    elif shape == "trapezoid":  # 2 m flat bottom at 7 m, 1:1 side slopes up to 12 m
        b = np.array([0.0, 5.0, 7.0, 12.0])
        z = np.array([12.0, 7.0, 7.0, 12.0])
        area = 3.0 * 2.0 + 3.0**2  # bottom width * d + slope * d^2
        depth = lambda s: np.clip(np.minimum(np.minimum(3.0, s - 2.0), 10.0 - s), 0, None)  # noqa
    else:  # z = 7 + s^2 / 4 about s = 0 (stations -5 ... 5 shifted by 5)
        s = np.linspace(-5, 5, 2001)
        b = s + 5
        z = 7 + s**2 / 4
        area = 4 / 3 * np.sqrt(12) * 3.0  # 2/3 * top width * depth
        depth = lambda q: np.maximum(wse - (7 + (q - 5) ** 2 / 4), 0)  # noqa: E731
    cs = CrossSection(b, z)
    lo, hi = cs.water_edges(wse)
    assert cs.wetted_area(wse) == pytest.approx(area, rel=1e-5 if shape == "parabola" else 1e-12)
    st = np.linspace(lo, hi, 41)
    d = cs.depth_at(st, wse)
    assert np.allclose(d, depth(st), atol=1e-5)
    v = 0.3 + 0.05 * np.sin(st)
    v[0] = v[-1] = 0.0
    res = midsection(st, d, v, 0.85)
    a_hand, q_hand = _midsection_by_hand(st, depth(st), v, 0.85)
    assert res.area == pytest.approx(a_hand, rel=1e-6)
    assert res.discharge == pytest.approx(q_hand, rel=1e-6)
    if shape == "rectangle":
        assert res.area == pytest.approx(area, rel=1e-12)  # mid-section is exact here
