"""Camera motion: estimate each frame's motion on stable ground, undo it inside the remap.

A shift of one pixel between frames is the size of the surface motion STIV measures, so a
moving camera (wind on a pole, traffic on a bridge, a hand-held phone) gives confidently
wrong velocities. For every frame the motion against the reference (the first selected
frame) is estimated on the *stable* part of the image: corners there are tracked by
pyramidal Lucas-Kanade (OpenCV ``calcOpticalFlowPyrLK``) and a similarity transform
(shift, rotation, scale) is fitted with RANSAC (``estimateAffinePartial2D``), so moving
water, people or vehicles are outliers. The frame's remap lookup is then composed with that
transform (:func:`compose`), so a stabilized frame is interpolated once, like any other.

The stable part is the scaffold's ``stabilization_polygon`` (frame pixels, as pyorc keeps
it) or, by default, the plan view's footprint outside the water: pixels whose point on the
water plane lies between the section's water edges are water (:func:`stable_mask`).

Modes: ``off``; ``on`` (correct every frame); ``auto`` (estimate every frame, correct the
frames that moved more than ``AUTO_THRESHOLD_PX`` RMS; a still camera is left untouched).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ivy_gpu.scaffold.rectify import Rectifier, moved_maps

MODES = ("auto", "on", "off")

#: ``auto`` corrects a frame whose stable-region points moved more than this (RMS, px).
AUTO_THRESHOLD_PX = 0.2

#: A correction whose mean RANSAC inlier fraction is below this is reported as less sure: the
#: stable region holds moving things. Rigid synthetic banks give 1.00 (every frame above 0.8
#: in the tests); Ngwerere's grass and shrubs 0.73, where the tracker's settings alone move Q
#: by 2 % (docs/benchmarks.md).
STABLE_INLIERS_MIN = 0.8


@dataclass
class MotionReport:
    """Camera motion found in one video (frame pixels, against the reference frame)."""

    mode: str
    frames: int = 0
    rms_px: float = 0.0
    max_px: float = 0.0
    max_rotation_deg: float = 0.0
    inlier_fraction: float = float("nan")
    corrected_frames: int = 0
    features: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "mode": self.mode,
            "frames": self.frames,
            "rms_px": self.rms_px,
            "max_px": self.max_px,
            "max_rotation_deg": self.max_rotation_deg,
            "inlier_fraction": self.inlier_fraction,
            "corrected_frames": self.corrected_frames,
            "features": self.features,
        }


def footprint_mask(rect: Any) -> np.ndarray:
    """Frame pixels the plan view covers (uint8 0/255)."""
    w, h = rect.frame_size
    mask = np.zeros((h, w), np.uint8)
    x = np.round(rect.map_x[::2, ::2]).astype(int)
    y = np.round(rect.map_y[::2, ::2]).astype(int)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    mask[y[ok], x[ok]] = 255
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))


def stable_mask(rect: Any, line: np.ndarray) -> np.ndarray:
    """The default stable region: the plan view's footprint outside the water (0/255).

    Near the section the scaffold's geometry says where the water is; far up- or
    downstream an oblique channel leaves it, so the region stays inside the footprint.
    """
    stable = cv2.bitwise_and(footprint_mask(rect), cv2.bitwise_not(water_mask(rect, line, 0.1)))
    if (stable > 0).mean() < 0.01:  # no bank in the plan view: the frame outside the water
        stable = cv2.bitwise_not(water_mask(rect, line, 0.1))
    return stable


def water_mask(rect: Any, line: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Frame pixels that see water (uint8 0/255): between the section's water edges.

    The section line's ends are the water edges (spec 10.1); a frame pixel is water when
    its point on the water plane projects onto the line between them (widened by
    ``margin`` of the line's length), however far up- or downstream it lies. With a camera
    matrix every frame pixel is back-projected; otherwise only the plan view's footprint
    is known and marked.
    """
    w, h = rect.frame_size
    cm = getattr(rect.params, "camera_matrix", None)
    if rect.params.method == "camera matrix" and cm is not None:
        from ivy_gpu.scaffold.camera import CameraModel

        step = 4
        ys, xs = np.mgrid[0:h:step, 0:w:step].astype(float)
        world = CameraModel(np.asarray(cm, float)).back_project(
            np.stack([xs, ys], -1).reshape(-1, 2), rect.wse_m
        )
        ends = np.column_stack(rect.pixel_to_world(line[:, 0], line[:, 1]))
        d = ends[1] - ends[0]
        length = float(np.hypot(*d))
        along = ((world[:, :2] - ends[0]) @ d / length).reshape(xs.shape)
        small = ((along >= -margin * length) & (along <= (1 + margin) * length)).astype(np.uint8)
        mask = cv2.resize(small * 255, (w, h), interpolation=cv2.INTER_NEAREST)
    else:
        mask = footprint_mask(rect)
    return cv2.dilate(mask, np.ones((15, 15), np.uint8))


#: Frames at least this wide are tracked at half resolution (see :class:`MotionEstimator`).
HALF_RES_WIDTH = 1600


class MotionEstimator:
    """Tracks corners of the stable region from the reference frame into each frame.

    Corners are found on the full-resolution reference. Frames at least
    :data:`HALF_RES_WIDTH` pixels wide are tracked at half resolution with an 11 px window
    and 3 pyramid levels (the same ground footprint and search range as 21 px and 4 levels
    at full resolution) for about a third of the cost; on Ngwerere's 1080p frames the two
    agree to 0.06 px (median over frames) and differ by about 2 px on 3 of 149 frames where
    the full-resolution estimate itself jumps by 1-2 px from frame to frame
    (``docs/benchmarks.md``). ``scale`` forces a tracking scale (1.0 or 0.5).
    """

    def __init__(
        self, reference: np.ndarray, stable: np.ndarray | None = None, scale: float | None = None
    ) -> None:
        self.reference = np.ascontiguousarray(reference)
        pts = cv2.goodFeaturesToTrack(
            self.reference, maxCorners=400, qualityLevel=0.01, minDistance=8, mask=stable
        )
        self.points = np.zeros((0, 1, 2), np.float32) if pts is None else pts.astype(np.float32)
        if scale is None:
            scale = 0.5 if self.reference.shape[1] >= HALF_RES_WIDTH else 1.0
        if scale not in (0.5, 1.0):
            raise ValueError(f"scale: {scale} is not 0.5 or 1.0")
        self.scale = scale
        self.window, self.levels = (11, 2) if scale < 1 else (21, 3)
        self._ref = self._scaled(self.reference)
        self._pts = self._to_scaled(self.points)

    def _scaled(self, frame: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return np.ascontiguousarray(frame)
        return cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)

    def _to_scaled(self, p: np.ndarray) -> np.ndarray:
        # pixel centres: a 2 x 2 average's centre (x + 0.5) / 2 - 0.5; full scale untouched
        if self.scale == 1.0:
            return p
        return ((p + 0.5) * self.scale - 0.5).astype(np.float32)

    def _from_scaled(self, p: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return p
        return ((p + 0.5) / self.scale - 0.5).astype(np.float32)

    def estimate(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """``(A, inlier fraction)``: A (2 x 3) maps reference pixels to this frame's."""
        if len(self.points) < 6:
            return None, 0.0
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(
            self._ref,
            self._scaled(frame),
            self._pts,
            None,
            winSize=(self.window, self.window),
            maxLevel=self.levels,
        )
        nxt = self._from_scaled(nxt)
        ok = status.ravel() == 1
        if ok.sum() < 6:
            return None, 0.0
        a, inliers = cv2.estimateAffinePartial2D(
            self.points[ok],
            nxt[ok],
            method=cv2.RANSAC,
            ransacReprojThreshold=1.0,
            maxIters=2000,
            confidence=0.995,
        )
        if a is None:
            return None, 0.0
        return a, float(inliers.sum()) / len(self.points)

    def displacement(self, a: np.ndarray) -> float:
        """RMS displacement (px) of the tracked reference points under ``a``."""
        p = self.points.reshape(-1, 2).astype(float)
        moved = p @ a[:, :2].T + a[:, 2]
        return float(np.sqrt(np.mean(np.sum((moved - p) ** 2, axis=1))))


class MovedTables(Rectifier):
    """The remap tables of a frame that moved: the reference's tables and the motion ``a``.

    ``map_x``/``map_y`` (:func:`moved_maps` of the base's) are computed the first time they
    are read: the CPU engines read them; the GPU engine composes the motion into the base
    tables it keeps on the device (two element-wise passes per frame) and never asks, so a
    moved frame costs no host composition and no upload of its tables.

    Attributes
    ----------
    base : Rectifier
        The tables of the reference frame.
    motion : ndarray (2, 3)
        Reference -> this frame's pixels.
    """

    def __init__(self, base: Rectifier, a: np.ndarray) -> None:  # noqa: D107 - documented above
        skip = ("map_x", "map_y")
        self.__dict__.update({k: v for k, v in base.__dict__.items() if k not in skip})
        self.base = base
        self.motion = np.asarray(a, np.float64)

    @functools.cached_property
    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        return moved_maps(self.base.map_x, self.base.map_y, self.motion)

    @property
    def map_x(self) -> np.ndarray:  # type: ignore[override]
        """Columns of the moved frame each rectified pixel reads."""
        return self._maps[0]

    @property
    def map_y(self) -> np.ndarray:  # type: ignore[override]
        """Rows of the moved frame each rectified pixel reads."""
        return self._maps[1]

    @property
    def output_shape(self) -> tuple[int, int]:
        """(rows, cols) of the rectified image (the base's, without composing)."""
        return self.base.output_shape

    def band(self, y_lo: int, y_hi: int, x_lo: int, x_hi: int) -> MovedTables:
        """The band of the base tables, with the same motion."""
        return MovedTables(self.base.band(y_lo, y_hi, x_lo, x_hi), self.motion)


def compose(tables: Any, a: np.ndarray) -> MovedTables:
    """The remap tables of a frame that moved by ``a`` (reference -> frame pixels).

    The table gives, per rectified pixel, where the reference frame saw it; the moved
    frame sees that point at ``a @ (x, y, 1)``. Composed when first read
    (:class:`MovedTables`).
    """
    return MovedTables(tables, a)


def summarize(
    mode: str,
    shifts: list[float],
    rotations: list[float],
    inliers: list[float],
    corrected: int,
    features: int,
) -> MotionReport:
    """The per-video report from the per-frame estimates."""
    r = MotionReport(mode=mode, frames=len(shifts), corrected_frames=corrected, features=features)
    if shifts:
        s = np.asarray(shifts)
        r.rms_px = float(np.sqrt(np.mean(s**2)))
        r.max_px = float(s.max())
        r.max_rotation_deg = float(np.max(np.abs(rotations))) if rotations else 0.0
        r.inlier_fraction = float(np.mean(inliers)) if inliers else float("nan")
    return r


def stabilize_mode(scaffold: Any, stabilize: str | None) -> str:
    """``auto``, ``on`` or ``off``: as given, else ``on`` when the scaffold asks for it."""
    from ivy_gpu.checks import check_choice
    from ivy_gpu.frames.stabilize import MODES

    if stabilize is None:
        flag = (scaffold.project.get("ffmpeg_parameters") or {}).get("stabilize")
        return "on" if flag is True else "auto"
    return check_choice("stabilize", stabilize, MODES)
