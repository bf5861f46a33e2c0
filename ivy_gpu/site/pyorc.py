"""Import a pyOpenRiverCam (pyorc) camera configuration as an ivy_gpu site.

pyorc's ``CameraConfig`` JSON holds the GCPs (``gcps.src``: pixel column, row;
``gcps.dst``: x, y or x, y, z in the config's CRS; ``z_0``: the water level of the
calibration in that vertical datum; ``h_ref``: the local gauge reading at that time),
the intrinsics (``camera_matrix``, ``dist_coeffs``), the CRS (WKT or EPSG), the area
of interest (``bbox``, a WKT polygon), the plan-view ``resolution`` (m) and, when set,
the stable-ground polygon ``stabilize`` (frame pixels), which becomes the scaffold's
``stabilization_polygon``.

GCPs given as x, y lie on the water surface at ``z_0``. A video with gauge reading
``h`` has its water surface at ``z_0 + (h - h_ref)``, as pyorc defines it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.fileio import read_json
from ivy_gpu.scaffold.lens import LensModel


@dataclass(frozen=True)
class PyorcCamera:
    """The parts of a pyorc camera configuration a site needs (metres, site CRS)."""

    source: str
    size: tuple[int, int] | None
    pixel: np.ndarray
    world: np.ndarray
    z_0: float
    h_ref: float
    lens: LensModel | None
    crs: str | None
    bbox: np.ndarray | None  # polygon vertices (n, 2)
    resolution: float | None
    lens_position: np.ndarray | None
    stabilize: np.ndarray | None = None  # stable-ground polygon, frame pixels (n, 2)

    def water_level(self, h: float | None = None) -> float:
        """Water-surface elevation for a gauge reading ``h`` (``z_0`` when None)."""
        return self.z_0 if h is None else self.z_0 + (float(h) - self.h_ref)

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """The bbox polygon's bounding box (x0, x1, y0, y1)."""
        if self.bbox is None:
            return None
        lo, hi = self.bbox.min(0), self.bbox.max(0)
        return (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


def _polygon(wkt: str, src: str) -> np.ndarray:
    if not re.match(r"\s*POLYGON\s*\(\(", wkt, re.I):
        raise ValueError(f"{src}: bbox is not a WKT POLYGON")
    nums = [float(v) for v in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", wkt)]
    return np.array(nums, float).reshape(-1, 2)


def read_pyorc_camera(path: str | Path) -> PyorcCamera:
    """Read a pyorc camera-configuration JSON.

    Raises
    ------
    ValueError
        One line naming the file: not JSON, no GCPs, mismatched ``src``/``dst``.
    """
    path = Path(path)
    src = str(path)
    d = read_json(path, "pyorc camera configuration")
    g = d.get("gcps") if isinstance(d, dict) else None
    if not isinstance(g, dict) or "src" not in g or "dst" not in g:
        raise ValueError(f"{src}: no 'gcps' with 'src' and 'dst' (not a pyorc camera config?)")
    try:
        pixel = np.asarray(g["src"], float).reshape(-1, 2)
        dst = [list(map(float, p)) for p in g["dst"]]
        z_0 = float(g["z_0"]) if g.get("z_0") is not None else None
        h_ref = float(g.get("h_ref") or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"{src}: gcps src/dst/z_0/h_ref must be numbers") from None
    if len(dst) != len(pixel) or {len(p) for p in dst} - {2, 3}:
        raise ValueError(f"{src}: gcps 'src' and 'dst' must pair (x, y[, z]) with (col, row)")
    if any(len(p) == 2 for p in dst) and z_0 is None:
        raise ValueError(f"{src}: GCPs without z need gcps.z_0 (their water level)")
    world = np.array([p if len(p) == 3 else [*p, z_0] for p in dst])
    lens = None
    if d.get("camera_matrix") is not None:
        lens = LensModel.from_dict(
            {"camera_matrix": d["camera_matrix"], "dist_coeffs": d.get("dist_coeffs")}, src
        )
    size = (int(d["width"]), int(d["height"])) if d.get("width") and d.get("height") else None
    crs = d.get("crs")
    if isinstance(crs, int):
        crs = f"EPSG:{crs}"
    lp = d.get("lens_position")
    stab = d.get("stabilize")
    try:
        stab = None if not stab else np.asarray(stab, float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(f"{src}: 'stabilize' must be a polygon of (column, row) pixels") from None
    if stab is not None and len(stab) < 3:
        raise ValueError(f"{src}: 'stabilize' needs at least 3 points")
    return PyorcCamera(
        source=src,
        size=size,
        pixel=pixel,
        world=world,
        z_0=float(z_0 if z_0 is not None else np.median(world[:, 2])),
        h_ref=h_ref,
        lens=lens,
        crs=crs,
        bbox=_polygon(d["bbox"], src) if d.get("bbox") else None,
        resolution=float(d["resolution"]) if d.get("resolution") else None,
        lens_position=None if lp is None else np.asarray(lp, float).ravel(),
        stabilize=stab,
    )
