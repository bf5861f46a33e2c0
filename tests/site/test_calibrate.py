"""Camera calibration from GCPs: PnP, DLT + LM, homography, scale, lens model (synthetic truth)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ivy_gpu.scaffold.camera import CameraModel, solve_camera_matrix
from ivy_gpu.scaffold.lens import LensModel
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
from ivy_gpu.site.calibrate import calibrate
from ivy_gpu.site.gcp import read_gcp_csv
from ivy_gpu.synthetic.sites import Site, SiteSpec

SPEC = SiteSpec()
SITE = Site(SPEC)
F = 0.9 * SPEC.width_px
K = np.array([[F, 0, SPEC.width_px / 2], [0, F, SPEC.height_px / 2], [0, 0, 1.0]])


def _gcps(n: int, noise: float, seed: int):
    world, pixel, _ = SITE.gcps()
    rng = np.random.default_rng(seed)
    return world[:n], pixel[:n] + rng.normal(0.0, noise, (n, 2))


@pytest.mark.parametrize("n", [4, 5, 8])
def test_pnp_pose_from_few_gcps_with_noise(n):
    world, pixel = _gcps(n, 0.5, seed=n)
    c = calibrate(world, pixel, LensModel(K, np.zeros(5)))
    assert c.method == "camera matrix"
    assert c.solver == ("pnp" if n == 4 else "pnp+ransac")
    centre = CameraModel(c.camera_matrix).centre
    # 0.5 px picking noise on a 640 px frame, camera ~9 m away: the centre within 0.1 m
    assert np.linalg.norm(centre - SITE.camera.centre) < 0.1
    assert c.rms_px < 1.5
    assert c.inliers.all()


def test_pnp_exact_and_ransac_rejects_a_blunder():
    world, pixel = _gcps(8, 0.0, seed=0)
    exact = calibrate(world, pixel, LensModel(K, np.zeros(5)))
    assert np.linalg.norm(CameraModel(exact.camera_matrix).centre - SITE.camera.centre) < 1e-6
    bad = pixel.copy()
    bad[3] += [40.0, -25.0]  # one GCP picked on the wrong mark
    c = calibrate(world, bad, LensModel(K, np.zeros(5)))
    assert not c.inliers[3] and c.inliers.sum() == 7
    assert c.residual_px[3] > 30
    assert np.linalg.norm(CameraModel(c.camera_matrix).centre - SITE.camera.centre) < 1e-3
    assert "RANSAC set aside 1" in c.report()


def test_pnp_with_lens_distortion_recovers_the_pose():
    lens = LensModel(K, [-0.25, 0.08, 0.001, -0.0005, 0.0])
    world, _, _ = SITE.gcps()
    ideal = SITE.camera.project(world)
    raw = np.column_stack(lens.distort(ideal[:, 0], ideal[:, 1]))
    c = calibrate(world[:6], raw[:6], lens)
    assert np.linalg.norm(CameraModel(c.camera_matrix).centre - SITE.camera.centre) < 1e-4
    assert c.rms_px < 1e-3


def test_lens_model_matches_opencv_and_round_trips():
    lens = LensModel(K, [-0.3, 0.1, 0.002, -0.001, -0.02])
    rng = np.random.default_rng(3)
    ideal = rng.uniform([0, 0], [SPEC.width_px, SPEC.height_px], (200, 2))
    raw = np.column_stack(lens.distort(ideal[:, 0], ideal[:, 1]))
    # OpenCV's own projection of the same rays
    rays = np.column_stack([(ideal - K[:2, 2]) / F, np.ones(200)])
    cv_raw, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K, lens.dist_coeffs)
    assert np.allclose(raw, cv_raw.reshape(-1, 2), atol=1e-6)
    assert np.allclose(lens.undistort(raw), ideal, atol=1e-5)


def test_rectifying_a_distorted_frame_matches_the_ideal_one():
    """The lens is composed into the tables: a distorted frame rectifies like the ideal one."""
    lens = LensModel(K, [-0.2, 0.05, 0.0, 0.0, 0.0])
    ideal = next(SITE.render(n_frames=1)).astype(np.float32)
    h, w = ideal.shape
    # the distorted frame: each raw pixel shows the ideal image where the lens sends it from
    gx, gy = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    src = lens.undistort(np.column_stack([gx.ravel(), gy.ravel()])).reshape(h, w, 2)
    raw = cv2.remap(ideal, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32),
                    cv2.INTER_CUBIC)  # fmt: skip
    base = dict(camera_matrix=SITE.camera.matrix, extent=SITE.extent)
    plain = Rectifier(RectificationParams("camera matrix", **base), SPEC.wse_m, (w, h))
    lensed = Rectifier(RectificationParams("camera matrix", lens=lens, **base), SPEC.wse_m, (w, h))
    a, b = plain.rectify(ideal), lensed.rectify(raw)
    inner = (slice(10, -10), slice(10, -10))
    diff = np.abs(a[inner] - b[inner])
    assert np.median(diff) < 0.02 * ideal.std()
    without = np.abs(a[inner] - plain.rectify(raw)[inner])
    assert np.median(without) > 5 * np.median(diff)  # the lens matters here


def test_dlt_refinement_on_boneyard_is_no_worse_than_ivytools_dlt(data_dir):
    table = read_gcp_csv(data_dir / "boneyard" / "IVy_Boneyard_GCP.csv")
    world, pixel = table.rectification_points()
    plain = CameraModel(solve_camera_matrix(world, pixel)).reprojection_rms_px(world, pixel)
    c = calibrate(world, pixel)
    assert c.solver == "dlt+lm"
    assert plain == pytest.approx(5.82, abs=0.01)  # IVyTools' DLT on these GCPs
    assert c.rms_px <= 5.7 < plain


def test_homography_from_gcps_on_the_water_plane():
    world, _, _ = SITE.gcps()
    world = world.copy()
    world[:, 2] = SPEC.wse_m
    pixel = SITE.camera.project(world)
    c = calibrate(world[:5], pixel[:5])
    assert c.method == "homography" and c.rms_px < 1e-4
    probe = np.array([[21.3, 30.4, SPEC.wse_m], [24.9, 29.2, SPEC.wse_m]])
    assert np.allclose(c.project(probe), SITE.camera.project(probe), atol=1e-4)


def test_scale_from_two_gcps_is_a_mirrored_similarity():
    world = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    pixel = np.array([[100.0, 200.0], [300.0, 200.0]])  # east = right, 20 px/m
    c = calibrate(world, pixel)
    assert c.method == "scale"
    # north is up in a nadir image: +Y world -> smaller row
    assert np.allclose(c.project(np.array([[0.0, 5.0, 0.0]])), [[100.0, 100.0]])


@pytest.mark.parametrize(
    ("world", "pixel", "match"),
    [
        ([[0, 0, 0]], [[1, 1]], "at least 2 GCPs"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0], [9, 0], [0, 9]], "3 GCPs are too few"),
        (
            [[0, 0, 0], [1, 0, 1], [0, 1, 0], [1, 1, 2], [2, 0, 0]],
            [[0, 0], [9, 0], [0, 9], [9, 9], [18, 1]],
            "5 GCPs at different heights",
        ),
        ([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], [[0, 0], [1, 1], [2, 2], [3, 3]], "line"),
        ([[0, 0, 0], [1, 0, 0], [1, 0, 0], [3, 1, 0]], [[0, 0], [1, 1], [2, 5], [3, 3]], "same"),
    ],
)
def test_unusable_gcp_sets_are_refused_with_one_line(world, pixel, match):
    with pytest.raises(ValueError, match=match) as info:
        calibrate(np.asarray(world, float), np.asarray(pixel, float), source="gcps.csv")
    assert str(info.value).startswith("gcps.csv: ") and "\n" not in str(info.value)
