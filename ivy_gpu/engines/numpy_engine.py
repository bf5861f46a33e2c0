"""The ``numpy`` engine: the literal reference formulation of STIV (spec section 8).

Full 2-D FFT autocorrelation of every STI, asymmetric crop, bilinear rays with
extrapolation, trapezoid integral. Slow and obvious: every other engine is
tested against it.
"""

from __future__ import annotations

import numpy as np

from ivy_gpu import config
from ivy_gpu.engines.base import HostMemory, Taps, Window, chunk_of
from ivy_gpu.kernels import acf, rays, sti, structure_tensor


class NumpyEngine(HostMemory):
    """Reference engine on NumPy / SciPy."""

    name = "numpy"

    def chunk_pairs(self, p: int, t: int) -> int:
        """(node, angle) pairs per chunk within the CPU budget (full float64 ACF)."""
        per_pair = 8 * (2 * p) * (2 * t) * 6
        return max(1, min(config.MAX_CHUNK_PAIRS, config.CPU_CHUNK_BYTES // per_pair))

    def prepare(
        self, stack: np.ndarray, window: Window, sigma: float, taps: Taps | None = None
    ) -> np.ndarray:
        """The cropped, blurred region itself (``taps`` is not needed)."""
        return self.crop(stack, window, sigma)

    def gather(self, stack: np.ndarray, taps: Taps) -> np.ndarray:
        """Raw STIs, shape (n, P, T) float32."""
        return sti.gather_numpy(stack, *taps)

    def acf_scores(self, stack: np.ndarray, taps: Taps, plan: rays.AcfPlan | rays.PlanGroups):
        """Peak ray integral per STI: ``(idx, peak, before, after)``."""
        if isinstance(plan, rays.PlanGroups):  # the stride's steps: one plan per span
            return plan.each(lambda lo, hi, p: self.acf_scores(stack, chunk_of(taps, lo, hi), p))
        z, _ = sti.standardize_numpy(self.gather(stack, taps))
        full = acf.acf_full_numpy(z)
        if plan.lag_step != 1:  # frame lags k * m, m = -(t - 1) ... t - 1, zero lag at t - 1
            t_full, t = z.shape[-1], plan.num_frames
            full = full[:, :, (t_full - 1) + plan.lag_step * np.arange(1 - t, t)]
        r0, r1, c0, c1 = rays.crop_bounds(plan.num_pixels, plan.num_frames)
        with np.errstate(invalid="ignore"):
            f = rays.ray_integrals_numpy(
                full[:, r0:r1, c0:c1],
                plan.num_pixels,
                plan.num_frames,
                plan.rho,
                plan.theta,
                plan.d_rho,
            )
        return rays.peaks_xp(f, np)

    def gradient_scores(self, stack: np.ndarray, taps: Taps):
        """Structure-tensor ``(slope px/frame, coherence)`` per STI."""
        raw = self.gather(stack, taps)
        _, valid = sti.standardize_numpy(raw)
        slope, coherence = structure_tensor.orientation_xp(raw, np)
        return slope, np.where(valid, coherence, np.nan)
