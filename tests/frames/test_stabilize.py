"""Camera motion: a synthetic site filmed by a shaking camera, against the known jitter."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ivy_gpu import process_video
from ivy_gpu.frames.stabilize import MotionEstimator, stable_mask
from ivy_gpu.frames.stack import rectifier_for
from ivy_gpu.scaffold.ivyfile import load_scaffold
from ivy_gpu.synthetic.sites import Site, SiteSpec, make_site, write_video

SPEC = SiteSpec(width_px=1280, height_px=720, duration_s=4.0, flow_angle_deg=8.0, seed=12)


def jitter(n: int, seed: int = 3) -> list[np.ndarray]:
    """Random shifts of +-3 px and rotations of +-0.3 deg per frame plus a slow drift."""
    rng = np.random.default_rng(seed)
    out = [np.array([[1.0, 0, 0], [0, 1.0, 0]])]
    for t in range(1, n):
        ang = math.radians(rng.uniform(-0.3, 0.3))
        tx, ty = rng.uniform(-3, 3) + 0.01 * t, rng.uniform(-3, 3) + 0.005 * t
        c, s = math.cos(ang), math.sin(ang)
        cx, cy = 640.0, 360.0
        out.append(
            np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty]])
        )
    return out


def _shaken(frames: list[np.ndarray], moves: list[np.ndarray]):
    """Each frame moved by its similarity: ``(moved frame, the similarity)``."""
    for f, a in zip(frames, moves, strict=True):
        yield cv2.warpAffine(f, a, (1280, 720), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT), a  # fmt: skip


def _squared_residual(p: np.ndarray, a: np.ndarray, a_true: np.ndarray) -> float:
    """Mean squared distance (px^2) between the points moved by ``a`` and by the truth."""
    diff = (p @ a[:, :2].T + a[:, 2]) - (p @ a_true[:, :2].T + a_true[:, 2])
    return float(np.mean(np.sum(diff**2, axis=1)))


@pytest.fixture(scope="module")
def shaky_site(tmp_path_factory):
    d = tmp_path_factory.mktemp("shaky")
    truth = make_site(d, SPEC)
    moves = jitter(int(SPEC.duration_s * SPEC.fps))
    frames = (
        cv2.warpAffine(f, a, (1280, 720), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for f, a in zip(Site(SPEC).render(), moves, strict=True)
    )
    write_video(d / "shaky.mp4", frames, SPEC.fps, 1280, 720)
    return d, truth, moves


@pytest.mark.parametrize("scale", [None, 0.5])
def test_motion_estimate_matches_the_jitter_on_stable_ground(shaky_site, scale):
    """At full resolution (a 1280-px frame's default) and tracked at half resolution (the
    default from 1600 px wide)."""
    d, truth, moves = shaky_site
    scaffold = load_scaffold(d / "site.ivy")
    rect = rectifier_for(scaffold, truth["wse_m"])
    frames = list(Site(SPEC).render(n_frames=20))
    est = MotionEstimator(frames[0], stable_mask(rect, scaffold.cross_section_line), scale)
    assert est.scale == (scale or 1.0) and len(est.points) > 100
    p = est.points.reshape(-1, 2).astype(float)
    errors = []
    for moved, a_true in _shaken(frames[1:], moves[1:20]):
        a, inliers = est.estimate(moved)
        assert inliers > 0.8
        errors.append(_squared_residual(p, a, a_true))
    assert math.sqrt(np.mean(errors)) <= 0.1  # residual motion after correction, px RMS


def test_shaky_video_is_stabilized_and_warned_about(shaky_site):
    d, truth, _ = shaky_site
    kw = dict(backend="numba")
    still = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], **kw)
    off = process_video(d / "site.ivy", d / "shaky.mp4", truth["wse_m"], stabilize="off", **kw)
    auto = process_video(d / "site.ivy", d / "shaky.mp4", truth["wse_m"], **kw)
    q = truth["discharge_m3s"]
    err = {
        k: abs(r.total_discharge / q - 1)
        for k, r in (("still", still), ("off", off), ("auto", auto))
    }
    assert err["auto"] <= max(0.01, err["still"] + 0.005)  # as good as the still camera
    assert err["off"] > 2 * err["auto"] and err["off"] > 0.02
    assert any("stabilization is off" in w for w in off.warnings)
    assert auto.motion["corrected_frames"] >= 100 and auto.motion["inlier_fraction"] > 0.8
    assert 1.5 < auto.motion["rms_px"] < 5 and auto.motion["max_rotation_deg"] < 0.5
    assert not any("stabilization is off" in w for w in auto.warnings)
    assert not any("features follow one camera motion" in w for w in auto.warnings)  # rigid


def test_still_camera_auto_changes_nothing(video_site):
    d, truth = video_site
    kw = dict(backend="numba", max_frames=60)
    auto = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], **kw)
    off = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], stabilize="off", **kw)
    assert auto.motion["corrected_frames"] == 0 and auto.motion["rms_px"] < 0.05
    assert np.array_equal(auto.stiv_magnitudes, off.stiv_magnitudes, equal_nan=True)
    assert auto.total_discharge == off.total_discharge


def test_large_frames_are_tracked_at_half_resolution():
    rng = np.random.default_rng(4)
    big = cv2.GaussianBlur((rng.random((1080, 1920)) * 255).astype(np.uint8), (0, 0), 2.0)
    est = MotionEstimator(big)
    assert est.scale == 0.5 and (est.window, est.levels) == (11, 2)
    a_true = np.array([[1.0, 0.0, 2.3], [0.0, 1.0, -1.7]])
    a, inliers = est.estimate(cv2.warpAffine(big, a_true, (1920, 1080), flags=cv2.INTER_LINEAR))
    assert inliers > 0.9 and np.allclose(a, a_true, atol=0.05)
    assert MotionEstimator(big[:720, :1280]).scale == 1.0
    with pytest.raises(ValueError, match="scale"):
        MotionEstimator(big, scale=0.3)


def test_a_still_camera_is_only_sampled(video_site):
    """auto estimates every MOTION_SAMPLE_STEP-th frame while nothing moves (issue 25 item 4)."""
    from ivy_gpu import config

    d, truth = video_site
    auto = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba",
                         max_frames=60)  # fmt: skip
    assert auto.motion["frames"] == 59 // config.MOTION_SAMPLE_STEP  # 7 estimates, not 59
    assert auto.motion["corrected_frames"] == 0


def test_a_batch_builds_the_stable_region_once(video_site, monkeypatch):
    """Videos of one site and WSE share the rectifier, so the stable mask is built once."""
    from ivy_gpu.frames import stack

    d, truth = video_site
    calls = []
    real = stack.stable_mask
    monkeypatch.setattr(stack, "stable_mask", lambda *a: calls.append(a) or real(*a))
    sc = load_scaffold(d / "site.ivy")
    kw = dict(backend="numba", max_frames=24, figures=False)
    runs = [process_video(sc, d / truth["video"], truth["wse_m"], **kw) for _ in range(2)]
    assert len(calls) == 1
    assert runs[0].motion == runs[1].motion and runs[0].motion["frames"] == 2
    masks = stack._STABLE_MASKS[rectifier_for(sc, truth["wse_m"])]
    (mask,) = masks.values()
    assert not mask.flags.writeable and np.array_equal(mask, real(*calls[0]))
    process_video(sc, d / truth["video"], truth["wse_m"] + 0.05, **kw)  # other tables
    assert len(calls) == 2


@pytest.fixture(scope="module")
def bumped_site(shaky_site):
    """The shaky site's camera still for 30 frames, then shaking (the jitter from frame 30)."""
    d, truth, moves = shaky_site
    late = [moves[0]] * 30 + moves[30:]
    frames = (
        cv2.warpAffine(f, a, (1280, 720), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for f, a in zip(Site(SPEC).render(), late, strict=True)
    )
    write_video(d / "bumped.mp4", frames, SPEC.fps, 1280, 720)
    return d, truth


@pytest.mark.parametrize("clip", ["shaky.mp4", "bumped.mp4"])
def test_sampling_corrects_every_frame_that_tracking_all_would(shaky_site, bumped_site, clip,
                                                             monkeypatch):  # fmt: skip
    """Sampled and every-frame tracking give the same stack: bit-identical velocities and Q.

    The shaky clip moves from its first sample; the bumped one is still for 30 frames (three
    still samples), then the frames held since the last still sample are redone.
    """
    from ivy_gpu import config

    d, truth, _ = shaky_site
    kw = dict(backend="numba", figures=False)
    sampled = process_video(d / "site.ivy", d / clip, truth["wse_m"], **kw)
    monkeypatch.setattr(config, "MOTION_SAMPLE_STEP", 1)
    every = process_video(d / "site.ivy", d / clip, truth["wse_m"], **kw)
    assert sampled.motion["corrected_frames"] == every.motion["corrected_frames"] >= 85
    assert np.array_equal(sampled.stiv_magnitudes, every.stiv_magnitudes, equal_nan=True)
    assert sampled.total_discharge == every.total_discharge
    assert abs(sampled.total_discharge / truth["discharge_m3s"] - 1) <= 0.01
    if clip == "bumped.mp4":  # 3 still samples (frames 8, 16, 24), then frames 25..119
        assert sampled.motion["frames"] == 3 + (119 - 24)


# ------------------------------------------------- the same tracking as array code (GPU path)
@pytest.mark.parametrize("scale", [None, 0.5])
def test_the_array_tracker_follows_the_jitter_as_opencv_does(shaky_site, scale):
    """ArrayTracker (issue 25 item 4: the estimate on the device) on NumPy: the same corners,
    each tracked to within 0.05 px of OpenCV's Lucas-Kanade (median), every corner held, and
    the same residual bound after correction as the default estimator."""
    from ivy_gpu.frames.track_xp import ArrayTracker

    d, truth, moves = shaky_site
    scaffold = load_scaffold(d / "site.ivy")
    stable = stable_mask(rectifier_for(scaffold, truth["wse_m"]), scaffold.cross_section_line)
    frames = list(Site(SPEC).render(n_frames=12))
    cv_est = MotionEstimator(frames[0], stable, scale)
    est = ArrayTracker(frames[0], stable, np, scale)
    assert np.array_equal(est.points, cv_est.points) and est.scale == cv_est.scale
    p = est.points.reshape(-1, 2).astype(float)
    errors = []
    for moved, a_true in _shaken(frames[1:], moves[1:12]):
        pts, held = est.track(moved)
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(
            cv_est._ref, cv_est._scaled(moved), cv_est._pts, None,
            winSize=(cv_est.window, cv_est.window), maxLevel=cv_est.levels,
        )  # fmt: skip
        both = held & (status.ravel() == 1)
        assert held.mean() >= 0.99 and both.mean() >= 0.98
        gap = np.hypot(*(pts[both] - cv_est._from_scaled(nxt).reshape(-1, 2)[both]).T)
        assert np.median(gap) < 0.05  # per corner, not on average alone:
        assert np.mean(gap < 0.5) >= 0.98  # nearly every corner where OpenCV put it
        a, inliers = est.estimate(moved)
        assert inliers > 0.8
        errors.append(_squared_residual(p, a, a_true))
    assert math.sqrt(np.mean(errors)) <= 0.1  # residual motion after correction, px RMS


def test_the_array_tracker_stabilizes_a_shaky_video_to_the_truth(shaky_site, monkeypatch):
    """``IVY_GPU_MOTION=array`` end to end: Q within 0.5 % of the truth (issue 25), the same
    frames corrected as with OpenCV's tracker, and the tracker ran on the engine's namespace."""
    from ivy_gpu.frames import stack as stack_mod
    from ivy_gpu.frames.track_xp import ArrayTracker

    d, truth, _ = shaky_site
    kw = dict(backend="numba", figures=False)
    opencv = process_video(d / "site.ivy", d / "shaky.mp4", truth["wse_m"], **kw)
    made = []
    real = ArrayTracker.__init__

    def spy(self, *a, **k):
        made.append(a[2] if len(a) > 2 else k.get("xp"))
        real(self, *a, **k)

    monkeypatch.setattr(ArrayTracker, "__init__", spy)
    monkeypatch.setenv("IVY_GPU_MOTION", "array")
    array = process_video(d / "site.ivy", d / "shaky.mp4", truth["wse_m"], **kw)
    assert made == [np] and stack_mod.config.motion_tracker() == "array"
    assert abs(array.total_discharge / truth["discharge_m3s"] - 1) <= 0.005
    assert array.motion["corrected_frames"] == opencv.motion["corrected_frames"] >= 100
    assert abs(array.motion["rms_px"] - opencv.motion["rms_px"]) < 0.01
    np.testing.assert_allclose(array.stiv_magnitudes, opencv.stiv_magnitudes, rtol=0.01)


def test_an_engine_with_kernels_tracks_with_its_level_kernel(shaky_site, monkeypatch):
    """With ``IVY_GPU_MOTION=array`` the loader hands the tracker the engine's namespace and,
    for an engine with CUDA kernels, the kernel per pyramid level; OpenCV's otherwise."""
    from ivy_gpu.frames.stack import _Tracker
    from ivy_gpu.frames.track_xp import ArrayTracker

    d, truth, _ = shaky_site
    scaffold = load_scaffold(d / "site.ivy")
    rect = rectifier_for(scaffold, truth["wse_m"])
    first = next(iter(Site(SPEC).render(n_frames=1)))
    monkeypatch.setenv("IVY_GPU_MOTION", "array")
    tracker = _Tracker(scaffold, rect, "on", np, kernels=True)
    assert tracker.tables(first, rect) is rect  # the reference frame: nothing to undo
    assert isinstance(tracker.estimator, ArrayTracker) and tracker.estimator.kernels
    assert tracker.estimator.xp is np
    monkeypatch.setenv("IVY_GPU_MOTION", "opencv")
    tracker = _Tracker(scaffold, rect, "on", np, kernels=True)
    tracker.tables(first, rect)
    assert isinstance(tracker.estimator, MotionEstimator)
