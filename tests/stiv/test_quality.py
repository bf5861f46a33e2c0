"""Results a hydrologist can trust: IVyTools search lines, signed flow, node flags, no silent zeros.

Truth comes from the formula of the domain specification (section 8.2 / 14.22) computed
here independently, synthetic scenes with known motion, and the real Ngwerere clip.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ivy_gpu.engines.backends as backends
from ivy_gpu import process_video
from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.params import StivParams, VideoConfig
from ivy_gpu.stiv.driver import stiv_exhaustive
from ivy_gpu.stiv.lines import line_geometry
from ivy_gpu.stiv.quality import QualityRules, assess, downstream_normal, signed_normal

NGWERERE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngwerere"


def _ivytools_line(x: float, y: float, phi_ari: float, p: int):
    """IVyTools' extract_space_time_image geometry, written out as the spec gives it."""
    x1 = p * math.cos(math.radians(phi_ari))
    y1 = -p * math.sin(math.radians(phi_ari))
    ends_x, ends_y = np.array([x, x + x1]), np.array([y, y + y1])
    length = int(np.hypot(abs(np.diff(ends_y)[0]), abs(np.diff(ends_x)[0])))
    xs, ys = np.linspace(x, x + x1, length + 1), np.linspace(y, y + y1, length + 1)
    if xs.size % 2:
        xs, ys = xs[:-1], ys[:-1]
    return xs, ys, length


def test_ivytools_lines_follow_the_absolute_coordinate_formula():
    p = 32
    nodes = np.array([[100.3, 200.1], [517.77, 333.9], [64.0, 64.0]])
    phis = np.arange(60.0, 121.0, 1.0)
    params = StivParams(num_pixels=p, phi_origin=0.0, phi_range=30.0, search_line="ivytools")
    lines = line_geometry(nodes, params, 2000, 2000)
    lengths = set()
    for i, (x, y) in enumerate(nodes):
        for m, phi in enumerate(phis):
            xs, ys, length = _ivytools_line(x, y, phi, p)
            lengths.add(length)
            assert np.array_equal(lines.sx[i, m], xs) and np.array_equal(lines.sy[i, m], ys)
    assert lengths == {p - 1, p}  # both the stretched and the unit lines occur
    unit = line_geometry(nodes, params.replace(search_line="unit"), 2000, 2000)
    step = np.hypot(np.diff(unit.sx, axis=-1), np.diff(unit.sy, axis=-1))
    assert np.allclose(step, 1.0)


def test_ivytools_mode_is_the_same_on_every_backend(texture_factory, monkeypatch):
    stack = texture_factory((60, 80, 90), 1.3, 80.0, seed=5)
    x, y = [30.3, 41.7, 52.1], [40.2, 38.9, 44.4]
    kw = dict(num_pixels=16, phi_origin=80, d_phi=1, phi_range=8, pixel_gsd=0.1, d_t=0.1)
    kw.update(search_line="ivytools", interpolation="nearest")
    ref = stiv_exhaustive(stack, x, y, backend="numpy", **kw)
    got = stiv_exhaustive(stack, x, y, backend="numba", **kw)
    monkeypatch.setattr(backends, "get_engine", lambda name: XpEngine(np, False))
    xp = stiv_exhaustive(stack, x, y, backend="cupy", **kw)
    for r in (got, xp):
        assert np.array_equal(r.theta, ref.theta) and np.array_equal(r.phi, ref.phi)
        assert np.allclose(r.magnitude, ref.magnitude, rtol=1e-6)


def test_ivytools_mode_reads_p_minus_one_over_p_on_stretched_lines(texture_factory):
    """One search angle: a stretched line reads (P-1)/P of the truth, a unit line the truth."""
    p, speed = 32, 1.2
    stack = texture_factory((240, 120, 160), speed, 63.0, seed=9)
    params = StivParams(num_pixels=p, phi_origin=63.0, phi_range=0.0, search_line="ivytools")
    x = np.linspace(40.0, 70.0, 400)
    y = np.full_like(x, 70.25)
    lines = line_geometry(np.column_stack([x, y]), params, 160, 120)
    step = np.hypot(*(lines.sx[:, 0, 1] - lines.sx[:, 0, 0], lines.sy[:, 0, 1] - lines.sy[:, 0, 0]))
    stretched = np.isclose(step, p / (p - 1))
    assert stretched.any() and (~stretched).any()
    pick = np.r_[np.flatnonzero(stretched)[:4], np.flatnonzero(~stretched)[:4]]
    kw = dict(num_pixels=p, phi_origin=63.0, d_phi=1, phi_range=0, pixel_gsd=1.0, d_t=1.0)
    comp = stiv_exhaustive(
        stack, x[pick], y[pick], search_line="ivytools", refine=True, backend="numba", **kw
    )
    unit = stiv_exhaustive(stack, x[pick], y[pick], refine=True, backend="numba", **kw)
    ratio = comp.magnitude / unit.magnitude
    # (P-1)/P = 0.969 is the spec's first-order effect; the smoother (interpolated)
    # stretched STI reads a further ~0.8 % low here (measured 0.961)
    assert np.allclose(ratio[:4], (p - 1) / p, atol=0.01)
    assert np.all(ratio[:4] < 0.975)
    assert np.allclose(ratio[4:], 1.0, atol=0.002)
    assert np.allclose(unit.magnitude, speed, rtol=0.02)


def test_signed_normal_points_downstream_and_upstream_is_negative():
    line = np.array([[10.0, 50.0], [10.0, 10.0]])  # drawn up the image (northward)
    mags = np.array([1.0, 1.0, 0.5])
    dirs = np.array([90.0, 90.0, 270.0])  # east, east, west
    n, warn = downstream_normal(line, "left", mags, dirs)
    # a line drawn northward from the left bank: downstream is to its left = west...
    # ...but most vectors go east, so the flow decides and a warning says so
    assert warn is not None and np.allclose(n, [1.0, 0.0])
    vn = signed_normal(mags, dirs, n)
    assert np.allclose(vn, [1.0, 1.0, -0.5])
    n_right, warn_right = downstream_normal(line, "right", mags, dirs)
    assert warn_right is None and np.allclose(n_right, [1.0, 0.0])


def _sr(n, **kw):
    base = dict(
        valid_line=np.ones(n, bool),
        over_threshold=np.zeros(n, bool),
        fan_edge=np.zeros(n, bool),
        score=np.full(n, 10.0),
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_planted_bad_node_is_flagged_excluded_and_filled():
    stations = np.linspace(0.5, 5.5, 11)
    vn = 0.8 * (1 - ((stations - 3.0) / 3.0) ** 2)
    vn[4] = -1.5  # a planted upstream spike, as the Ngwerere station-0.79 node
    sr = _sr(11, score=np.r_[np.full(8, 10.0), 3.0, 10.0, 10.0])
    windows = np.tile(vn, (4, 1))
    q = assess(sr, vn, stations, windows, 30.0, QualityRules())
    assert "outlier" in q.flags[4] and "upstream" in q.flags[4] and q.excluded[4]
    assert q.flags[8] == ("low_score",) and q.excluded[8]
    assert sum(q.excluded) == 2 and q.counts()["valid"] == 9
    from ivy_gpu.hydraulics.discharge import midsection

    edges = np.r_[0.0, stations, 6.0]
    used = np.where(q.excluded, np.nan, vn)
    res = midsection(edges, np.full(13, 1.0), np.r_[0.0, used, 0.0], 1.0)
    assert res.filled_nodes == 2
    assert res.table["Surface Velocity"].iloc[5] == pytest.approx(0.5 * (vn[3] + vn[5]))


def test_upstream_patch_gives_negative_local_discharge_and_the_flag(texture_factory):
    """Half the section moves downstream (east), the other half back (west): an eddy."""
    east = texture_factory((160, 96, 120), 1.2, 90.0, seed=3)
    west = texture_factory((160, 96, 120), 0.8, 270.0, seed=4)
    stack = east.copy()
    stack[:, 48:, :] = west[:, 48:, :]
    y = np.array([14.0, 22.0, 30.0, 38.0, 58.0, 66.0, 74.0, 82.0])
    x = np.full(y.size, 60.0)
    r = stiv_exhaustive(
        stack,
        x,
        y,
        num_pixels=32,
        phi_origin=90,
        d_phi=2,
        phi_range=180,
        pixel_gsd=1.0,
        d_t=1.0,
        refine=True,
        backend="numba",
    )
    line = np.array([[60.0, 5.0], [60.0, 90.0]])  # drawn down the image from the left bank
    n, warn = downstream_normal(line, "left", r.magnitude, r.direction)
    assert warn is None and np.allclose(n, [1.0, 0.0])  # downstream = east
    vn = signed_normal(r.magnitude, r.direction, n)
    assert np.allclose(vn[:4], 1.2, rtol=0.05) and np.allclose(vn[4:], -0.8, rtol=0.05)
    q = assess(_sr(8, score=r.score), vn, y, np.tile(vn, (4, 1)), 180.0, QualityRules())
    assert all("upstream" in f for f in q.flags[4:]) and not any(q.flags[:4])
    assert not q.excluded.any()  # a real eddy counts (negative), it is not filled away


def test_glare_burst_in_part_of_the_clip_does_not_decide_a_node(texture_factory):
    """A saturated patch over one node for the first 30 % of the clip."""
    stack = texture_factory((200, 80, 120), 1.1, 90.0, seed=8).copy()
    stack[:60, 20:60, 30:70] = 255
    x, y = np.array([40.0, 85.0]), np.array([40.0, 40.0])
    params = StivParams(num_pixels=20, phi_origin=90, phi_range=10, d_phi=1)
    from ivy_gpu.frames.stack import LoadedVideo
    from ivy_gpu.stiv.driver import run_stiv
    from ivy_gpu.stiv.quality import window_normals

    engine = backends.get_engine("numba")
    sr = run_stiv(stack, x, y, params, pixel_gsd=1.0, d_t=1.0, backend=engine)
    n = np.array([1.0, 0.0])
    vn = signed_normal(sr.magnitude, sr.direction, n)
    rect = SimpleNamespace(pixel_gsd=1.0)
    loaded = LoadedVideo(stack, stack[0], np.arange(200.0), 1.0, rect)
    windows = window_normals(loaded, np.column_stack([x, y]), sr, params, engine, n, QualityRules())
    q = assess(_sr(2, score=sr.score), vn, x, windows, 10.0, QualityRules())
    # the window median sees the flow; the glare node is either excluded or right
    assert abs(q.window_median[0] - 1.1) < 0.06
    assert q.excluded[0] or abs(vn[0] - 1.1) < 0.06
    assert not q.excluded[1] and abs(vn[1] - 1.1) < 0.06


def _black_video(path: Path, size: tuple[int, int], frames: int = 40) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            f = av.VideoFrame.from_ndarray(np.zeros((size[1], size[0], 3), np.uint8), "rgb24")
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return path


def test_black_video_fails_at_stiv_not_as_zero_discharge(video_site, tmp_path):
    d, truth = video_site
    video = _black_video(tmp_path / "black.mp4", (1280, 720))
    r = process_video(d / "site.ivy", video, truth["wse_m"], backend="numba")
    assert not r.success and r.error_stage == "stiv"
    assert "0 of 25 nodes gave a valid velocity (need 13)" in r.error_message


def test_min_valid_fraction_and_too_few_frames(video_site):
    d, truth = video_site
    video = d / truth["video"]
    with pytest.raises(ValueError, match="max_frames: must be an integer >= 4"):
        process_video(d / "site.ivy", video, truth["wse_m"], max_frames=3)
    with pytest.raises(ValueError, match="min_valid_fraction"):
        process_video(d / "site.ivy", video, truth["wse_m"], min_valid_fraction=1.5)
    r = process_video(d / "site.ivy", video, truth["wse_m"], max_frames=5, backend="numba")
    assert not r.success and r.error_stage == "stiv" and "nodes gave a valid" in r.error_message
    with pytest.raises(ValueError, match="max_frames"):
        VideoConfig(video, 100.0, max_frames=2)


def test_compat_mode_runs_through_the_pipeline_and_moves_q_a_little(video_site):
    d, truth = video_site
    kw = dict(backend="numba", max_frames=60)
    a = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], **kw)
    b = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], compat="ivytools", **kw)
    assert a.success and b.success
    assert b.total_discharge != a.total_discharge
    assert abs(b.total_discharge / truth["discharge_m3s"] - 1) < 0.1
    with pytest.raises(ValueError, match="compat"):
        process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], compat="matlab")


@pytest.mark.skipif(not NGWERERE.is_dir(), reason="needs ../shared/fixtures/ngwerere")
def test_ngwerere_flags_the_upstream_node_and_stabilization_explains_it(tmp_path):
    args = (NGWERERE / "ngwerere_site.ivy", NGWERERE / "ngwerere_20191103.mp4", 1182.2)
    kw = dict(alpha=0.85, backend="numba")
    r = process_video(*args, tmp_path, stabilize="off", **kw)
    assert r.success, r.error_message
    k = int(np.argmin(np.abs(r.node_stations - 0.79)))
    assert "outlier" in r.node_flags[k] and "upstream" in r.node_flags[k]
    assert r.stiv_normal_velocities[k] < -1.0  # the 1.58 m/s upstream vector...
    table = r.discharge_dataframe
    assert table["Surface Velocity"].iloc[k + 1] > 0  # ...is left out and filled
    flags = (tmp_path / "ngwerere_20191103" / "stiv_results.csv").read_text()
    assert "outlier" in flags
    assert any("stabilization is off" in w for w in r.warnings)  # the camera moves
    # with the camera motion corrected (the default) the node moves downstream like its
    # neighbours: the upstream vector was the camera, not the water
    s = process_video(*args, **kw)
    assert s.success and s.motion["rms_px"] > 2 and s.motion["corrected_frames"] > 100
    assert s.stiv_normal_velocities[k] > 0.3
    assert sum("upstream" in f for f in s.node_flags) < sum("upstream" in f for f in r.node_flags)
    # grass and shrubs make most of the default stable region (about 73 % RANSAC inliers):
    # the correction is said to be less sure
    assert s.motion["inlier_fraction"] < 0.8
    assert any("features follow one camera motion" in w for w in s.warnings)


def test_truncated_video_and_ignored_rotation_are_warnings():
    from ivy_gpu.frames.stack import _container_warnings

    video = VideoConfig(Path("clip.mp4"), 100.0)
    reader = SimpleNamespace(info=SimpleNamespace(frame_count=300), decoded=120, rotation=0)
    (warn,) = _container_warnings(reader, video)
    assert "decoded 120 frames but the container announces 300" in warn
    reader = SimpleNamespace(info=SimpleNamespace(frame_count=300), decoded=300, rotation=-90)
    (warn,) = _container_warnings(reader, video)
    assert "-90 deg display rotation, which is ignored" in warn
    part = VideoConfig(Path("clip.mp4"), 100.0, max_frames=50)
    reader = SimpleNamespace(info=SimpleNamespace(frame_count=300), decoded=50, rotation=0)
    assert _container_warnings(reader, part) == []


def test_a_whole_clean_video_has_no_container_warning(video_site):
    from ivy_gpu.frames.stack import load_stack
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    d, truth = video_site
    cfg = VideoConfig(d / truth["video"], truth["wse_m"])
    loaded = load_stack(load_scaffold(d / "site.ivy"), cfg, backends.get_engine("numba"))
    assert not [w for w in loaded.warnings if "truncated" in w or "rotation" in w]


def test_gradient_check_is_silent_where_the_methods_agree(video_site):
    d, truth = video_site
    r = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba",
                      stiv={"method": "gradient"})  # fmt: skip
    assert r.success, r.error_message
    assert not any("does not fit this video" in w for w in r.warnings), r.warnings
    assert r.total_discharge == pytest.approx(truth["discharge_m3s"], rel=0.03)


@pytest.mark.skipif(not NGWERERE.is_dir(), reason="needs ../shared/fixtures/ngwerere")
def test_gradient_check_flags_ngwerere():
    """On the real clip the tensor reads a fraction of the ACF's speed: said, not hidden."""
    r = process_video(NGWERERE / "ngwerere_site.ivy", NGWERERE / "ngwerere_20191103.mp4",
                      1182.2, alpha=0.85, backend="numba", stiv={"method": "gradient"})  # fmt: skip
    assert r.success, r.error_message
    warn = [w for w in r.warnings if "does not fit this video" in w]
    assert len(warn) == 1 and "use method 'acf'" in warn[0]
