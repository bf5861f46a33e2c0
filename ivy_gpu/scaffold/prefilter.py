"""The scaffold's FFmpeg geometric pre-filters, folded into the remap tables.

The IVyTools GUI extracts frames through ``rotate`` (when the rotation is > 0), a
flip filter (when ``video_flip`` is not ``none``) and ``lenscorrection`` (whenever the
``calibrate_radial`` key exists, which it always does, with ``i=bilinear``); the
camera matrix was calibrated on such frames (domain specification, sections 4 and
14.15). Both IVyTools batch paths decode raw frames and skip these filters. Here
each filter's sampling map is composed into the rectification tables, so batch
frames are sampled exactly where the GUI's filtered frames were, at no cost per
frame and with one interpolation instead of three.

The conventions were measured against FFmpeg's own filters (libavfilter 11, see
``tests/scaffold/test_prefilter.py``): ``rotate`` turns the picture clockwise about
((W-1)/2, (H-1)/2); ``lenscorrection`` samples the source at
``c + (1 + k1 r^2 + k2 r^4) (p - c)`` with ``c = (int(cx W), int(cy H))`` and ``r``
relative to half the image diagonal, and its bilinear mode samples half a pixel
further in x and y, so even k1 = k2 = 0 shifts the picture by half a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLIPS = ("hflip", "vflip")

#: Coordinate given to samples that left an intermediate frame (remap then returns 0).
OUTSIDE = -1.0e6


@dataclass(frozen=True)
class PreFilters:
    """Geometric filters applied to frames before calibration (FFmpeg order)."""

    rotation_deg: float = 0.0
    flips: tuple[str, ...] = ()
    lens: tuple[float, float, float, float] | None = None  # cx, cy (relative), k1, k2
    lens_bilinear: bool = True

    @property
    def identity(self) -> bool:
        """True when no filter changes the geometry."""
        return self.rotation_deg == 0 and not self.flips and self.lens is None

    @classmethod
    def from_ffmpeg_parameters(cls, params: dict | None, source: str = "scaffold") -> PreFilters:
        """Read the GUI's ``ffmpeg_parameters`` with the GUI's own rules."""
        if not params:
            return cls()
        try:
            rotation = float(params.get("video_rotation") or 0.0)
        except (TypeError, ValueError):
            raise ValueError(
                f"{source}: ffmpeg_parameters.video_rotation is not a number"
            ) from None
        flip = str(params.get("video_flip") or "none").strip().lower()
        flips = () if flip == "none" else tuple(f.strip() for f in flip.split(",") if f.strip())
        for f in flips:
            if f not in FLIPS:
                raise ValueError(
                    f"{source}: ffmpeg_parameters.video_flip {flip!r} is not "
                    "'none', 'hflip', 'vflip' or 'hflip,vflip'"
                )
        lens = None
        if "calibrate_radial" in params:  # the GUI appends the filter whenever the key exists
            try:
                lens = tuple(
                    float(params.get(k, d) if params.get(k) is not None else d)
                    for k, d in (("cx", 0.5), ("cy", 0.5), ("k1", 0.0), ("k2", 0.0))
                )
            except (TypeError, ValueError):
                raise ValueError(
                    f"{source}: ffmpeg_parameters cx, cy, k1, k2 must be numbers"
                ) from None
        return cls(rotation if rotation > 0 else 0.0, flips, lens)

    def source_coordinates(
        self, x: np.ndarray, y: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel coordinates of a filtered frame to the raw decoded frame.

        Undoes the chain last filter first: lens correction, flips, rotation.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.lens is not None:
            cx, cy, k1, k2 = self.lens
            c0, c1 = int(cx * width), int(cy * height)
            dx, dy = x - c0, y - c1
            r2 = (dx * dx + dy * dy) * 4.0 / (width * width + height * height)
            f = 1.0 + k1 * r2 + k2 * r2 * r2
            half = 0.5 if self.lens_bilinear else 0.0
            x, y = c0 + f * dx + half, c1 + f * dy + half
            # FFmpeg's chain blanks what leaves the intermediate frame; so do we
            outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
            x, y = np.where(outside, OUTSIDE, x), np.where(outside, OUTSIDE, y)
        keep = x > OUTSIDE
        if "hflip" in self.flips:
            x = np.where(keep, (width - 1) - x, OUTSIDE)
        if "vflip" in self.flips:
            y = np.where(keep, (height - 1) - y, OUTSIDE)
        if self.rotation_deg:
            a = math.radians(self.rotation_deg)
            c0, c1 = (width - 1) / 2.0, (height - 1) / 2.0
            dx, dy = x - c0, y - c1
            x, y = (
                np.where(keep, c0 + math.cos(a) * dx + math.sin(a) * dy, OUTSIDE),
                np.where(keep, c1 - math.sin(a) * dx + math.cos(a) * dy, OUTSIDE),
            )
        return x, y
