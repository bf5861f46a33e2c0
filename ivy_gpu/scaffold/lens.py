"""Camera intrinsics with OpenCV's lens-distortion model (k1, k2, p1, p2, k3).

A :class:`LensModel` maps *ideal* pinhole pixels (what a 3x4 camera matrix gives) to
the *raw* pixels of the decoded frame and back. The rectifier composes
:meth:`LensModel.distort` into its remap tables, so frames are never undistorted as
images: each plan-view cell is sampled once, where the lens put it.

The model is OpenCV's: with ``x = (u - cx) / fx``, ``y = (v - cy) / fy`` and
``r^2 = x^2 + y^2``, the distorted point is
``x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)`` and likewise in y.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.fileio import read_json

DIST_NAMES = ("k1", "k2", "p1", "p2", "k3")


@dataclass(frozen=True)
class LensModel:
    """Intrinsic matrix ``K`` (3x3) and distortion ``(k1, k2, p1, p2, k3)``."""

    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray

    def __post_init__(self) -> None:
        k = np.asarray(self.camera_matrix, float)
        d = np.asarray(self.dist_coeffs, float).ravel()
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError("intrinsics: camera_matrix must be a finite 3x3 with fx, fy > 0")
        if d.size > 5 or not np.all(np.isfinite(d)):
            raise ValueError(f"intrinsics: expected up to 5 distortion coefficients {DIST_NAMES}")
        object.__setattr__(self, "camera_matrix", k)
        object.__setattr__(self, "dist_coeffs", np.pad(d, (0, 5 - d.size)))

    @property
    def distorted(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return bool(np.any(self.dist_coeffs != 0))

    def distort(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ideal pixel coordinates to raw (distorted) pixel coordinates."""
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        if not self.distorted:
            return u, v
        k = self.camera_matrix
        k1, k2, p1, p2, k3 = self.dist_coeffs
        y = (v - k[1, 2]) / k[1, 1]
        x = (u - k[0, 2] - k[0, 1] * y) / k[0, 0]
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        return k[0, 0] * xd + k[0, 1] * yd + k[0, 2], k[1, 1] * yd + k[1, 2]

    def undistort(self, pixel: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Raw pixels (n, 2) to ideal pixels: Newton's method on the distortion model."""
        px = np.asarray(pixel, np.float64).reshape(-1, 2)
        if not self.distorted:
            return px.copy()
        k = self.camera_matrix
        k1, k2, p1, p2, k3 = self.dist_coeffs
        yd = (px[:, 1] - k[1, 2]) / k[1, 1]
        xd = (px[:, 0] - k[0, 2] - k[0, 1] * yd) / k[0, 0]
        x, y = xd.copy(), yd.copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            rad = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            d_rad = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
            fx = x * rad + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
            fy = y * rad + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
            a = rad + 2.0 * x * x * d_rad + 2.0 * p1 * y + 6.0 * p2 * x
            b = 2.0 * x * y * d_rad + 2.0 * p1 * x + 2.0 * p2 * y
            d = rad + 2.0 * y * y * d_rad + 6.0 * p1 * y + 2.0 * p2 * x
            det = a * d - b * b
            x, y = x - (d * fx - b * fy) / det, y - (a * fy - b * fx) / det
            if max(np.abs(fx).max(), np.abs(fy).max()) < 1e-13:
                break
        return np.column_stack([k[0, 0] * x + k[0, 1] * y + k[0, 2], k[1, 1] * y + k[1, 2]])

    def to_dict(self) -> dict:
        """The scaffold form (plain lists)."""
        return {
            "camera_matrix": self.camera_matrix.tolist(),
            "dist_coeffs": self.dist_coeffs.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "intrinsics") -> LensModel:
        """Read ``{"camera_matrix", "dist_coeffs"}`` (pyorc's keys) or named values.

        Named values are ``fx``, ``fy`` (or ``f``), ``cx``, ``cy`` and optional ``k1``,
        ``k2``, ``p1``, ``p2``, ``k3``.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: intrinsics must be a JSON object")
        try:
            if "camera_matrix" in d:
                k = np.asarray(d["camera_matrix"], float)
                dist = np.asarray(d.get("dist_coeffs") or [], float).ravel()
            else:
                fx = float(d.get("fx", d.get("f")))
                fy = float(d.get("fy", d.get("f")))
                k = np.array([[fx, 0, float(d["cx"])], [0, fy, float(d["cy"])], [0, 0, 1]])
                dist = np.array([float(d.get(n, 0.0)) for n in DIST_NAMES])
            return cls(k, dist)
        except (KeyError, TypeError, ValueError) as exc:
            msg = str(exc).removeprefix("intrinsics: ")
            raise ValueError(f"{source}: not a usable camera intrinsics object ({msg})") from None


def read_intrinsics(path: str | Path) -> LensModel:
    """Read a camera intrinsics JSON file (see :meth:`LensModel.from_dict`)."""
    data = read_json(path, "intrinsics")
    return LensModel.from_dict(data, str(path))
