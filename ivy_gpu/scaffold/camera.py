"""Camera models from ground control points (domain specification, sections 5.2 to 5.4).

``solve_camera_matrix`` is IVyTools' normalized DLT (one pooled standard deviation
per point set, SVD, no non-linear refinement); ``CameraModel`` projects world
points to pixels and back-projects pixels onto a horizontal plane. The
rectification RMSE is computed the right way (spec section 14.1-14.2): each GCP
back-projected at its *own* elevation, root of the mean squared error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _normalizer(points: np.ndarray) -> np.ndarray:
    """IVyTools' similarity normalization: per-column mean, one pooled std."""
    dim = points.shape[1]
    s = float(np.std(points))
    t = np.eye(dim + 1)
    t[:dim, :dim] *= s
    t[:dim, dim] = points.mean(axis=0)
    return np.linalg.inv(t)


def solve_camera_matrix(world: np.ndarray, pixel: np.ndarray, source: str = "GCPs") -> np.ndarray:
    """Solve the 3x4 camera matrix P (scaled so P[2, 3] = 1) from >= 6 non-coplanar GCPs.

    Raises
    ------
    ValueError
        Fewer than 6 points, mismatched arrays, or a degenerate (e.g. coplanar) set.
    """
    world = np.asarray(world, dtype=np.float64)
    pixel = np.asarray(pixel, dtype=np.float64)
    n = world.shape[0]
    if world.shape != (n, 3) or pixel.shape != (n, 2):
        raise ValueError(
            f"{source}: expected N x 3 world and N x 2 pixel coordinates, "
            f"got {world.shape} and {pixel.shape}"
        )
    if n < 6:
        raise ValueError(f"{source}: the camera-matrix method needs at least 6 GCPs, got {n}")
    if not (np.all(np.isfinite(world)) and np.all(np.isfinite(pixel))):
        raise ValueError(f"{source}: GCP coordinates must be finite")
    tw, ti = _normalizer(world), _normalizer(pixel)
    wn = (tw @ np.column_stack([world, np.ones(n)]).T).T[:, :3]
    pn = (ti @ np.column_stack([pixel, np.ones(n)]).T).T[:, :2]
    a = np.zeros((2 * n, 12))
    for k, ((x, y, z), (u, v)) in enumerate(zip(wn, pn, strict=True)):
        a[2 * k] = [x, y, z, 1, 0, 0, 0, 0, -u * x, -u * y, -u * z, -u]
        a[2 * k + 1] = [0, 0, 0, 0, x, y, z, 1, -v * x, -v * y, -v * z, -v]
    _, sv, vt = np.linalg.svd(a)
    if sv[-2] < 1e-9 * sv[0] or np.linalg.matrix_rank(world - world.mean(0), tol=1e-6) < 3:
        raise ValueError(
            f"{source}: GCPs are degenerate (coplanar or repeated); the camera "
            "matrix cannot be solved"
        )
    p = np.linalg.pinv(ti) @ vt[-1].reshape(3, 4) @ tw
    if abs(p[2, 3]) < 1e-15:
        raise ValueError(f"{source}: camera matrix is singular (P[2, 3] = 0)")
    return p / p[2, 3]


@dataclass(frozen=True)
class CameraModel:
    """A 3x4 pinhole camera matrix with projection helpers."""

    matrix: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """Camera centre C = -M^-1 p4 in world metres."""
        return -np.linalg.solve(self.matrix[:, :3], self.matrix[:, 3])

    def project(self, world: np.ndarray) -> np.ndarray:
        """World points (..., 3) to pixels (..., 2) as (column, row)."""
        w = np.asarray(world, dtype=np.float64)
        h = w @ self.matrix[:, :3].T + self.matrix[:, 3]
        return h[..., :2] / h[..., 2:3]

    def back_project(self, pixel: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """Pixels (..., 2) onto the horizontal plane(s) Z = z; returns world (..., 3)."""
        px = np.asarray(pixel, dtype=np.float64)
        rays = np.concatenate([px, np.ones(px.shape[:-1] + (1,))], axis=-1)
        d = rays @ np.linalg.inv(self.matrix[:, :3]).T
        c = self.centre
        t = (np.asarray(z) - c[2]) / d[..., 2]
        return c + t[..., None] * d

    def reprojection_rms_px(self, world: np.ndarray, pixel: np.ndarray) -> float:
        """Root mean squared pixel distance between projected GCPs and their picks."""
        err = self.project(world) - pixel
        return float(np.sqrt(np.mean(np.sum(err**2, axis=-1))))

    def rmse_m(self, world: np.ndarray, pixel: np.ndarray) -> float:
        """Horizontal RMSE (m): each GCP pixel back-projected at its own elevation."""
        xy = self.back_project(pixel, world[:, 2])[:, :2]
        return float(np.sqrt(np.mean(np.sum((xy - world[:, :2]) ** 2, axis=-1))))


def scale_gsd(world: np.ndarray, pixel: np.ndarray) -> float:
    """Ground distance over pixel distance of the two GCPs of the scale method."""
    if world.shape[0] != 2:
        raise ValueError(f"GCPs: the scale method needs exactly 2 GCPs, got {world.shape[0]}")
    dpx = float(np.hypot(*(pixel[1] - pixel[0])))
    if dpx == 0:
        raise ValueError("GCPs: the two scale GCPs share a pixel")
    return float(np.hypot(*(world[1, :2] - world[0, :2]))) / dpx
