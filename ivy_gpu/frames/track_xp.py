"""Camera motion by pyramidal Lucas-Kanade as array code, so that it runs on the GPU.

The default estimator (:class:`~ivy_gpu.frames.stabilize.MotionEstimator`) tracks the stable
region's corners with OpenCV's ``calcOpticalFlowPyrLK`` on the CPU. :class:`ArrayTracker`
runs the same algorithm on any array namespace (issue 25 item 4: "tracking with CuPy"): all
corners at once, as batched gathers and sums, so CuPy runs it on the device and a moving
camera's estimate leaves the CPU. ``IVY_GPU_MOTION=array`` selects it for the GPU engine.

- **Reference** (once per video): the corners of
  :class:`~ivy_gpu.frames.stabilize.MotionEstimator` (400, the stable region), the same
  tracking scale, window and pyramid (half resolution with an 11-pixel window and OpenCV's
  ``maxLevel`` 2, three levels, from :data:`~ivy_gpu.frames.stabilize.HALF_RES_WIDTH` pixels
  wide, else full resolution, 21 pixels and four levels); per level each corner's window of
  the reference, its gradients (central differences) and their 2 x 2 structure matrix, kept
  on the device.
- **Per frame**: the frame's pyramid (host ``pyrDown``, uploaded level by level); from the
  coarsest level down, :data:`ITERATIONS` Gauss-Newton steps per level for every corner at
  once: the frame sampled bilinearly at the window moved by the current estimate, the
  difference to the reference window, ``d -= G^-1 sum(grad T (J - T))`` (the reference's
  gradients: one inverse per corner and level). As in OpenCV, a corner whose matrix is
  ill-conditioned takes no step at that level, and is lost only when that happens at full
  detail or when it is tracked out of the frame (windows at the border read the border).
  With ``kernels`` (the GPU engine with its CUDA kernels) each level is one kernel
  (:mod:`ivy_gpu.kernels.track_device`) instead of some 400 small array launches.
  One download: the tracked positions and their status.
- **Fit**: a similarity by RANSAC (1 px), as the default estimator.

Accuracy on the synthetic site's jitter (``tests/frames/test_stabilize.py``): each corner
within 0.05 px of OpenCV's track (median) and the same residual bound as the default
estimator (0.1 px RMS on the stable region after correction); measured 0.0027 px.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cv2
import numpy as np

from ivy_gpu.engines.xp_probe import current_stream
from ivy_gpu.frames.stabilize import MotionEstimator
from ivy_gpu.kernels import sti_device, track_device
from ivy_gpu.kernels.track_device import bilinear_xp

#: Gauss-Newton steps per pyramid level.
ITERATIONS = 10
#: A structure matrix whose smaller eigenvalue per window pixel is below this is not a corner:
#: OpenCV's ``minEigThreshold`` default (1e-4) in this module's units. OpenCV sums Scharr
#: derivatives (32 x the central difference used here) and scales the sums by 2^-20, so its
#: threshold is 1e-4 x 2^20 / 32^2 = 0.1024 on central differences of 0-255 intensities.
MIN_EIG = 1e-4 * 2**20 / 32**2


def _pyramid(frame: np.ndarray, scale: float, levels: int) -> list[np.ndarray]:
    """Levels 0 (the tracking scale) ... ``levels`` of a host frame, float32."""
    base = frame if scale == 1.0 else cv2.resize(frame, None, fx=0.5, fy=0.5,
                                                  interpolation=cv2.INTER_AREA)  # fmt: skip
    out = [base]
    for _ in range(levels):
        out.append(cv2.pyrDown(out[-1]))
    return [np.asarray(level, np.float32) for level in out]


class ArrayTracker:
    """Reference -> frame similarity from the stable region's corners, tracked as array code.

    The interface of :class:`~ivy_gpu.frames.stabilize.MotionEstimator` (``points``,
    :meth:`estimate`, :meth:`displacement`), with the same corners, scale, window and levels.

    Parameters
    ----------
    reference : ndarray (H, W) uint8
        The reference frame's luma (host).
    stable : ndarray (H, W) uint8 or None
        Stable ground (0/255).
    xp : module
        Array namespace of the tracking (NumPy, or CuPy: on the device).
    scale : float, optional
        Tracking scale (1.0 or 0.5); default as :class:`MotionEstimator`.
    """

    def __init__(
        self,
        reference: np.ndarray,
        stable: np.ndarray | None = None,
        xp: ModuleType = np,
        scale: float | None = None,
        kernels: bool = False,
    ) -> None:
        base = MotionEstimator(reference, stable, scale)  # the corners and the settings
        self.points, self.scale, self.xp = base.points, base.scale, xp
        #: One CUDA kernel per pyramid level (:mod:`ivy_gpu.kernels.track_device`) instead of
        #: the array code's small launches (the GPU engine with its kernels).
        self.kernels = kernels
        self.window, self.levels = base.window, base.levels
        r = self.window // 2
        grid = np.arange(-r, r + 1, dtype=np.float32)
        self._dy, self._dx = (xp.asarray(a) for a in np.meshgrid(grid, grid, indexing="ij"))
        p = self.points.reshape(-1, 2).astype(np.float64)
        p0 = (p + 0.5) * self.scale - 0.5  # tracking-scale positions (pixel centres)
        # per level, on the device once: pyrDown keeps the even pixels, so level L's pixel i
        # is level 0's 2^L i
        self._pos = [xp.asarray(p0 * 0.5**level) for level in range(self.levels + 1)]
        self._ref = []  # per level: window, gradients, inverse structure matrix, its validity
        for level, img in enumerate(_pyramid(reference, self.scale, self.levels)):
            dev = xp.asarray(img)
            gx = xp.zeros_like(dev)
            gy = xp.zeros_like(dev)
            gx[:, 1:-1] = 0.5 * (dev[:, 2:] - dev[:, :-2])
            gy[1:-1, :] = 0.5 * (dev[2:, :] - dev[:-2, :])
            x, y = self._window_at(self._pos[level], xp)
            t, ix, iy = (bilinear_xp(a, x, y, xp) for a in (dev, gx, gy))
            gxx, gxy, gyy = ((ix * ix).sum(axis=(1, 2)), (ix * iy).sum(axis=(1, 2)),
                             (iy * iy).sum(axis=(1, 2)))  # fmt: skip
            det = gxx * gyy - gxy * gxy
            tr = gxx + gyy
            min_eig = 0.5 * (tr - xp.sqrt(xp.maximum(tr * tr - 4 * det, 0)))
            ok = min_eig / self.window**2 > MIN_EIG
            det = xp.where(ok, det, 1.0)
            inv = xp.stack([gyy / det, -gxy / det, gxx / det], axis=1)
            self._ref.append((t, ix, iy, inv, ok.astype(xp.uint8)))  # uint8: the kernel's

    def _window_at(self, pos: Any, xp: ModuleType) -> tuple[Any, Any]:
        """Sample positions (N, w, w) of each corner's window around ``pos`` (N, 2)."""
        return pos[:, 0, None, None] + self._dx[None], pos[:, 1, None, None] + self._dy[None]

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each corner's position in ``frame`` (full-resolution pixels) and whether it held."""
        xp = self.xp
        levels = _pyramid(frame, self.scale, self.levels)
        d = xp.zeros((len(self.points), 2), dtype=xp.float64)
        for level in range(self.levels, -1, -1):
            img = xp.asarray(levels[level])
            t, ix, iy, inv, good = self._ref[level]
            pos = self._pos[level]
            if self.kernels:
                track_device.track_level_cuda(
                    img, t, ix, iy, inv, good, pos, d, ITERATIONS, current_stream(xp),
                    sti_device.launch_block(track_device.TRACK_BLOCK),
                )  # fmt: skip
            else:
                d = track_device.track_level_xp(img, t, ix, iy, inv, good, pos, d, ITERATIONS, xp)
            if level:
                d = 2 * d
        h, w = levels[0].shape
        moved = self._pos[0] + d
        # as OpenCV: lost when not a corner at full detail, or tracked out of the frame
        ok = ((good > 0) & xp.isfinite(d).all(axis=1) & (moved[:, 0] >= 0)
              & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1))  # fmt: skip
        out = xp.concatenate([moved, ok[:, None].astype(xp.float64)], axis=1)
        host = np.asarray(out.get() if hasattr(out, "get") else out)
        pts = (host[:, :2] + 0.5) / self.scale - 0.5
        return pts, host[:, 2] > 0

    def estimate(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """``(A, inlier fraction)``: A (2 x 3) maps reference pixels to this frame's."""
        src = self.points.reshape(-1, 2)
        if len(src) < 6:
            return None, 0.0
        dst, ok = self.track(frame)
        if ok.sum() < 6:
            return None, 0.0
        a, inliers = cv2.estimateAffinePartial2D(
            src[ok].astype(np.float32), dst[ok].astype(np.float32), method=cv2.RANSAC,
            ransacReprojThreshold=1.0, maxIters=2000, confidence=0.995,
        )  # fmt: skip
        if a is None:
            return None, 0.0
        return a, float(inliers.sum()) / len(src)

    def displacement(self, a: np.ndarray) -> float:
        """RMS displacement (px) of the tracked reference points under ``a``."""
        p = self.points.reshape(-1, 2).astype(float)
        moved = p @ a[:, :2].T + a[:, 2]
        return float(np.sqrt(np.mean(np.sum((moved - p) ** 2, axis=1))))
