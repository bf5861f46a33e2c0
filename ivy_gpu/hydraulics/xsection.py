"""Cross-section survey (AreaComp 3 ``.mat``) and its geometry at a water level.

Domain specification, sections 10.1-10.2 and 14.8, 14.11, 14.21. Everything is
held in metres; the survey's own units are remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ivy_gpu.units import M_PER_FT, unit_system


@dataclass(frozen=True)
class CrossSection:
    """A surveyed section: stations from the left edge of water and bed elevations, metres.

    Attributes
    ----------
    stations, elevations : ndarray
        Profile in survey order (stations non-decreasing; duplicates are vertical walls).
    units : str
        Units of the source survey (``"English"`` or ``"Metric"``).
    source : str
        File the survey came from (for messages).
    """

    stations: np.ndarray
    elevations: np.ndarray
    units: str = "Metric"
    source: str = "cross-section"

    def __post_init__(self) -> None:
        b, z = np.asarray(self.stations, float), np.asarray(self.elevations, float)
        if b.ndim != 1 or b.shape != z.shape or b.size < 2:
            raise ValueError(f"{self.source}: a survey needs at least 2 (station, elevation) pairs")
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(z))):
            raise ValueError(f"{self.source}: survey stations and elevations must be finite")
        if np.any(np.diff(b) < 0):
            raise ValueError(f"{self.source}: survey stations must not decrease")

    @property
    def tolerance(self) -> float:
        """Crossing tolerance: 0.1 survey units, in metres."""
        return 0.1 * (M_PER_FT if self.units == "English" else 1.0)

    def water_edges(self, wse: float) -> tuple[float, float]:
        """Stations (m) of the left and right water edges at ``wse`` (first and last crossing).

        Raises
        ------
        ValueError
            WSE at or below the lowest bed point, or above a bank (fewer than two crossings).
        """
        b, z = self.stations, self.elevations
        if wse <= z.min():
            raise ValueError(
                f"{self.source}: water-surface elevation {wse:.3f} m is at or below "
                f"the lowest bed point ({z.min():.3f} m)"
            )
        if wse >= min(z[0], z[-1]):
            raise ValueError(
                f"{self.source}: water-surface elevation {wse:.3f} m is above a bank "
                f"(banks at {z[0]:.3f} m and {z[-1]:.3f} m)"
            )
        eps = min(self.tolerance, 0.5 * (min(z[0], z[-1]) - wse), 0.5 * (wse - z.min()))
        hi, lo = z > wse + eps, z < wse - eps
        near = ~hi & ~lo
        crossings = []
        for i in range(b.size - 1):
            if (hi[i] and lo[i + 1]) or (lo[i] and hi[i + 1]) or (near[i] != near[i + 1]):
                if z[i + 1] == z[i]:
                    crossings.append(b[i])
                else:
                    crossings.append(b[i] + (wse - z[i]) * (b[i + 1] - b[i]) / (z[i + 1] - z[i]))
        return float(crossings[0]), float(crossings[-1])

    def bed_at(self, stations: np.ndarray, centre: float | None = None) -> np.ndarray:
        """Bed elevation (m) at stations; vertical walls resolved towards the wetted side.

        ``numpy.interp`` returns the right-most of duplicate stations; that is the wetted
        side of a left wall, and the reversed profile gives the wetted side of a right wall.
        """
        s = np.asarray(stations, float)
        b, z = self.stations, self.elevations
        left = np.interp(s, b, z)
        right = np.interp(-s, -b[::-1], z[::-1])
        mid = 0.5 * (b[0] + b[-1]) if centre is None else centre
        return np.where(s <= mid, left, right)

    def depth_at(self, stations: np.ndarray, wse: float) -> np.ndarray:
        """Water depth (m) at stations, never negative."""
        lo, hi = self.water_edges(wse)
        return np.maximum(wse - self.bed_at(stations, 0.5 * (lo + hi)), 0.0)

    def wetted_area(self, wse: float) -> float:
        """Exact wetted area (m^2) of the piecewise-linear profile below ``wse``."""
        lo, hi = self.water_edges(wse)
        inner = (self.stations > lo) & (self.stations < hi)
        b = np.concatenate([[lo], self.stations[inner], [hi]])
        # edge depths resolve vertical walls to their wetted side (0 on a sloping bank)
        z = np.concatenate(
            [
                self.bed_at([lo], 0.5 * (lo + hi)),
                self.elevations[inner],
                self.bed_at([hi], 0.5 * (lo + hi)),
            ]
        )
        d = np.maximum(wse - z, 0.0)
        return float(np.trapezoid(d, b))


def _struct_field(struct, name: str, source: str):
    try:
        return getattr(struct, name)
    except AttributeError:
        raise ValueError(f"{source}: survey struct has no field {name!r}") from None


def read_ac3(path: str | Path) -> CrossSection:
    """Read an AreaComp 3 ``.mat`` cross-section file.

    The mapping follows the specification's inferred rule: stations = column 0 +
    ``stationOffset``, elevation = column 2 (adjusted), surveys concatenated in
    station order, ``start_edge = 'REW'`` stationing flipped to run from the left
    edge, English units converted with 0.3048 m/ft.

    Raises
    ------
    ValueError
        One line naming the file and the problem (not a MATLAB file, no survey, ...).
    """
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable AreaComp .mat file ({exc})") from None
    src = str(path)
    units = unit_system(str(mat.get("units", "Metric")), f"{src}: units").name
    names = mat.get("survey_names")
    if names is None or (isinstance(names, np.ndarray) and names.size == 0):
        raise ValueError(f"{src}: AreaComp file has no survey (survey_names is empty)")
    names = [names] if isinstance(names, str) else [str(n) for n in np.atleast_1d(names)]
    parts = []
    for name in names:
        if name not in mat:
            raise ValueError(f"{src}: survey {name!r} is listed but missing")
        st = mat[name]
        table = np.atleast_2d(np.asarray(_struct_field(st, "csv_survey", src), dtype=float))
        if table.size == 0 or table.shape[1] < 3:
            raise ValueError(f"{src}: survey {name!r} has no n x 3 csv_survey table")
        offset = float(getattr(st, "stationOffset", 0.0) or 0.0)
        b = table[:, 0] + offset
        z = table[:, 2]
        if str(getattr(st, "start_edge", "LEW")).upper() == "REW":
            b = b.max() + b.min() - b
            b, z = b[::-1], z[::-1]
        parts.append((b, z))
    parts.sort(key=lambda p: p[0][0])
    b = np.concatenate([p[0] for p in parts])
    z = np.concatenate([p[1] for p in parts])
    order = np.argsort(b, kind="stable")
    factor = M_PER_FT if units == "English" else 1.0
    return CrossSection(b[order] * factor, z[order] * factor, units, src)


def write_ac3(path: str | Path, section: CrossSection, survey_name: str = "survey.csv") -> None:
    """Write a minimal AreaComp 3 ``.mat`` (one CSV survey struct) in the section's units."""
    factor = 1.0 / M_PER_FT if section.units == "English" else 1.0
    b, z = section.stations * factor, section.elevations * factor
    survey = {
        "stage": 0.0,
        "stationOffset": 0.0,
        "file_id": survey_name,
        "survey_type": "CSV",
        "csv_survey": np.column_stack([b, z, z]),
        "start_edge": "LEW",
    }
    scipy.io.savemat(
        str(path),
        {
            "version": "AreaComp 1.3.4 (ivy_gpu)",
            "units": section.units,
            "maxStage": float(z.max()),
            "minStage": float(z.min()),
            "increment": 0.1,
            "survey_names": survey_name,
            survey_name: survey,
            "subsection": [b.min(), b.max()],
        },
        do_compression=False,
    )
