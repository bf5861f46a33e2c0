"""Rectification against an analytic camera: a checkerboard on the water plane."""

import cv2
import numpy as np
import pytest
import scipy.ndimage

from ivy_gpu.kernels.remap import remap_cv2, remap_xp
from ivy_gpu.scaffold.camera import CameraModel
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
from ivy_gpu.synthetic.sites import Site, SiteSpec

SQUARE = 0.25  # m


def _render_checkerboard(cam: CameraModel, size, wse, origin, ss=4):
    """Camera image of a checkerboard on Z = wse, 4x4 supersampled (anti-aliased)."""
    w, h = size
    off = (np.arange(ss) + 0.5) / ss - 0.5
    acc = np.zeros((h, w))
    cols, rows = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    for dy in off:
        for dx in off:
            world = cam.back_project(np.stack([cols + dx, rows + dy], -1), wse)
            i = np.floor((world[..., 0] - origin[0]) / SQUARE)
            j = np.floor((world[..., 1] - origin[1]) / SQUARE)
            board = (i >= 0) & (i < 10) & (j >= 0) & (j < 6)
            acc += np.where(board, (i + j) % 2 == 0, 1.0)
    return (40 + 170 * acc / ss**2).astype(np.uint8)


@pytest.fixture(scope="module")
def camera_site():
    site = Site(SiteSpec(width_px=960, height_px=540))
    return site, site.spec


def test_checkerboard_corners_land_where_the_world_says():
    # The camera samples the plane at about 2 px per cm; a 2 cm plan-view cell keeps the
    # rectified corners sharp, so sub-pixel corner detection measures the geometry itself.
    site = Site(SiteSpec(width_px=1920, height_px=1080))
    spec = site.spec

    origin = (site.extent[0] + 0.65, site.extent[2] + 0.6)
    img = _render_checkerboard(site.camera, (spec.width_px, spec.height_px), spec.wse_m, origin)
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    rect = Rectifier(params, spec.wse_m, (spec.width_px, spec.height_px), cell_size=0.02)
    top = rect.rectify(img)
    pattern = (9, 5)  # inner corners
    found, corners = cv2.findChessboardCorners(top, pattern)
    assert found
    corners = cv2.cornerSubPix(
        top,
        corners,
        (7, 7),
        (-1, -1),
        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4),
    )
    corners = corners.reshape(-1, 2)
    # expected: world corners (origin + k * SQUARE) mapped to rectified pixels
    gx, gy = np.meshgrid(
        origin[0] + SQUARE * np.arange(1, 10), origin[1] + SQUARE * np.arange(1, 6)
    )
    ex, ey = rect.world_to_pixel(gx.ravel(), gy.ravel())
    expected = np.column_stack([ex, ey])
    d = np.min(np.linalg.norm(corners[:, None] - expected[None], axis=-1), axis=1)
    assert d.size == 45
    assert np.mean(d) < 0.1, d
    assert np.max(d) < 0.2, d


def test_rectified_geometry_does_not_change_with_wse(camera_site):
    site, spec = camera_site
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    a = Rectifier(params, spec.wse_m, (spec.width_px, spec.height_px))
    b = Rectifier(params, spec.wse_m + 0.4, (spec.width_px, spec.height_px))
    assert a.output_shape == b.output_shape and a.pixel_gsd == b.pixel_gsd
    assert not np.allclose(a.map_y, b.map_y)  # but each WSE samples other source pixels
    x, y = a.pixel_to_world(np.array([10.0]), np.array([20.0]))
    assert np.allclose(a.world_to_pixel(x, y), [[10.0], [20.0]])
    # a world point on the plane Z = WSE lands where the camera sees it
    px = site.camera.project(np.array([[x[0], y[0], spec.wse_m]]))[0]
    assert np.allclose([a.map_x[20, 10], a.map_y[20, 10]], px, atol=1e-3)


def test_flips_and_frame_size_check(camera_site):
    site, spec = camera_site
    size = (spec.width_px, spec.height_px)
    plain = Rectifier(
        RectificationParams("camera matrix", camera_matrix=site.camera.matrix, extent=site.extent),
        spec.wse_m,
        size,
    )
    flipped = Rectifier(
        RectificationParams(
            "camera matrix",
            camera_matrix=site.camera.matrix,
            extent=site.extent,
            flip_x=True,
            flip_y=True,
        ),
        spec.wse_m,
        size,
    )
    assert np.array_equal(flipped.map_x, plain.map_x[::-1, ::-1])
    x, y = flipped.pixel_to_world(np.array([0.0]), np.array([0.0]))
    assert np.allclose(
        (x, y),
        plain.pixel_to_world(
            np.array([plain.output_shape[1] - 1.0]), np.array([plain.output_shape[0] - 1.0])
        ),
    )
    with pytest.raises(
        ValueError,
        match=r"clip.mp4: frame size 100x50 differs from the "
        r"calibration image size 960x540",
    ):
        plain.check_frame(np.zeros((50, 100), np.uint8), "clip.mp4")


def test_gpu_remap_path_matches_opencv(camera_site):
    site, spec = camera_site
    rng = np.random.default_rng(2)
    frame = cv2.GaussianBlur(
        rng.integers(0, 255, (spec.height_px, spec.width_px), np.uint8), (0, 0), 2
    )
    rect = Rectifier(
        RectificationParams("camera matrix", camera_matrix=site.camera.matrix, extent=site.extent),
        spec.wse_m,
        (spec.width_px, spec.height_px),
    )
    a = remap_cv2(frame, rect.map_x, rect.map_y).astype(float)
    b = remap_xp(frame, rect.map_x, rect.map_y, np, scipy.ndimage)
    inner = (
        (rect.map_x > 1)
        & (rect.map_x < spec.width_px - 2)
        & (rect.map_y > 1)
        & (rect.map_y < spec.height_px - 2)
    )
    assert np.mean(np.abs(a - b)[inner]) < 0.5  # OpenCV uses 1/32-pixel fixed-point weights
    assert np.all(b[~inner & ((rect.map_x < -1) | (rect.map_y < -1))] == 0)


def test_remap_writes_into_the_stack_frame_it_is_given():
    rng = np.random.default_rng(8)
    frame = rng.integers(0, 255, (60, 80), np.uint8)
    map_x = (rng.random((30, 40)) * 90 - 5).astype(np.float32)  # some samples off the frame
    map_y = (rng.random((30, 40)) * 70 - 5).astype(np.float32)
    want = remap_cv2(frame, map_x, map_y)
    stack = np.full((3, 30, 40), 7, np.uint8)
    got = remap_cv2(frame, map_x, map_y, out=stack[1])
    assert np.shares_memory(got, stack) and np.array_equal(stack[1], want)
    assert np.all(stack[[0, 2]] == 7)  # its neighbours untouched
    wide = np.zeros((30, 41), np.float32)[:, :40]  # another dtype, not contiguous
    remap_cv2(frame, map_x, map_y, out=wide)
    assert np.array_equal(wide, want)


def test_homography_and_scale_methods():
    world = np.array([[0, 0, 0], [4, 0, 0], [4, 3, 0], [0, 3, 0.0]])
    h = np.array([[2.0, 0.1, 5.0], [0.0, 2.0, 7.0], [0.0, 0.0, 1.0]])
    r = Rectifier(
        RectificationParams("homography", homography=h, world_coords=world, pad_x=10, pad_y=10),
        0.0,
        (40, 30),
    )
    assert r.pixel_gsd == pytest.approx(4 / 40)
    assert r.output_shape == (60, 60)
    src = np.linalg.inv(h) @ np.array([25.0, 31.0, 1.0])
    assert np.allclose([r.map_x[31, 25], r.map_y[31, 25]], src[:2] / src[2])
    s = Rectifier(
        RectificationParams(
            "scale",
            world_coords=np.array([[0, 0, 0], [3, 4, 0.0]]),
            pixel_coords=np.array([[10, 10], [110, 10.0]]),
        ),
        0.0,
        (200, 100),
    )
    assert s.pixel_gsd == pytest.approx(5 / 100) and s.output_shape == (100, 200)
    with pytest.raises(ValueError, match="unknown method 'fisheye'"):
        Rectifier(RectificationParams("fisheye"), 0.0, (10, 10))
