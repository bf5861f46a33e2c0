"""Rectification of camera frames onto the horizontal water plane (spec section 5).

A :class:`Rectifier` holds remap tables for one (scaffold, water-surface elevation,
frame size): build it once, then rectify every frame of every video at that WSE.
For the camera-matrix method the output grid is the scaffold's stored world
extent on the plane Z = WSE (row 0 = largest Y), so the rectified geometry, the
cell size and the cross-section line's pixels do not change with the WSE; only
the source pixels sampled do. Flips are folded into the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ivy_gpu.kernels.remap import remap_cv2
from ivy_gpu.scaffold.lens import LensModel
from ivy_gpu.scaffold.prefilter import PreFilters

METHODS = ("camera matrix", "homography", "scale")


@dataclass(frozen=True)
class RectificationParams:
    """Rectification settings of a scaffold (metres, original-image pixels).

    ``lens``, ``cell_size_m`` and ``world_extent`` are ivy_gpu's own (IVyTools ignores
    them): an OpenCV lens model composed into the tables (the camera matrix or
    homography then gives ideal pixels), a chosen cell size, and for the homography
    method a world box [x0, x1, y0, y1] whose plan view the stored homography maps to
    (row 0 = largest Y, as for the camera matrix). ``crs`` names the coordinate reference
    system of the world coordinates (``EPSG:32735``, a WKT or PROJ string), None when local.
    """

    method: str
    camera_matrix: np.ndarray | None = None
    homography: np.ndarray | None = None
    extent: np.ndarray | None = None
    pixel_coords: np.ndarray | None = None
    world_coords: np.ndarray | None = None
    calibration_wse_m: float | None = None
    pad_x: float = 0.0
    pad_y: float = 0.0
    flip_x: bool = False
    flip_y: bool = False
    prefilters: PreFilters = PreFilters()
    lens: LensModel | None = None
    cell_size_m: float | None = None
    world_extent: np.ndarray | None = None
    crs: str | None = None


def check_frame_size(size: tuple[int, int], calibration_size: tuple[int, int], source: str) -> None:
    """Raise ``ValueError`` naming ``source`` if ``(width, height)`` is not the calibration size."""
    if tuple(size) != tuple(calibration_size):
        raise ValueError(
            f"{source}: frame size {size[0]}x{size[1]} differs from the calibration image "
            f"size {calibration_size[0]}x{calibration_size[1]}"
        )


def camera_cell_size(extent: np.ndarray, width: int, height: int) -> float:
    """Cell size s (m/px) giving the top view about as many pixels as the source frame."""
    x0, x1, y0, y1 = extent
    return float(np.sqrt((x1 - x0) * (y1 - y0)) / np.sqrt(width * height))


def plan_axes(extent, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """World X of the plan view's columns and Y of its rows (row 0 = largest Y), spec 5.2."""
    x0, x1, y0, y1 = (float(v) for v in np.asarray(extent).ravel()[:4])
    xs = np.arange(x0, x1, cell)
    ys = y0 + cell * np.arange(np.arange(y0, y1, cell).size)[::-1]
    return xs, ys


def world_to_plan(extent, cell: float) -> np.ndarray:
    """3x3 map from world (X, Y, 1) to plan-view (column, row, 1), without flips."""
    xs, ys = plan_axes(extent, cell)
    return np.array([[1 / cell, 0, -xs[0] / cell], [0, -1 / cell, ys[0] / cell], [0, 0, 1.0]])


def moved_maps(map_x: Any, map_y: Any, a: np.ndarray, xp: Any = np) -> tuple[Any, Any]:
    """Tables of a frame that moved by ``a`` (2 x 3, reference -> frame pixels).

    ``a @ (map_x, map_y, 1)`` in float64, rounded to float32: the same operations on the
    host (NumPy) and on the device (CuPy), so both give the same tables bit for bit.
    """
    mx, my = map_x.astype(xp.float64), map_y.astype(xp.float64)
    new_x = (a[0, 0] * mx + a[0, 1] * my + a[0, 2]).astype(xp.float32)
    new_y = (a[1, 0] * mx + a[1, 1] * my + a[1, 2]).astype(xp.float32)
    return new_x, new_y


class Rectifier:
    """Remap tables from an original frame to the rectified plan view.

    Parameters
    ----------
    params : RectificationParams
    wse_m : float
        Water-surface elevation (m): the projection plane of the camera-matrix method.
    frame_size : (width, height)
        Size of the frames the tables apply to (the calibration image size).
    cell_size : float, optional
        Camera-matrix cell size (m/px); default from extent and frame size (spec 5.2).
    interpolation : {"bilinear", "nearest"}
        ``"nearest"`` is IVyTools' own.
    """

    def __init__(
        self,
        params: RectificationParams,
        wse_m: float,
        frame_size: tuple[int, int],
        cell_size: float | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        self.params = params
        self.wse_m = float(wse_m)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.interpolation = interpolation
        w, h = self.frame_size
        if params.method == "camera matrix":
            map_x, map_y, self.pixel_gsd = self._camera_tables(w, h, cell_size)
        elif params.method == "homography":
            map_x, map_y, self.pixel_gsd = self._homography_tables(w, h)
        elif params.method == "scale":
            map_x, map_y, self.pixel_gsd = self._scale_tables(w, h)
        else:
            raise ValueError(
                f"rectification_method: unknown method {params.method!r}; "
                f"expected one of {', '.join(METHODS)}"
            )
        if params.lens is not None:  # ideal pixels -> where the lens put them
            map_x, map_y = params.lens.distort(map_x, map_y)
        if not params.prefilters.identity:  # tables then point into the raw decoded frame
            map_x, map_y = params.prefilters.source_coordinates(map_x, map_y, w, h)
        if params.flip_y:
            map_x, map_y = map_x[::-1], map_y[::-1]
        if params.flip_x:
            map_x, map_y = map_x[:, ::-1], map_y[:, ::-1]
        self.map_x = np.ascontiguousarray(map_x, dtype=np.float32)
        self.map_y = np.ascontiguousarray(map_y, dtype=np.float32)

    def band(self, y_lo: int, y_hi: int, x_lo: int, x_hi: int) -> Rectifier:
        """The same tables restricted to rows ``y_lo..y_hi`` and columns ``x_lo..x_hi``.

        Rectifying through the band gives exactly the band of the full rectified frame.
        """
        import copy

        out = copy.copy(self)
        out.map_x = np.ascontiguousarray(self.map_x[y_lo : y_hi + 1, x_lo : x_hi + 1])
        out.map_y = np.ascontiguousarray(self.map_y[y_lo : y_hi + 1, x_lo : x_hi + 1])
        return out

    @property
    def output_shape(self) -> tuple[int, int]:
        """(rows, cols) of the rectified image."""
        return self.map_x.shape

    def _camera_tables(self, w: int, h: int, cell: float | None):
        p = self.params
        if p.camera_matrix is None or p.extent is None:
            raise ValueError(
                "rectification_parameters: camera matrix method needs 'camera_matrix' and 'extent'"
            )
        x0, x1, y0, y1 = (float(v) for v in np.asarray(p.extent).ravel()[:4])
        s = cell or p.cell_size_m or camera_cell_size(np.array([x0, x1, y0, y1]), w, h)
        xs, ys = self._plan_axes(x0, x1, y0, y1, s)
        pm = np.asarray(p.camera_matrix, float)
        # the grid is separable: each projective component is an outer sum of 1-D terms
        col = pm[:, 0:1] * xs[None, :]  # (3, n_x)
        row = pm[:, 1:2] * ys[None, :] + (pm[:, 2:3] * self.wse_m + pm[:, 3:4])  # (3, n_y)
        inv_w = 1.0 / (row[2][:, None] + col[2][None, :])
        map_x = (row[0][:, None] + col[0][None, :]) * inv_w
        map_y = (row[1][:, None] + col[1][None, :]) * inv_w
        return map_x, map_y, s

    def _plan_axes(self, x0: float, x1: float, y0: float, y1: float, s: float):
        xs, ys = plan_axes((x0, x1, y0, y1), s)
        self.x0, self.y_top, self.cell = x0, float(ys[0]), s
        return xs, ys

    def _homography_tables(self, w: int, h: int):
        p = self.params
        if p.homography is not None and p.world_extent is not None and p.cell_size_m:
            # ivy_gpu's plan view: the stored homography maps pixels to its (col, row)
            xs, ys = self._plan_axes(*(float(v) for v in p.world_extent), p.cell_size_m)
            cc, rr = np.meshgrid(np.arange(xs.size, dtype=float), np.arange(ys.size, dtype=float))
            src = np.stack([cc, rr, np.ones_like(cc)], axis=-1) @ np.linalg.inv(p.homography).T
            return src[..., 0] / src[..., 2], src[..., 1] / src[..., 2], p.cell_size_m
        if p.homography is None or p.world_coords is None:
            raise ValueError(
                "rectification_parameters: homography method needs "
                "'homography_matrix' and 'world_coords'"
            )
        world = np.asarray(p.world_coords, float)
        sf = w / float(np.ptp(world[:, 0]))
        side = int(np.ceil(max(w + 2 * p.pad_x, np.ceil(np.ptp(world[:, 1]) * sf) + 2 * p.pad_y)))
        cc, rr = np.meshgrid(np.arange(side, dtype=float), np.arange(side, dtype=float))
        src = np.stack([cc, rr, np.ones_like(cc)], axis=-1) @ np.linalg.inv(p.homography).T
        return src[..., 0] / src[..., 2], src[..., 1] / src[..., 2], 1.0 / sf

    def _scale_tables(self, w: int, h: int):
        from ivy_gpu.scaffold.camera import scale_gsd

        p = self.params
        if p.world_coords is None or p.pixel_coords is None:
            raise ValueError("rectification_parameters: scale method needs 2 GCPs")
        gsd = scale_gsd(
            np.asarray(p.world_coords, float)[:2], np.asarray(p.pixel_coords, float)[:2]
        )
        cc, rr = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
        return cc, rr, gsd

    def check_frame(self, frame: np.ndarray, source: str = "frame") -> None:
        """Raise ``ValueError`` if the frame size differs from the calibration size."""
        h, w = frame.shape[:2]
        check_frame_size((w, h), self.frame_size, source)

    def rectify(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rectify one frame (gray or colour, any dtype OpenCV accepts), into ``out`` if given."""
        self.check_frame(frame)
        return remap_cv2(frame, self.map_x, self.map_y, self.interpolation, out)

    @property
    def has_world_grid(self) -> bool:
        """True when plan-view pixels map linearly to world X, Y.

        So they do for the camera matrix, and for a homography with a world extent.
        """
        return hasattr(self, "cell")

    def pixel_to_world(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World X, Y (m) of rectified pixels, undoing the flips."""
        if not self.has_world_grid:
            raise ValueError("pixel_to_world needs a plan view on a world grid")
        n_y, n_x = self.output_shape
        c = np.asarray(col, float)
        r = np.asarray(row, float)
        if self.params.flip_x:
            c = n_x - 1 - c
        if self.params.flip_y:
            r = n_y - 1 - r
        return self.x0 + c * self.cell, self.y_top - r * self.cell

    def world_to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rectified (column, row) of world X, Y, with the flips."""
        if not self.has_world_grid:
            raise ValueError("world_to_pixel needs a plan view on a world grid")
        n_y, n_x = self.output_shape
        c = (np.asarray(x, float) - self.x0) / self.cell
        r = (self.y_top - np.asarray(y, float)) / self.cell
        if self.params.flip_x:
            c = n_x - 1 - c
        if self.params.flip_y:
            r = n_y - 1 - r
        return c, r
