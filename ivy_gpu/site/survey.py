"""Cross-section surveys from the files hydrologists have: AC3 ``.mat``, CSV, GeoJSON.

* AreaComp 3 ``.mat``: stations and elevations (:func:`ivy_gpu.hydraulics.xsection.read_ac3`).
* Station/elevation CSV: columns ``station``, ``elevation`` (or two unnamed columns).
* x, y, z CSV: surveyed points in order across the river; stations are the distance
  along the surveyed polyline from its first point.
* GeoJSON: Point features (or one LineString) with x, y, z, in the file's CRS
  (RFC 7946: lon/lat when it names none); reprojected to the site's CRS with pyproj.

Lengths are metres unless the column header says ``(ft)`` or ``units="ft"`` is given.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.fileio import read_json
from ivy_gpu.hydraulics.xsection import CrossSection, read_ac3
from ivy_gpu.units import M_PER_FT

_X = ("x", "easting", "east")
_Y = ("y", "northing", "north")
_Z = ("z", "elevation", "elev", "bed", "height")
_S = ("station", "stations", "distance", "offset", "s")
GEOGRAPHIC = "OGC:CRS84"


@dataclass(frozen=True)
class Survey:
    """A surveyed section, and where its points lie when they were surveyed as x, y, z.

    Attributes
    ----------
    section : CrossSection
        Stations (from the first point) and bed elevations, metres.
    xy : ndarray or None
        World X, Y (m, site CRS) of each survey point, in station order.
    crs : str or None
        The CRS of ``xy`` (as given to the reader).
    """

    section: CrossSection
    xy: np.ndarray | None = None
    crs: str | None = None

    def point_at(self, station: np.ndarray | float) -> np.ndarray:
        """World X, Y of stations (linear along the surveyed polyline)."""
        if self.xy is None:
            raise ValueError(
                f"{self.section.source}: the survey has no x, y coordinates; "
                "give the section line's ends explicitly"
            )
        b = self.section.stations
        s = np.asarray(station, float)
        return np.stack([np.interp(s, b, self.xy[:, 0]), np.interp(s, b, self.xy[:, 1])], -1)

    def edge_points(self, wse_m: float) -> np.ndarray:
        """World X, Y of the two water edges at ``wse_m``, first point's side first."""
        return self.point_at(np.array(self.section.water_edges(wse_m)))


def _factor(header: str, units: str) -> float:
    h = header.strip().lower()
    if h.endswith("(ft)") or h.endswith("[ft]"):
        return M_PER_FT
    if h.endswith("(m)") or h.endswith("[m]"):
        return 1.0
    return M_PER_FT if units == "ft" else 1.0


def _name(header: str) -> str:
    return header.strip().lower().split("(")[0].split("[")[0].strip()


def _from_xyz(xyz: np.ndarray, units: str, source: str, crs: str | None) -> Survey:
    if len(xyz) < 2:
        raise ValueError(f"{source}: a survey needs at least 2 points")
    step = np.hypot(*np.diff(xyz[:, :2], axis=0).T)
    stations = np.concatenate([[0.0], np.cumsum(step)])
    section = CrossSection(stations, xyz[:, 2], "English" if units == "ft" else "Metric", source)
    return Survey(section, xyz[:, :2].copy(), crs)


def read_survey_csv(path: Path, units: str = "m", crs: str | None = None) -> Survey:
    """Station/elevation or x, y, z CSV (see the module docstring)."""
    src = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise ValueError(f"{src}: cannot read the survey ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise ValueError(f"{src}: the survey is not a UTF-8 CSV text file") from None
    if not rows:
        raise ValueError(f"{src}: the survey is empty")
    header = rows[0]
    try:
        [float(c) for c in header]
        header, data = [f"c{i}" for i in range(len(header))], rows
    except ValueError:
        data = rows[1:]
    names = [_name(h) for h in header]

    def col(aliases: tuple[str, ...]) -> int | None:
        return next((i for i, n in enumerate(names) if n in aliases), None)

    ix, iy, iz, i_s = col(_X), col(_Y), col(_Z), col(_S)
    if ix is not None and iy is not None and iz is not None:
        cols, kind = (ix, iy, iz), "xyz"
    elif i_s is not None and iz is not None:
        cols, kind = (i_s, iz), "se"
    elif len(header) == 2:
        cols, kind = (0, 1), "se"
    elif len(header) == 3 and all(n.startswith("c") for n in names):
        cols, kind = (0, 1, 2), "xyz"
    else:
        raise ValueError(
            f"{src}: cannot tell the survey's columns; name them x, y, z or station, elevation"
        )
    if not data:
        raise ValueError(f"{src}: the survey has no data rows")
    try:
        a = np.array([[float(r[i]) for i in cols] for r in data])
    except (ValueError, IndexError):
        raise ValueError(f"{src}: the survey has a missing or non-numeric value") from None
    if not np.isfinite(a).all():
        raise ValueError(f"{src}: the survey has a NaN or infinite value")
    a = a * np.array([_factor(header[i], units) for i in cols])
    if kind == "xyz":
        return _from_xyz(a, units, src, crs)
    order = np.argsort(a[:, 0], kind="stable")
    section = CrossSection(a[order, 0], a[order, 1], "English" if units == "ft" else "Metric", src)
    return Survey(section)


def geojson_crs(data: dict) -> str:
    """The CRS a GeoJSON names (``crs.properties.name``), else lon/lat (RFC 7946)."""
    name = ((data.get("crs") or {}).get("properties") or {}).get("name")
    if not name:
        return GEOGRAPHIC
    name = str(name)
    if "CRS84" in name.upper():
        return GEOGRAPHIC
    if "EPSG" in name.upper():
        return "EPSG:" + name.replace("::", ":").rsplit(":", 1)[-1]
    return name


def transform_xy(xy: np.ndarray, src_crs: str, dst_crs: str, source: str) -> np.ndarray:
    """Reproject X, Y (n, 2) between CRSs (pyproj; x = easting/longitude first)."""
    try:
        from pyproj import CRS, Transformer
    except ImportError:  # pragma: no cover - pyproj is in the site and dev extras
        raise ValueError(
            f"{source}: coordinates in {src_crs} need pyproj (pip install 'ivy_gpu[site]')"
        ) from None
    try:
        a, b = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    except Exception as exc:  # pyproj raises its own CRSError
        raise ValueError(f"{source}: unknown CRS ({exc})") from None
    if a == b:
        return np.asarray(xy, float)
    t = Transformer.from_crs(a, b, always_xy=True)
    x, y = t.transform(np.asarray(xy)[:, 0], np.asarray(xy)[:, 1])
    return np.column_stack([x, y])


def read_geojson_points(path: Path, crs: str | None = None) -> np.ndarray:
    """x, y, z (n, 3) of a GeoJSON's Point features (or LineString vertices), in ``crs``."""
    src = str(path)
    data = read_json(path, "GeoJSON")
    feats = data.get("features") if isinstance(data, dict) else None
    if not feats:
        raise ValueError(f"{src}: a GeoJSON FeatureCollection with features is expected")
    pts = []
    for f in feats:
        g = f.get("geometry") or {}
        if g.get("type") == "Point":
            pts.append(g["coordinates"])
        elif g.get("type") == "LineString":
            pts += g["coordinates"]
    if not pts or min(len(p) for p in pts) < 3:
        raise ValueError(f"{src}: expected Point or LineString features with x, y, z coordinates")
    a = np.array([p[:3] for p in pts], float)
    file_crs = geojson_crs(data)
    if crs is not None:
        a[:, :2] = transform_xy(a[:, :2], file_crs, crs, src)
    elif file_crs == GEOGRAPHIC:
        raise ValueError(f"{src}: the points are lon/lat; give the site's projected CRS")
    return a


def read_survey(path: str | Path, units: str = "m", crs: str | None = None) -> Survey:
    """Read a survey by its file type (``.mat``, ``.csv``/``.txt``, ``.geojson``/``.json``).

    Parameters
    ----------
    path : path
        The survey file.
    units : {"m", "ft"}
        Lengths without a ``(m)``/``(ft)`` header suffix (CSV) and GeoJSON elevations.
    crs : str, optional
        The site's CRS; GeoJSON points are reprojected into it.
    """
    path = Path(path)
    if units not in ("m", "ft"):
        raise ValueError(f"{path}: survey units must be 'm' or 'ft', got {units!r}")
    if not path.is_file():
        raise ValueError(f"{path}: survey file not found")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return Survey(read_ac3(path))
    if suffix in (".csv", ".txt"):
        return read_survey_csv(path, units, crs)
    if suffix in (".geojson", ".json"):
        a = read_geojson_points(path, crs)
        if units == "ft":
            a = a * np.array([1.0, 1.0, M_PER_FT])
        return _from_xyz(a, units, str(path), crs)
    raise ValueError(f"{path}: unknown survey type {suffix!r} (expected .mat, .csv or .geojson)")
