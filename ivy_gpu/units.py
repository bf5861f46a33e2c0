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
