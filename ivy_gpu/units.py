"""Display units of IVyTools projects (domain specification, section 0).

All computation is SI; ``"English"`` projects show feet, square feet, ft/s and cfs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FT_PER_M = 1.0 / 0.3048
M_PER_FT = 0.3048


@dataclass(frozen=True)
class UnitSystem:
    """Factors from SI to display units, and their labels."""

    name: str
    length: float
    area: float
    velocity: float
    discharge: float
    length_label: str
    area_label: str
    velocity_label: str
    discharge_label: str


ENGLISH = UnitSystem(
    "English", FT_PER_M, FT_PER_M**2, FT_PER_M, FT_PER_M**3, "ft", "ft²", "ft/s", "cfs"
)
METRIC = UnitSystem("Metric", 1.0, 1.0, 1.0, 1.0, "m", "m²", "m/s", "m³/s")


def unit_system(name: str, source: str = "display_units") -> UnitSystem:
    """Return the unit system named ``"English"`` or ``"Metric"``.

    Raises
    ------
    ValueError
        Unknown name (the message names ``source``).
    """
    if name == "English":
        return ENGLISH
    if name == "Metric":
        return METRIC
    raise ValueError(f"{source}: unknown units {name!r}; expected 'English' or 'Metric'")


def format_value(v: float | None, spec: str = ".6g") -> str:
    """``v`` formatted by ``spec``; an empty cell for None, NaN or infinity."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return format(v, spec)


def describe_row(
    wse: float | None,
    length_label: str,
    start_s: float | None = None,
    end_s: float | None = None,
    comments: str | None = None,
    wse_source: str | None = None,
) -> str:
    """``WSE 1182.200 m (gauge), 0-3 s, comment``: what tells rows of one video apart.

    ``wse`` is in the unit ``length_label`` names; the time window in seconds into the
    video; the comment cut at 60 characters. The console line and the batch report say it.
    """
    bits = []
    if wse is not None:
        bits.append(f"WSE {wse:.3f} {length_label}" + (" (gauge)" if wse_source == "gauge" else ""))
    if end_s is not None:
        bits.append(f"{start_s or 0:g}-{end_s:g} s")
    elif start_s is not None:
        bits.append(f"from {start_s:g} s")
    if comments:
        bits.append(str(comments)[:60])
    return ", ".join(bits)
