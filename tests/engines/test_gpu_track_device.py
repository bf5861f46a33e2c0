"""Corner tracking, one pyramid level per CUDA kernel, against the array code it replaces.

The kernel (:mod:`ivy_gpu.kernels.track_device`) runs in numba-cuda's simulator on a small
frame; its twin is the array tracker's own step (:func:`track_level_xp`), which the
stabilization tests hold to OpenCV's Lucas-Kanade.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ivy_gpu.frames import track_xp
from ivy_gpu.frames.track_xp import ArrayTracker
from ivy_gpu.kernels import track_device


def _moved_pair(w: int, h: int, seed: int = 4):
    rng = np.random.default_rng(seed)
    ref = cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (0, 0), 2.0)
    c, s = np.cos(0.003), np.sin(0.003)
    truth = np.array([[c, -s, 2.3], [s, c, -1.7]])
    return ref, cv2.warpAffine(ref, truth, (w, h), flags=cv2.INTER_LINEAR), truth


def test_the_kernel_tracks_every_corner_as_the_array_code(monkeypatch):
    """Half resolution (11-pixel windows, 3 levels), 2 steps per level (simulator time): the
    same positions per corner to 1e-5 px, the same corners held."""
    monkeypatch.setattr(track_xp, "ITERATIONS", 2)
    ref, moved, _ = _moved_pair(64, 48)
    launches = []
    real = track_device.track_level_cuda
    monkeypatch.setattr(track_device, "track_level_cuda",
                        lambda *a, **k: launches.append(1) or real(*a, **k))  # fmt: skip
    array = ArrayTracker(ref, None, np, 0.5)
    kernel = ArrayTracker(ref, None, np, 0.5, kernels=True)
    assert len(array.points) >= 20
    p1, held1 = array.track(moved)
    assert not launches
    p2, held2 = kernel.track(moved)
    assert len(launches) == 3  # one per level, nothing else
    assert np.array_equal(held1, held2) and held1.mean() > 0.85  # a 32 x 24 frame: edges
    np.testing.assert_allclose(p2, p1, atol=1e-5, rtol=0)


def test_a_corner_that_is_not_one_takes_no_step():
    rng = np.random.default_rng(1)
    img = (rng.random((10, 12)) * 255).astype(np.float32)
    pos = np.array([[5.0, 5.0], [6.0, 4.0]])
    win, ix, iy = rng.random((3, 2, 3, 3))
    inv = np.array([[1e-2, 0.0, 1e-2], [1e-2, 0.0, 1e-2]])
    d = np.zeros((2, 2))
    track_device.track_level_cuda(img, win, ix, iy, inv, np.array([1, 0], np.uint8), pos, d, 2,
                                  block=4)  # fmt: skip
    want = track_device.track_level_xp(img, win, ix, iy, inv, np.array([1, 0]), pos,
                                       np.zeros((2, 2)), 2)  # fmt: skip
    np.testing.assert_allclose(d, want, atol=1e-9)
    assert np.all(d[1] == 0) and np.any(d[0] != 0)
    with pytest.raises(ValueError, match="block"):
        track_device.track_level_cuda(img, win, ix, iy, inv, np.ones(2, np.uint8), pos, d, 1,
                                      block=3)  # fmt: skip
    with pytest.raises(ValueError, match="corners"):
        track_device.track_level_cuda(img, win, ix, iy, inv, np.ones(3, np.uint8), pos, d, 1)


# ------------------------------------------------------------------ real GPU only
@pytest.mark.gpu
def test_the_tracking_kernel_on_the_device_at_1080p():
    """400 corners of a 1080p frame moved by a known similarity, on CuPy with the kernel:
    the truth within 0.05 px on every corner, and the array code's transform within 1e-3 px."""
    import cupy

    ref, moved, truth = _moved_pair(1920, 1080)
    kernel = ArrayTracker(ref, None, cupy, kernels=True)
    array = ArrayTracker(ref, None, cupy)
    a, inliers = kernel.estimate(moved)
    b, _ = array.estimate(moved)
    p = kernel.points.reshape(-1, 2).astype(float)
    err = np.hypot(*((p @ a[:, :2].T + a[:, 2]) - (p @ truth[:, :2].T + truth[:, 2])).T)
    assert inliers > 0.9 and err.max() < 0.05
    gap = np.hypot(*((p @ a[:, :2].T + a[:, 2]) - (p @ b[:, :2].T + b[:, 2])).T)
    assert gap.max() < 1e-3
