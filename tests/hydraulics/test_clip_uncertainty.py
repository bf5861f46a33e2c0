"""The clip's own time sampling in the stated U95, and the measurement rating (by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ivy_gpu.hydraulics.discharge import midsection
from ivy_gpu.hydraulics.uncertainty import (
    UncertaintyInputs,
    combined_u95,
    discharge_uncertainty,
    rating,
    time_sampling,
)


def test_windows_that_agree_with_the_clip_add_nothing():
    assert time_sampling([2.0, 2.0, 2.0, 2.0], 2.0) == 0.0


def test_window_spread_is_halved_in_variance_for_half_length_windows():
    q = [0.9, 1.1, 0.9, 1.1]  # median 1.0 = the clip's value
    s2 = np.var(q, ddof=1)  # 0.04 / 3
    assert time_sampling(q, 1.0) == pytest.approx(math.sqrt(s2 / 2))


def test_a_clip_value_away_from_its_windows_counts():
    assert time_sampling([1.0, 1.0, 1.0], 0.8) == pytest.approx(0.2 / 0.8)
    assert time_sampling([1.0, 1.2, np.nan, 1.0], 1.0) == pytest.approx(
        math.sqrt(np.var([1.0, 1.2, 1.0], ddof=1) / 2)
    )


def test_too_few_windows_or_no_discharge_gives_nan():
    assert math.isnan(time_sampling([1.0], 1.0))
    assert math.isnan(time_sampling([], 1.0))
    assert math.isnan(time_sampling([1.0, 1.1], 0.0))


def test_combined_is_quadrature_and_iso_alone_without_windows():
    assert combined_u95(0.06, 0.08) == pytest.approx(0.10)
    assert combined_u95(0.06, float("nan")) == 0.06


def test_discharge_uncertainty_states_the_combined_u95():
    b = np.linspace(0, 10, 12)
    d = 1.0 + 0.1 * b
    v = np.full(12, 1.0)
    q = midsection(b, d, v, 0.85)
    windows = [q.discharge * f for f in (0.9, 1.1, 0.95, 1.05)]
    unc = discharge_uncertainty(q.table, q.discharge, UncertaintyInputs(), None, windows)
    t = 2 * math.sqrt(np.var(windows, ddof=1) / 2) / q.discharge
    assert unc.time_u95 == pytest.approx(t)
    assert unc.u95 == pytest.approx(math.hypot(unc.iso_u95, t))
    assert unc.window_discharges == pytest.approx(windows)
    alone = discharge_uncertainty(q.table, q.discharge, UncertaintyInputs())
    assert alone.u95 == alone.iso_u95 and math.isnan(alone.time_u95)


@pytest.mark.parametrize(
    ("u95", "filled", "windows", "grade", "said"),
    [
        (0.08, 2, 4, "good", []),
        (0.10, 2, 4, "good", []),
        (0.12, 0, 4, "fair", ["U95 12.0 % > 10 %"]),
        (0.08, 5, 4, "fair", ["5 of 25 nodes filled"]),
        (0.21, 0, 4, "poor", ["U95 21.0 % > 10 %"]),
        (0.08, 7, 4, "poor", ["7 of 25 nodes filled"]),
        (0.08, 0, 0, "fair", ["clip too short for the time windows"]),
        (float("nan"), 0, 4, "poor", ["no uncertainty"]),
    ],
)
def test_rating_bands(u95, filled, windows, grade, said):
    assert rating(u95, filled, 25, windows) == (grade, said)
