"""Small argument checks shared by the public functions.

Each raises a one-line ``ValueError`` naming the argument and the problem, and
runs before any device transfer.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterable

import numpy as np

#: The largest image (in pixels) an input may decode to: 100 Mpx, a 10,000 x 10,000 frame.
MAX_IMAGE_PIXELS = 100_000_000


def check_finite(name: str, value: object, what: str = "number") -> float:
    """Return ``value`` as a finite float, else one line naming ``name`` and ``what`` it wants."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a {what}, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be a finite {what}, got {value!r}")
    return v


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is finite and > 0 (or >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be finite and {bound}, got {value!r}")
    return v


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    """Return ``value`` as float if ``lo <= value <= hi``."""
    v = check_positive(name, value, allow_zero=True) if lo >= 0 else float(value)
    if not (lo <= v <= hi):
        raise ValueError(f"{name}: must be in [{lo:g}, {hi:g}], got {value!r}")
    return v


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: unknown value {value!r}; choose one of {', '.join(choices)}")
    return value


def check_even_int(name: str, value: int, minimum: int) -> int:
    """Return ``value`` if it is an even integer >= ``minimum``."""
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or v % 2:
        raise ValueError(f"{name}: must be an even integer >= {minimum}, got {value!r}")
    return v


def check_stack(stack: np.ndarray, min_frames: int = 4) -> np.ndarray:
    """Check a ``(frames, rows, cols)`` uint8 or float32 stack."""
    if not (isinstance(stack, np.ndarray) or hasattr(stack, "__cuda_array_interface__")):
        raise ValueError(f"stack: expected a numpy (or cupy) array, got {type(stack).__name__}")
    if stack.ndim != 3:
        raise ValueError(f"stack: expected shape (frames, rows, cols), got shape {stack.shape}")
    if stack.dtype not in (np.uint8, np.float32):
        raise ValueError(f"stack: dtype {stack.dtype} is not supported; use uint8 or float32")
    t, h, w = stack.shape
    if t < min_frames or h < 2 or w < 2:
        raise ValueError(
            f"stack: needs at least {min_frames} frames of 2x2 pixels, got shape {stack.shape}"
        )
    return stack


def check_nodes(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return nodes as an ``(n, 2)`` float64 array after checking they lie in the image."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or ya.ndim != 1 or xa.shape != ya.shape or xa.size == 0:
        raise ValueError(
            f"x, y: expected two non-empty 1-D arrays of equal length, got shapes "
            f"{xa.shape} and {ya.shape}"
        )
    for name, arr, hi in (("x", xa, width - 1), ("y", ya, height - 1)):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > hi)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: node {k} at {float(arr[k])!r} is outside the stack (valid 0 to {hi})"
            )
    return np.column_stack([xa, ya])


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(value: object, name: str = "time") -> float | None:
    """Seconds from ``ss[.s]``, ``MM:SS[.s]`` or ``HH:MM:SS[.fff]`` (None or empty -> None).

    Raises
    ------
    ValueError
        Any other format, or a negative value.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: must be a finite time >= 0, got {value!r}")
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"{name}: {text!r} is not seconds, MM:SS or HH:MM:SS[.fff]")
    a, b, sec = m.groups()
    if b is not None:  # HH:MM:SS
        hours, minutes = int(a), int(b)
    else:
        hours, minutes = 0, int(a) if a is not None else 0
    return 3600.0 * hours + 60.0 * minutes + float(sec)


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """``(width, height)`` from an encoded image's header, without decoding its pixels.

    Raises
    ------
    ValueError
        Naming ``name``: not an image, or more than :data:`MAX_IMAGE_PIXELS` (a 1.6 KiB PNG
        can declare 30,000 x 30,000 pixels, 900 MB decoded).
    """
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # Pillow's own bomb check: ours below names the size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ValueError(f"{name}: not a readable image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{name}: the image declares {width} x {height} pixels, more than "
            f"{MAX_IMAGE_PIXELS // 1_000_000} Mpx: refused before decoding"
        )
    return int(width), int(height)


def decode_image(data: bytes, name: str, color: bool = True) -> np.ndarray:
    """Decode an encoded image (BGR, or as stored) after :func:`image_size` allowed it.

    Raises
    ------
    ValueError
        Naming ``name``: not an image, too large, or undecodable.
    """
    import cv2

    image_size(data, name)
    flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ValueError(f"{name}: cannot decode the image")
    return img
