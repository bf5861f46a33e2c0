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
    """Sample offsets of the one-sided ``unit`` search lines, shape (n_angles, P, 2) as (dx, dy).

    Sample ``k`` (``k = 0 ... P - 1``) lies ``k`` pixels from the node in direction
    ``(cos a, -sin a)`` (image rows point down): every line has 1-px spacing, so the
    streak slope in samples per frame is the speed in pixels per frame.
    """
    a = np.deg2rad(np.asarray(phi_ari, float))[:, None]
    k = np.arange(num_pixels, dtype=float)[None, :]
    return np.stack([k * np.cos(a), -k * np.sin(a)], axis=-1)


def ivytools_line_samples(
    x: np.ndarray, y: np.ndarray, phi_ari: np.ndarray, num_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """IVyTools' own search-line samples (spec 8.2 and 14.22), shape (..., P) each.

    For a node ``(x, y)`` and arithmetic angle ``a``: ``x1 = P cos a``, ``y1 = -P sin a``;
    ``L = int(hypot(|(y + y1) - y|, |(x + x1) - x|))`` from the node's *absolute*
    coordinates, so rounding makes ``L = P - 1`` for many (node, angle) pairs; the
    samples are ``linspace(x, x + x1, L + 1)`` (and likewise in y), the last one dropped
    when the count is odd. Where ``L = P - 1`` the line keeps P samples over P px (a
    "stretched" line, spacing ``P / (P - 1)``).

    Parameters
    ----------
    x, y : ndarray
        Node coordinates (broadcast against ``phi_ari``).
    phi_ari : ndarray
        Arithmetic search angles, degrees.
    num_pixels : int
        P (even).
    """
    a = np.deg2rad(np.asarray(phi_ari, float))
    x, y, a = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), a)
    x1 = num_pixels * np.cos(a)
    y1 = -num_pixels * np.sin(a)
    ex, ey = x + x1, y + y1
    length = np.hypot(np.abs(ey - y), np.abs(ex - x)).astype(int)
    sx = np.empty((*x.shape, num_pixels))
    sy = np.empty_like(sx)
    for n_len in np.unique(length):
        sel = length == n_len
        count = n_len + 1
        keep = count if count % 2 == 0 else count - 1  # the even-length rule
        if keep != num_pixels:  # pragma: no cover - impossible for even P
            raise AssertionError(f"search line has {keep} samples, expected {num_pixels}")
        sx[sel] = np.linspace(x[sel], ex[sel], count, axis=-1)[..., :keep]
        sy[sel] = np.linspace(y[sel], ey[sel], count, axis=-1)[..., :keep]
    return sx, sy
