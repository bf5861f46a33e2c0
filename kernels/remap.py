"""Apply rectification remap tables to frames.

``remap_cv2`` is the CPU path (OpenCV ``remap``, multi-threaded); ``remap_xp`` applies
the same tables with ``map_coordinates`` of the array namespace's ndimage (SciPy on
the CPU as the reference, ``cupyx.scipy.ndimage`` on the GPU). Samples outside the
frame are 0 in both.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cv2
import numpy as np

INTERPOLATIONS = {"bilinear": (cv2.INTER_LINEAR, 1), "nearest": (cv2.INTER_NEAREST, 0)}


def remap_cv2(
    frame: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    interpolation: str = "bilinear",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rectify one frame (gray or colour) with float32 tables of source (column, row).

    ``out`` (the tables' shape, the frame's dtype), e.g. a frame of the stack, receives
    the result directly instead of through a new array and a copy.
    """
    flag, _ = INTERPOLATIONS[interpolation]
    kw = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if out is None:
        return cv2.remap(frame, map_x, map_y, flag, **kw)
    got = cv2.remap(frame, map_x, map_y, flag, dst=out, **kw)
    if not np.may_share_memory(got, out):  # OpenCV allocated its own (another shape/dtype)
        out[...] = got
    return out


def remap_xp(
    frame: Any,
    map_x: Any,
    map_y: Any,
    xp: ModuleType,
    ndimage: ModuleType,
    interpolation: str = "bilinear",
) -> Any:
    """Rectify one grayscale frame on ``xp`` arrays; returns float32."""
    _, order = INTERPOLATIONS[interpolation]
    coords = xp.stack([map_y, map_x])
    out = ndimage.map_coordinates(
        frame.astype(xp.float32), coords, order=order, mode="constant", cval=0.0
    )
    return out.astype(xp.float32)
