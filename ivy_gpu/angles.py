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


def search_angles(phi_origin: float, phi_range: float, d_phi: float) -> np.ndarray:
    """Arithmetic search-line angles of the fan (half-open range, spec 8.1).

    ``phi_origin`` is geographic. The fan is ``a0 - R, a0 - R + d_phi, ...`` for every
    value strictly below ``a0 + R + 1``: 181 angles for R = 90 and d_phi = 1.
    """
    a0 = float(geo_to_ari(phi_origin))
    return np.arange(a0 - phi_range, a0 + phi_range + 1.0, d_phi)


def line_offsets(phi_ari: np.ndarray, num_pixels: int) -> np.ndarray:
    """Sample offsets of the one-sided search lines, shape (n_angles, P, 2) as (dx, dy).

    The line runs from the node to ``(P cos a, -P sin a)``; ``L = floor(hypot)``
    gives ``L + 1`` equally spaced samples and the last is dropped when that count
    is odd (the even-length rule), so every line has exactly ``P`` samples for even
    ``P``. Spacing is 1 px, or ``P / (P - 1)`` where rounding makes ``L = P - 1``.
    """
    out = np.empty((len(phi_ari), num_pixels, 2))
    for m, a in enumerate(np.deg2rad(phi_ari)):
        dx = num_pixels * np.cos(a)
        dy = -num_pixels * np.sin(a)
        length = int(np.floor(np.hypot(dx, dy)))
        n = length + 1 if length % 2 else length  # drop the last sample of an odd count
        frac = np.linspace(0.0, 1.0, length + 1)[:n]
        if n != num_pixels:  # pragma: no cover - impossible for even P
            raise AssertionError(f"search line has {n} samples, expected {num_pixels}")
        out[m, :, 0] = frac * dx
        out[m, :, 1] = frac * dy
    return out
