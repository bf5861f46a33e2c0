"""Synthetic scenes with known truth.

:func:`advected_texture` makes a stack of a band-limited random texture translated
by an exact sub-pixel displacement every frame (Fourier shift theorem, periodic
boundaries), so the true surface velocity of every pixel is known.
"""

from __future__ import annotations

import numpy as np

from ivy_gpu.angles import geo_to_ari


def velocity_px(speed_px: float, direction_geo: float) -> tuple[float, float]:
    """Per-frame displacement (dx columns, dy rows) of motion at a geographic direction."""
    a = np.deg2rad(geo_to_ari(direction_geo))
    return float(speed_px * np.cos(a)), float(-speed_px * np.sin(a))


def advected_texture(
    shape: tuple[int, int, int],
    *,
    speed_px: float,
    direction_geo: float,
    seed: int,
    grain: float = 1.5,
    noise: float = 0.0,
    dtype: type = np.uint8,
) -> np.ndarray:
    """Frames of a random texture moving at a constant velocity.

    Parameters
    ----------
    shape : (frames, rows, cols)
        Stack shape.
    speed_px : float
        Speed in pixels per frame.
    direction_geo : float
        Geographic direction of motion (0 = up the image, 90 = right).
    seed : int
        Seed of the texture (and of the per-frame noise).
    grain : float
        Gaussian correlation length of the texture, pixels.
    noise : float
        Standard deviation of independent per-frame noise, in grey levels.
    dtype : numpy dtype
        ``uint8`` (clipped to 0-255) or ``float32``.

    Returns
    -------
    ndarray, shape ``shape``
    """
    n_frames, h, w = shape
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    spectrum = np.fft.rfft2(rng.standard_normal((h, w)))
    spectrum *= np.exp(-2.0 * (np.pi * grain) ** 2 * (kx**2 + ky**2))
    base = np.fft.irfft2(spectrum, s=(h, w))
    gain = 40.0 / base.std()
    vx, vy = velocity_px(speed_px, direction_geo)
    out = np.empty(shape, dtype=dtype)
    for t in range(n_frames):
        shift = np.exp(-2j * np.pi * (kx * vx + ky * vy) * t)
        frame = 128.0 + gain * np.fft.irfft2(spectrum * shift, s=(h, w))
        if noise > 0:
            frame += rng.normal(0.0, noise, size=frame.shape)
        out[t] = np.clip(frame, 0, 255) if dtype == np.uint8 else frame
    return out
