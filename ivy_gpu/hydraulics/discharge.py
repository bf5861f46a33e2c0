"""Surface velocities to discharge: normal component, gap filling, mid-section method.

Domain specification, sections 9 and 10.3, with the fixes of section 14: the
velocity entering discharge is the component normal to the section, NaN
velocities are filled by interpolation along the section (and counted), depths
are never negative, and every unit is SI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ivy_gpu.angles import geo_to_ari

TABLE_COLUMNS = (
    "ID",
    "Status",
    "Station Distance",
    "Width",
    "Depth",
    "Area",
    "Surface Velocity",
    "α (alpha)",
    "Unit Discharge",
)

#: Where each row's velocity came from (``discharge_table.csv``'s ``Source`` column, after
#: IVyTools' columns): a measured node, a node without a valid measurement filled by
#: interpolation, a measured node left out by quality control and filled, a value set or kept
#: by the user's overrides, a water edge (velocity 0).
SOURCES = ("measured", "filled", "excluded", "override", "edge")


def normal_component(
    magnitude: np.ndarray, direction_geo: np.ndarray, line: np.ndarray
) -> np.ndarray:
    """``|V . n|``: speed normal to the cross-section line, unsigned (IVyTools' GUI).

    The pipeline uses the *signed* component instead (:func:`ivy_gpu.stiv.quality.signed_normal`
    with the downstream normal), so upstream motion counts negative.

    Parameters
    ----------
    magnitude : ndarray
        Speeds (m/s), NaN allowed.
    direction_geo : ndarray
        Geographic directions of motion, degrees.
    line : ndarray, shape (2, 2)
        Section line ``[[x_a, y_a], [x_b, y_b]]`` in (rectified) image pixels.
    """
    a = np.deg2rad(geo_to_ari(np.asarray(direction_geo, float)))
    u, v = magnitude * np.cos(a), magnitude * np.sin(a)  # +x right, +y up
    tx, ty = line[1, 0] - line[0, 0], -(line[1, 1] - line[0, 1])
    norm = np.hypot(tx, ty)
    if norm == 0:
        raise ValueError("cross_section_line: the two endpoints coincide")
    return np.abs(u * (-ty / norm) + v * (tx / norm))


def fill_gaps(stations: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, int]:
    """Fill NaN velocities by linear interpolation along stations; returns (filled, count).

    The first and last values (the water edges) must be finite.
    """
    v = np.asarray(velocity, float).copy()
    bad = ~np.isfinite(v)
    if bad.all() or (~bad).sum() < 2:
        raise ValueError("discharge: fewer than two valid velocities along the section")
    if v.size > 2 and bad[1:-1].all():
        # the water-edge zeros anchor the interpolation but are not data
        raise ValueError("discharge: no valid velocity between the water edges")
    order = np.argsort(stations, kind="stable")
    s, vv = np.asarray(stations, float)[order], v[order]
    ok = np.isfinite(vv)
    vv[~ok] = np.interp(s[~ok], s[ok], vv[ok])
    v[order] = vv
    return v, int(bad.sum())


def panel_widths(stations: np.ndarray) -> np.ndarray:
    """Mid-section widths: half the distance between neighbours; half panels at the ends."""
    b = np.asarray(stations, float)
    w = np.empty_like(b)
    w[1:-1] = np.abs(b[2:] - b[:-2]) / 2
    w[0] = abs(b[1] - b[0]) / 2
    w[-1] = abs(b[-1] - b[-2]) / 2
    return w


@dataclass(frozen=True)
class DischargeResult:
    """Mid-section discharge and its table (SI)."""

    discharge: float
    area: float
    mean_velocity: float
    table: pd.DataFrame
    filled_nodes: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)


def midsection(
    stations: np.ndarray,
    depths: np.ndarray,
    surface_velocity: np.ndarray,
    alpha: float | np.ndarray = 0.85,
    source: np.ndarray | None = None,
) -> DischargeResult:
    """Mid-section discharge ``Q = sum(alpha * v * w * d)``, ``A = sum(w * d)``.

    The table's ``Width``, ``Area`` and ``Unit Discharge`` are the panels that make the
    totals (half panels at the ends), so the columns add up to ``A`` and ``Q``. NaN
    velocities are filled first (see :func:`fill_gaps`). ``source`` (one of :data:`SOURCES`
    per row) becomes a ``Source`` column after IVyTools' columns.
    """
    b = np.asarray(stations, float)
    d = np.maximum(np.asarray(depths, float), 0.0)
    v, filled = fill_gaps(b, surface_velocity)
    alphas = np.broadcast_to(np.asarray(alpha, float), b.shape)
    w = panel_widths(b)
    area = w * d
    q = alphas * v * area
    a_tot = float(area.sum())
    q_tot = float(q.sum())
    table = pd.DataFrame(
        {
            "ID": np.arange(b.size),
            "Status": "Used",
            "Station Distance": b,
            "Width": w,
            "Depth": d,
            "Area": area,
            "Surface Velocity": v,
            "α (alpha)": alphas,
            "Unit Discharge": q,
        }
    )
    if source is not None:
        source = np.asarray(source, dtype=object)
        unknown = set(source) - set(SOURCES)
        if source.shape != b.shape or unknown:
            got = sorted(unknown) if unknown else f"shape {source.shape}"
            raise ValueError(f"discharge: one source per row from {SOURCES}, got {got}")
        table["Source"] = source
    return DischargeResult(
        q_tot, a_tot, q_tot / a_tot if a_tot > 0 else float("nan"), table, filled
    )
