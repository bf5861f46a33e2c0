"""Checks of a scaffold's values that need more than a type: geometry and sizes.

Each raises one ``ValueError`` line naming the scaffold and the key, so ``validate`` and
``process`` refuse the same scaffolds before any table is built.
"""

from __future__ import annotations

import math

import numpy as np

from ivy_gpu.checks import MAX_IMAGE_PIXELS, image_size
from ivy_gpu.scaffold.rectify import RectificationParams


def check_extent(extent: np.ndarray | None, where: str) -> None:
    """An extent is four finite numbers with ``x_min < x_max`` and ``y_min < y_max``."""
    if extent is None:
        return
    e = np.asarray(extent, float).ravel()
    if e.size != 4 or not np.isfinite(e).all() or not (e[0] < e[1] and e[2] < e[3]):
        raise ValueError(
            f"{where} must be [x_min, x_max, y_min, y_max] with x_min < x_max and "
            f"y_min < y_max, got {e.tolist()}"
        )


def check_pairs(params: RectificationParams, where: str) -> None:
    """GCP pixels are (x, y) pairs and world points (x, y[, z]), one per GCP."""
    px, world = params.pixel_coords, params.world_coords
    if px is None or world is None:
        return
    px, world = np.asarray(px, float), np.asarray(world, float)
    if px.ndim != 2 or px.shape[1] != 2:
        raise ValueError(f"{where}.pixel_coords must be (x, y) pairs, got shape {px.shape}")
    if world.ndim != 2 or world.shape[1] not in (2, 3):
        raise ValueError(
            f"{where}.world_coords must be (x, y) or (x, y, z) points, got shape {world.shape}"
        )
    if len(px) != len(world):
        raise ValueError(
            f"{where}: pixel_coords has {len(px)} points and world_coords {len(world)}: "
            "one of each per GCP"
        )
    if not (np.isfinite(px).all() and np.isfinite(world).all()):
        raise ValueError(f"{where}: pixel_coords and world_coords must be finite")


def frame_size(project: dict, image: bytes | None, src: str, image_name: str):
    """The video frame size ``(width, height)``: ``video_metadata`` or the image's header.

    ``image`` is the calibration image's bytes (None when the scaffold has none). Either
    must be a plausible frame (whole pixels, at most ``MAX_IMAGE_PIXELS``): the plan view
    and the remap tables are sized from it. None when neither tells.
    """
    meta = project.get("video_metadata") or {}
    if isinstance(meta, dict) and meta.get("width") and meta.get("height"):
        w, h = float(meta["width"]), float(meta["height"])  # types checked on load
        whole = all(math.isfinite(v) and v >= 1 and v == int(v) for v in (w, h))
        if not whole:
            raise ValueError(
                f"{src}: video_metadata: width and height must be whole pixels >= 1, "
                f"got {meta.get('width')!r} x {meta.get('height')!r}"
            )
        if w * h > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"{src}: video_metadata: {int(w)} x {int(h)} pixels is more than "
                f"{MAX_IMAGE_PIXELS // 1_000_000} Mpx"
            )
        return int(w), int(h)
    if image is not None:
        try:
            return image_size(image, f"{src}: {image_name}")
        except ValueError as exc:
            if "not a readable image" in str(exc):
                return None  # as before: no size from an unreadable picture
            raise
    return None
