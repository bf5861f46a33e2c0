"""Normal component, gap filling, the mid-section table and uncertainty by hand."""

import math

import numpy as np
import pytest

from ivy_gpu.hydraulics.discharge import TABLE_COLUMNS, fill_gaps, midsection, normal_component
from ivy_gpu.hydraulics.uncertainty import UncertaintyInputs, discharge_uncertainty, iso748, ive

LINE = np.array([[10.0, 50.0], [90.0, 50.0]])  # horizontal section in the image


def test_normal_component():
    m = np.array([1.0, 1.0, 2.0, np.nan])
    d = np.array([0.0, 90.0, 30.0, 0.0])  # up (across the line), along it, oblique, missing
    got = normal_component(m, d, LINE)
    assert np.allclose(got[:3], [1.0, 0.0, 2 * math.cos(math.radians(30))])
    assert np.isnan(got[3])
    # the orientation of the normal does not matter (absolute value)
    assert np.allclose(normal_component(m[:3], d[:3] + 180, LINE), got[:3])


def test_fill_gaps_counts_and_interpolates():
    st = np.array([0.0, 1, 2, 3, 4])
    v, n = fill_gaps(st, np.array([0.0, np.nan, 2.0, np.nan, 0.0]))
    assert n == 2 and np.allclose(v, [0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match="fewer than two valid velocities"):
        fill_gaps(st, np.full(5, np.nan))


def test_the_source_column_follows_ivytools_columns():
    st = np.array([0.0, 1.0, 2.0, 3.0])
    src = np.array(["edge", "measured", "excluded", "edge"])
    r = midsection(st, np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.5, np.nan, 0.0]), 0.85, src)
    assert tuple(r.table.columns) == (*TABLE_COLUMNS, "Source")
    assert list(r.table["Source"]) == list(src)
    with pytest.raises(ValueError, match="one source per row"):
        midsection(st, np.ones(4), np.zeros(4), 0.85, np.array(["edge", "guess", "x", "edge"]))
    with pytest.raises(ValueError, match="shape"):
        midsection(st, np.ones(4), np.zeros(4), 0.85, np.array(["edge", "edge"]))


def test_midsection_table_adds_up():
    st = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    d = np.array([0.0, 0.5, 1.0, 0.4, 0.0])
    v = np.array([0.0, 0.6, np.nan, 0.5, 0.0])
    r = midsection(st, d, v, 0.9)
    assert tuple(r.table.columns) == TABLE_COLUMNS
    assert r.filled_nodes == 1
    w = np.array([0.5, 1.25, 1.5, 1.25, 0.5])
    vf = np.array([0.0, 0.6, 0.55, 0.5, 0.0])
    assert r.area == pytest.approx(np.sum(w * d))
    assert r.discharge == pytest.approx(np.sum(0.9 * vf * w * d))
    assert r.table["Area"].sum() == pytest.approx(r.area)
    assert r.table["Unit Discharge"].sum() == pytest.approx(r.discharge)
    # decreasing stations (right-bank start) give the same totals
    r2 = midsection(st[::-1], d[::-1], v[::-1], 0.9)
    assert r2.discharge == pytest.approx(r.discharge) and r2.area == pytest.approx(r.area)


def test_iso748_by_hand():
    d = np.array([0.0, 0.2, 0.5, 0.8, 0.5, 0.0])
    q = np.array([0.0, 0.1, 0.3, 0.4, 0.2, 0.0])
    inp = UncertaintyInputs(rectification_rmse_m=0.05, scene_width_m=5.0)
    u95, contrib = iso748(d, q, inp)
    # hand: n = 6 -> u_m = 0.075 + (0.045 - 0.075) * (6 - 5) / 5 = 0.069
    qs = 1.0
    sq = 0.01 + 0.09 + 0.16 + 0.04  # sum q^2 = 0.30
    u_d2 = (0.01 * 0.015**2 + (0.09 + 0.16 + 0.04) * 0.005**2) / qs**2  # d=0.2 -> 0.015
    terms = [
        0.01**2,
        0.01**2,
        0.03**2,
        (0.05 / 5.0) ** 2,
        0.069**2,
        sq * 0.005**2,
        u_d2,
        sq * 0.07**2,
        sq * 0.08**2,
        0.0,
    ]
    assert u95 == pytest.approx(2 * math.sqrt(sum(terms)), rel=1e-12)
    assert sum(contrib.values()) == pytest.approx(1.0)
    assert contrib["u_rect"] == pytest.approx((0.05 / 5.0) ** 2 / sum(terms))  # its own term


def test_ive_by_hand_and_small_n():
    b = np.array([0.0, 1, 2, 3, 4, 5, 6])
    d = np.array([0.0, 0.4, 0.9, 1.0, 0.8, 0.3, 0.0])
    vs = np.array([0.0, 0.5, 0.8, 1.0, 0.7, 0.4, 0.0])
    alpha = 0.85
    q = alpha * vs * d * 1.0  # unit widths inside
    qt = q.sum()
    inp = UncertaintyInputs(rectification_rmse_m=0.0, scene_width_m=6.0)
    u95, contrib, note = ive(b, d, vs, alpha, q, qt, inp)
    assert note == ""
    # hand computation for i = 2 ... 4, equal spacing -> omega = 1/2, factor 2 * (3/4) = 1.5
    v = alpha * vs
    sd = sum((d[i] - 0.5 * (d[i - 1] + d[i + 1])) ** 2 / 1.5 for i in (2, 3, 4))
    sv = sum((v[i] - 0.5 * (v[i - 1] + v[i + 1])) ** 2 / 1.5 for i in (2, 3, 4))
    s_d = math.sqrt(sd / 2)
    s_v = max(math.sqrt(sv / 2), 0.01 * np.mean(v[1:-1]))  # edges are NaN (v <= 0)
    ud2 = sum((q[i] * s_d / d[i]) ** 2 for i in (2, 3, 4)) / qt**2
    uv2 = sum((q[i] * s_v / v[i]) ** 2 for i in (2, 3, 4)) / qt**2
    ub2 = sum(q[i] ** 2 * 0.005**2 for i in (2, 3, 4)) / qt**2
    us2 = 0.01**2 + 0.01**2 + 0.03**2
    assert u95 == pytest.approx(2 * math.sqrt(us2 + ud2 + uv2 + ub2), rel=1e-12)
    assert sum(contrib.values()) == pytest.approx(1.0)
    bad, _, why = ive(b[:5], d[:5], vs[:5], alpha, q[:5], qt, inp)
    assert math.isnan(bad) and "at least 6 verticals, got 5" in why


def test_uncertainty_from_a_table():
    st = np.linspace(0, 10, 12)
    d = np.sin(np.linspace(0, np.pi, 12)) * 1.2
    v = np.sin(np.linspace(0, np.pi, 12)) * 0.9
    r = midsection(st, d, v, 0.85)
    u = discharge_uncertainty(r.table, r.discharge, UncertaintyInputs(0.02, 10.0))
    assert 0.05 < u.iso_u95 < 0.3 and 0.05 < u.ive_u95 < 0.3 and u.ive_note == ""
