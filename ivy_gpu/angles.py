"""Angle conventions of IVyTools (domain specification, sections 0 and 8.1-8.2).

*Arithmetic* angles are degrees counter-clockwise from +x with y up, so in image
(column, row) space the direction of angle ``a`` is ``(cos a, -sin a)``.
*Geographic* angles are degrees clockwise from "up" (the top of the rectified
image): 0 up, 90 right, 180 down, 270 left.
"""

from __future__ import annotations

import numpy as np


def geo_to_ari(geo: np.ndarray | float) -> np.ndarray | float:
    """Geographic degrees to arithmetic degrees in [0, 360)."""
    return np.mod(450.0 - np.mod(geo, 360.0), 360.0)


def ari_to_geo(ari: np.ndarray | float) -> np.ndarray | float:
    """Arithmetic degrees to geographic degrees in [0, 360)."""
    return np.mod(90.0 - ari, 360.0)
