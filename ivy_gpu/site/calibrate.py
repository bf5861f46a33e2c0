"""Camera calibration from ground control points, choosing the method from what is given.

=============================================  =================================================
GCPs (and intrinsics)                          method
=============================================  =================================================
2                                              scale (nadir camera: similarity, mirror image)
>= 4 with known intrinsics                     pose by ``cv2.solvePnP`` (RANSAC when > 4),
                                               refined by Levenberg-Marquardt
>= 6 at different heights                      IVyTools' normalized DLT, then Levenberg-Marquardt
                                               on the reprojection error
>= 4 on one horizontal plane                   homography (least squares)
=============================================  =================================================

Everything is solved about a local origin (the GCPs' centroid), so projected
coordinates in the millions (UTM) lose no precision, then shifted back. Residuals
are reported per GCP in pixels (projected minus picked) and in metres (the picked
pixel back-projected onto the GCP's own elevation, minus its surveyed X, Y).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.optimize import least_squares

from ivy_gpu.scaffold.camera import CameraModel, solve_camera_matrix
from ivy_gpu.scaffold.lens import LensModel

#: Heights spread below this fraction of the GCPs' horizontal span count as one plane.
FLAT_FRACTION = 1e-3
#: RANSAC inlier threshold of the PnP pose (pixels).
RANSAC_PX = 8.0


@dataclass(frozen=True)
class Calibration:
    """A solved camera and how well it fits its GCPs.

    Attributes
    ----------
    method : str
        The scaffold's ``rectification_method``: ``"camera matrix"``, ``"homography"`` or
        ``"scale"``.
    solver : str
        How it was solved (``"pnp"``, ``"pnp+ransac"``, ``"dlt+lm"``, ``"homography"``,
        ``"scale"``).
    world, pixel : ndarray
        The GCPs used (metres; raw frame pixels).
    camera_matrix : ndarray or None
        3x4 P (ideal pixels; P[2, 3] = 1) for ``camera matrix``.
    homography : ndarray or None
        3x3 map from world (X, Y, 1) on the plane ``plane_z`` to ideal pixels.
    plane_z : float or None
        Elevation of the homography's plane.
    lens : LensModel or None
        Intrinsics and distortion (raw pixels = lens.distort(ideal pixels)).
    residual_px, residual_m : ndarray
        Per-GCP reprojection error (px) and back-projected horizontal error (m).
    inliers : ndarray of bool
    notes : tuple of str
    """

    method: str
    solver: str
    world: np.ndarray
    pixel: np.ndarray
    camera_matrix: np.ndarray | None = None
    homography: np.ndarray | None = None
    plane_z: float | None = None
    lens: LensModel | None = None
    residual_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    notes: tuple[str, ...] = ()

    def ideal_pixels(self, world: np.ndarray) -> np.ndarray:
        """World points (n, 3) to ideal (undistorted) pixels (n, 2)."""
        w = np.asarray(world, float).reshape(-1, 3)
        if self.camera_matrix is not None:
            return CameraModel(self.camera_matrix).project(w)
        h = np.column_stack([w[:, :2], np.ones(len(w))]) @ self.homography.T
        return h[:, :2] / h[:, 2:3]

    def project(self, world: np.ndarray) -> np.ndarray:
        """World points (n, 3) to raw frame pixels (n, 2)."""
        ideal = self.ideal_pixels(world)
        if self.lens is None:
            return ideal
        return np.column_stack(self.lens.distort(ideal[:, 0], ideal[:, 1]))

    def back_project(self, pixel: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """Raw pixels (n, 2) to world X, Y (n, 2) on the plane(s) Z = z."""
        px = np.asarray(pixel, float).reshape(-1, 2)
        if self.lens is not None:
            px = self.lens.undistort(px)
        if self.camera_matrix is not None:
            return CameraModel(self.camera_matrix).back_project(px, z)[:, :2]
        h = np.column_stack([px, np.ones(len(px))]) @ np.linalg.inv(self.homography).T
        return h[:, :2] / h[:, 2:3]

    @property
    def rms_px(self) -> float:
        """Root mean square reprojection error of the inliers (px)."""
        r = self.residual_px[self.inliers]
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")

    @property
    def rms_m(self) -> float:
        """Root mean square horizontal error of the inliers (m)."""
        r = self.residual_m[self.inliers]
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")

    def report(self, ids: tuple[str, ...] | None = None) -> str:
        """Method, RMS and one line per GCP."""
        n = len(self.world)
        ids = ids or tuple(f"GCP{i + 1}" for i in range(n))
        lines = [
            f"calibration: {self.method} ({self.solver}), {int(self.inliers.sum())}/{n} GCPs, "
            f"RMS {self.rms_px:.2f} px, {self.rms_m:.4f} m"
        ]
        for i in range(n):
            tag = "" if self.inliers[i] else "  (outlier, not used)"
            lines.append(
                f"  {ids[i]}: {self.residual_px[i]:7.2f} px {self.residual_m[i]:8.4f} m{tag}"
            )
        lines += [f"  note: {t}" for t in self.notes]
        return "\n".join(lines)


def with_residuals(c: Calibration) -> Calibration:
    """``c`` with its per-GCP residuals (px and m) computed."""
    px = np.hypot(*(c.project(c.world) - c.pixel).T)
    m = np.hypot(*(c.back_project(c.pixel, c.world[:, 2]) - c.world[:, :2]).T)
    inl = c.inliers if c.inliers.size else np.ones(len(c.world), bool)
    return replace(c, residual_px=px, residual_m=m, inliers=inl)


def _shift(origin: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = -origin
    return t


def _project_p(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    h = w @ p[:, :3].T + p[:, 3]
    return h[:, :2] / h[:, 2:3]


def refine_camera_matrix(p0: np.ndarray, world: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt on the pixel reprojection error of a 3x4 P (11 free entries).

    Solved in IVyTools' normalized coordinates (isotropic, so the cost is the pixel
    error up to one scale) with the entry P'[2, 3] held fixed.
    """
    from ivy_gpu.scaffold.camera import _normalizer

    tw, ti = _normalizer(world), _normalizer(pixel)
    wn = (tw @ np.column_stack([world, np.ones(len(world))]).T).T[:, :3]
    pn = (ti @ np.column_stack([pixel, np.ones(len(pixel))]).T).T[:, :2]
    q0 = ti @ p0 @ np.linalg.inv(tw)
    q0 = q0 / q0[2, 3]
    free = np.ones(12, bool)
    free[11] = False

    def resid(x: np.ndarray) -> np.ndarray:
        q = np.append(x, 1.0).reshape(3, 4)
        return (_project_p(q, wn) - pn).ravel()

    sol = least_squares(resid, q0.ravel()[free], method="lm", xtol=1e-14, ftol=1e-14)
    q = np.append(sol.x, 1.0).reshape(3, 4)
    p = np.linalg.inv(ti) @ q @ tw
    return p / p[2, 3]


def _check_points(world: np.ndarray, pixel: np.ndarray, source: str) -> None:
    n = len(world)
    if world.shape != (n, 3) or pixel.shape != (n, 2):
        raise ValueError(f"{source}: expected N x 3 world and N x 2 pixel coordinates")
    if not (np.all(np.isfinite(world)) and np.all(np.isfinite(pixel))):
        raise ValueError(f"{source}: every GCP needs finite X, Y, Z and pixel coordinates")
    if n < 2:
        raise ValueError(f"{source}: at least 2 GCPs are needed, got {n}")
    for what, a in (("world", world[:, :2]), ("pixel", pixel)):
        d = np.hypot(*(a[:, None, :] - a[None, :, :]).transpose(2, 0, 1))
        i, j = np.nonzero(np.triu(d < 1e-9, 1))
        if i.size:
            raise ValueError(
                f"{source}: GCPs {i[0] + 1} and {j[0] + 1} share the same {what} position"
            )


def _collinear(xy: np.ndarray) -> bool:
    s = np.linalg.svd(xy - xy.mean(0), compute_uv=False)
    return bool(s[-1] < 1e-3 * s[0])


def solve_scale(world: np.ndarray, pixel: np.ndarray) -> Calibration:
    """Nadir camera from 2 GCPs: a mirrored similarity (image rows run against +Y)."""
    dw = world[1, :2] - world[0, :2]
    dp = pixel[1] - pixel[0] * 1.0
    dp_up = np.array([dp[0], -dp[1]])  # image as seen from above, y up
    s = np.hypot(*dp_up) / np.hypot(*dw)  # px per metre
    rot = np.arctan2(dp_up[1], dp_up[0]) - np.arctan2(dw[1], dw[0])
    c, si = np.cos(rot), np.sin(rot)
    a = s * np.array([[c, -si], [-si, -c]])  # rotate, scale, then flip y
    t = pixel[0] - a @ world[0, :2]
    h = np.array([[a[0, 0], a[0, 1], t[0]], [a[1, 0], a[1, 1], t[1]], [0, 0, 1.0]])
    return with_residuals(
        Calibration(
            "scale",
            "scale",
            world,
            pixel,
            homography=h,
            plane_z=float(world[:, 2].mean()),
            notes=("2 GCPs fit exactly: the residuals cannot show calibration error",),
        )
    )


def solve_homography(world: np.ndarray, pixel: np.ndarray, source: str = "GCPs") -> Calibration:
    """Plane-to-image homography from >= 4 GCPs on one horizontal plane."""
    xy = world[:, :2]
    if _collinear(xy) or _collinear(pixel):
        raise ValueError(f"{source}: the GCPs lie on one line; a homography needs a spread")
    o = xy.mean(0)
    h_local, _ = cv2.findHomography(xy - o, pixel, 0)
    if h_local is None or not np.all(np.isfinite(h_local)):
        raise ValueError(f"{source}: the homography is degenerate (3 or more GCPs on a line?)")
    t = np.array([[1.0, 0, -o[0]], [0, 1, -o[1]], [0, 0, 1]])
    h = h_local @ t
    return with_residuals(
        Calibration(
            "homography", "homography", world, pixel, homography=h / h[2, 2],
            plane_z=float(np.median(world[:, 2])),
        )
    )  # fmt: skip


def solve_dlt(world: np.ndarray, pixel: np.ndarray, source: str = "GCPs") -> Calibration:
    """IVyTools' normalized DLT, refined by Levenberg-Marquardt on the pixel error."""
    p0 = solve_camera_matrix(world, pixel, source)
    p = refine_camera_matrix(p0, world, pixel)
    c = with_residuals(Calibration("camera matrix", "dlt+lm", world, pixel, camera_matrix=p))
    if c.rms_px > CameraModel(p0).reprojection_rms_px(world, pixel) + 1e-6:  # never worse
        c = with_residuals(Calibration("camera matrix", "dlt", world, pixel, camera_matrix=p0))
    return c


def solve_pnp(
    world: np.ndarray, pixel: np.ndarray, lens: LensModel, source: str = "GCPs"
) -> Calibration:
    """Pose from >= 4 GCPs and known intrinsics (RANSAC when > 4), LM-refined."""
    n = len(world)
    if n < 4:
        raise ValueError(f"{source}: a pose from known intrinsics needs at least 4 GCPs, got {n}")
    o = world.mean(0)
    w = np.ascontiguousarray(world - o)
    px = np.ascontiguousarray(pixel, dtype=np.float64)
    k, d = lens.camera_matrix, lens.dist_coeffs
    planar = np.linalg.svd(w - w.mean(0), compute_uv=False)[-1] < FLAT_FRACTION * np.ptp(w[:, :2])
    if _collinear(w[:, :2]) and planar:
        raise ValueError(f"{source}: the GCPs lie on one line; the pose is undetermined")
    inliers = np.ones(n, bool)
    solver = "pnp"
    if n > 4:
        cv2.setRNGSeed(0)  # RANSAC's sampling, fixed for reproducible sites
        ok, rvec, tvec, idx = cv2.solvePnPRansac(
            w, px, k, d, iterationsCount=500, reprojectionError=RANSAC_PX, confidence=0.999
        )
        if ok and idx is not None and len(idx) >= 4:
            inliers = np.zeros(n, bool)
            inliers[idx.ravel()] = True
            solver = "pnp+ransac"
    if solver == "pnp":
        flag = cv2.SOLVEPNP_IPPE if planar else cv2.SOLVEPNP_SQPNP
        ok, rvec, tvec = cv2.solvePnP(w, px, k, d, flags=flag)
    if not ok:
        raise ValueError(f"{source}: OpenCV found no camera pose for these GCPs")
    rvec, tvec = cv2.solvePnPRefineLM(w[inliers], px[inliers], k, d, rvec, tvec)
    r, _ = cv2.Rodrigues(rvec)
    if np.any((w[inliers] @ r.T + tvec.ravel())[:, 2] <= 0):
        raise ValueError(f"{source}: the solved pose puts GCPs behind the camera")
    p = k @ np.column_stack([r, tvec.ravel()]) @ _shift(o)
    notes = ()
    if (~inliers).any():
        notes = (f"RANSAC set aside {int((~inliers).sum())} GCP(s) beyond {RANSAC_PX} px",)
    return with_residuals(
        Calibration(
            "camera matrix", solver, world, pixel, camera_matrix=p / p[2, 3], lens=lens,
            inliers=inliers, notes=notes,
        )
    )  # fmt: skip


def calibrate(
    world: np.ndarray, pixel: np.ndarray, lens: LensModel | None = None, source: str = "GCPs"
) -> Calibration:
    """Solve the camera the way the GCPs (and intrinsics) allow; see the module table.

    Raises
    ------
    ValueError
        One line naming ``source`` and why the set cannot be used (too few points,
        repeated or collinear points, 4-5 points at different heights without intrinsics).
    """
    world = np.asarray(world, float)
    pixel = np.asarray(pixel, float)
    _check_points(world, pixel, source)
    n = len(world)
    if n == 2:
        return solve_scale(world, pixel)
    if lens is not None:
        return solve_pnp(world, pixel, lens, source)
    flat = np.ptp(world[:, 2]) <= FLAT_FRACTION * max(np.ptp(world[:, 0]), np.ptp(world[:, 1]))
    if flat and n >= 4:
        return solve_homography(world, pixel, source)
    if not flat and n >= 6:
        return solve_dlt(world, pixel, source)
    if n == 3:
        raise ValueError(
            f"{source}: 3 GCPs are too few: give 4 on the water plane (homography), "
            "4 with the camera intrinsics (pose), or 6 at different heights"
        )
    raise ValueError(
        f"{source}: {n} GCPs at different heights: a camera matrix needs at least 6, "
        "or give the camera intrinsics for a pose from 4"
    )
