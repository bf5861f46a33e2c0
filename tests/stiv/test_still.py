"""Still water is data: a still margin reads 0 and is kept, an eddy counts negative.

Truth: a synthetic site whose first 1.2 m from the left water edge is still water (a
texture that changes in place and moves nowhere) and whose last 0.8 m beside the right
bank is an eddy moving upstream at 0.15 m/s, every node checked against the site's own
velocity at its station; and space-time images built here with known motion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivy_gpu import process_video
from ivy_gpu.hydraulics.discharge import midsection
from ivy_gpu.params import StivParams
from ivy_gpu.stiv.quality import QualityRules, zero_speed_ratio
from ivy_gpu.synthetic.sites import Site, SiteSpec, make_site

NGWERERE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngwerere"
PARAMS = StivParams(num_pixels=32, phi_origin=90.0)


def _row_texture(rng: np.random.Generator, n: int, grain: float = 2.0) -> np.ndarray:
    k = np.fft.rfftfreq(n)
    spec = np.fft.rfft(rng.standard_normal(n)) * np.exp(-2.0 * (np.pi * grain * k) ** 2)
    out = np.fft.irfft(spec, n)
    return out / out.std()


def _moving_sti(speed_px: float, p: int = 32, t: int = 120, seed: int = 0) -> np.ndarray:
    """One STI of a texture moving ``speed_px`` pixels per frame along the line."""
    rng = np.random.default_rng(seed)
    n = 512
    tex = _row_texture(rng, n)
    x = np.arange(p)[:, None] - speed_px * np.arange(t)[None, :] + n / 2
    sti = 128 + 40 * np.interp(x, np.arange(n), tex)
    return (sti + rng.normal(0, 2.0, sti.shape))[None].astype(np.float32)


def _still_sti(p: int = 32, t: int = 120, change_frames: float = 9.0, seed: int = 0):
    """One STI of still water: a static texture plus one that changes in place."""
    rng = np.random.default_rng(seed)
    static = _row_texture(rng, p)
    basis = np.stack([_row_texture(rng, p) for _ in range(16)])
    white = rng.standard_normal((t + 64, 16))
    kern = np.exp(-0.5 * (np.arange(-32, 33) / change_frames) ** 2)
    weights = np.stack([np.convolve(w, kern, "same") for w in white.T], 1)[32 : 32 + t]
    weights /= np.sqrt(np.mean(np.sum(weights**2, 1)))
    sti = 128 + 30 * static[:, None] + 35 * (weights @ basis).T
    return (sti + rng.normal(0, 2.0, sti.shape))[None].astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_speed_ray_scores_like_the_best_on_still_water(seed):
    ratio = zero_speed_ratio(_still_sti(seed=seed), PARAMS)[0]
    assert ratio >= QualityRules().still_ratio, ratio


@pytest.mark.parametrize("speed", [0.4, 0.6, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_zero_speed_ray_scores_low_on_moving_texture(speed, seed):
    ratio = zero_speed_ratio(_moving_sti(speed, seed=seed), PARAMS)[0]
    assert ratio < QualityRules().still_ratio, (speed, ratio)


def test_constant_sti_has_no_ratio():
    sti = np.full((1, 32, 120), 90.0, np.float32)
    assert np.isnan(zero_speed_ratio(sti, PARAMS)[0])


@pytest.fixture(scope="module")
def margin_site(tmp_path_factory):
    d = tmp_path_factory.mktemp("still_margin")
    spec = SiteSpec(still_width_m=1.2, eddy_width_m=0.8, seed=3)
    truth = make_site(d, spec)
    r = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba")
    return Site(spec), truth, r


def test_still_margin_reads_zero_node_by_node_and_is_kept(margin_site):
    site, truth, r = margin_site
    assert r.success, r.error_message
    true_v = site.surface_speed(r.node_stations)
    still = site.still(r.node_stations)
    eddy = r.node_stations > truth["right_edge_m"] - site.spec.eddy_width_m
    flowing = ~still & ~eddy
    assert still.sum() >= 5 and eddy.sum() >= 4 and flowing.sum() >= 10
    src = r.discharge_dataframe["Source"].to_numpy()[1:-1]
    for k in np.flatnonzero(still):
        assert r.node_flags[k] == "still", (k, r.node_flags[k])
        assert r.stiv_normal_velocities[k] == 0.0 and src[k] == "measured", k
    for k in np.flatnonzero(flowing):
        assert "still" not in r.node_flags[k] and src[k] == "measured", (k, r.node_flags[k])
        assert abs(r.stiv_normal_velocities[k] - true_v[k]) <= 0.03 * site.spec.u_max, k


def test_eddy_counts_negative_node_by_node(margin_site):
    site, truth, r = margin_site
    eddy = np.flatnonzero(r.node_stations > truth["right_edge_m"] - site.spec.eddy_width_m)
    src = r.discharge_dataframe["Source"].to_numpy()[1:-1]
    for k in eddy:
        assert "upstream" in r.node_flags[k] and "still" not in r.node_flags[k], k
        assert src[k] == "measured", k
        assert r.stiv_normal_velocities[k] == pytest.approx(-site.spec.eddy_speed, abs=0.025), k
    table = r.discharge_dataframe
    assert (table["Unit Discharge"].to_numpy()[1:-1][eddy[:-1]] < 0).all()


def test_still_margin_discharge_matches_the_truth_at_the_nodes(margin_site):
    site, truth, r = margin_site
    stations = r.discharge_dataframe["Station Distance"].to_numpy()
    depth = r.discharge_dataframe["Depth"].to_numpy()
    v = np.concatenate([[0.0], site.surface_speed(r.node_stations), [0.0]])
    ref = midsection(stations, depth, v, truth["alpha"]).discharge
    assert r.total_discharge == pytest.approx(ref, rel=0.02)
    # and the filled margin of before would have read high: the flowing nodes alone
    assert r.filled_nodes == 0


def test_a_flowing_site_has_no_still_node(video_site):
    d, truth = video_site
    r = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba")
    assert not any("still" in f for f in r.node_flags), r.node_flags


@pytest.mark.skipif(not NGWERERE.is_dir(), reason="needs ../shared/fixtures/ngwerere")
def test_ngwerere_right_margin_still_where_no_part_of_the_clip_shows_a_streak():
    r = process_video(
        NGWERERE / "ngwerere_site.ivy",
        NGWERERE / "ngwerere_20191103.mp4",
        1182.2,
        backend="numba",
    )
    src = r.discharge_dataframe["Source"].to_numpy()[1:-1]
    b = r.node_stations
    # stations 3.09 and 3.23 m: no streak anywhere in the clip: 0 m/s, kept (they were
    # flagged unsteady and filled with 0.24 and 0.12 m/s)
    for k in np.flatnonzero((b > 3.0) & (b < 3.3)):
        assert r.node_flags[k] == "still" and src[k] == "measured", (k, r.node_flags[k])
        assert r.stiv_normal_velocities[k] == 0.0
    # station 2.94 m: a zero-speed ridge over the whole clip, but things float by in its
    # last two time windows (0.43 m/s): not still, and left out as unsteady
    k = int(np.argmin(np.abs(b - 2.94)))
    assert "still" not in r.node_flags[k] and "unsteady" in r.node_flags[k]
    assert src[k] == "excluded"
