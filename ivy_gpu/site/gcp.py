"""Ground control point tables in the IVyTools CSV format (domain specification, section 2.5)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.units import M_PER_FT

_YES = {"yes", "y", "true", "1"}


@dataclass(frozen=True)
class GcpTable:
    """GCPs with world coordinates in metres.

    Attributes
    ----------
    ids : tuple of str
    world : ndarray, shape (n, 3)
        X, Y, Z in metres.
    pixel : ndarray, shape (n, 2)
        Column, row in the original camera image.
    use_rectification, use_validation : ndarray of bool
    """

    ids: tuple[str, ...]
    world: np.ndarray
    pixel: np.ndarray
    use_rectification: np.ndarray
    use_validation: np.ndarray

    def rectification_points(self) -> tuple[np.ndarray, np.ndarray]:
        """World (m) and pixel coordinates of the points flagged for rectification."""
        m = self.use_rectification
        return self.world[m], self.pixel[m]


def _unit_factor(header: str, default_units: str, path: Path) -> float:
    h = header.strip().lower()
    if h.endswith("(ft)"):
        return M_PER_FT
    if h.endswith("(m)"):
        return 1.0
    if default_units == "m":
        return 1.0
    if default_units == "ft":
        return M_PER_FT
    raise ValueError(
        f"{path}: column {header!r} has no unit suffix; pass default_units='m' or 'ft'"
    )


def read_gcp_csv(path: str | Path, default_units: str = "m") -> GcpTable:
    """Read a GCP CSV with 11, 6, 4 or 3 columns.

    Parameters
    ----------
    path : path
        The CSV file.
    default_units : {"m", "ft", "ask"}
        Units of X/Y/Z columns without a ``(m)``/``(ft)`` suffix (IVyTools asks the user;
        the project's own table is metres). ``"ask"`` makes an unsuffixed file an error.

    Raises
    ------
    ValueError
        One line naming the file and the problem.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except OSError as exc:
        raise ValueError(f"{path}: cannot read GCP table ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise ValueError(f"{path}: the GCP table is not a UTF-8 CSV text file") from None
    if len(rows) < 2:
        raise ValueError(f"{path}: GCP table has no data rows")
    header, data = rows[0], rows[1:]
    ncol = len(header)
    if ncol not in (3, 4, 6, 11):
        raise ValueError(f"{path}: GCP table has {ncol} columns; expected 3, 4, 6 or 11")
    factors = [_unit_factor(h, default_units, path) for h in header[1 : min(ncol, 4)]]
    ids, world, pixel, use_r, use_v = [], [], [], [], []
    for k, row in enumerate(data, start=2):
        if len(row) < ncol:
            raise ValueError(f"{path}: line {k} has {len(row)} cells, expected {ncol}")
        try:
            xyz = [float(row[i]) * factors[i - 1] for i in range(1, min(ncol, 4))]
            if ncol == 3:
                xyz.append(0.0)
            px = [float(row[4]), float(row[5])] if ncol >= 6 else [np.nan, np.nan]
        except ValueError:
            raise ValueError(f"{path}: line {k} has a non-numeric coordinate") from None
        ids.append(row[0].strip())
        world.append(xyz)
        pixel.append(px)
        use_r.append(row[9].strip().lower() in _YES if ncol == 11 else True)
        use_v.append(row[10].strip().lower() in _YES if ncol == 11 else False)
    return GcpTable(tuple(ids), np.array(world), np.array(pixel), np.array(use_r), np.array(use_v))
