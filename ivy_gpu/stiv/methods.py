"""The STIV scoring methods as small objects: plan, score pairs, slope of the best.

A method turns a batch of search lines into one score per (node, angle) pair (higher
is better) plus whatever it needs later, and turns the best pair's values into a
streak slope (pixels per frame along the line). Adding a method is one class here,
one entry in :data:`METHODS` and one scoring call in each engine.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ivy_gpu.engines.base import Engine, Lines
from ivy_gpu.kernels.rays import AcfPlan
from ivy_gpu.params import StivParams


def parabola_offset(before: np.ndarray, peak: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Sub-step offset (in steps, within [-0.5, 0.5]) of a sampled maximum."""
    denom = before - 2.0 * peak + after
    with np.errstate(invalid="ignore", divide="ignore"):
        off = 0.5 * (before - after) / denom
    ok = np.isfinite(off) & (denom < 0)
    return np.where(ok, np.clip(off, -0.5, 0.5), 0.0)


class StivMethod(Protocol):
    """What the STIV driver needs from a method."""

    name: str
    aux_keys: tuple[str, ...]

    def plan(self, p: int, t: int, params: StivParams, lag_step: int = 1) -> Any:
        """Per-call constants (built once per STIV call) for ``t`` frames.

        ``lag_step`` k > 1 scores streaks over k frames per step on a stack of ``k * t``
        or more frames (the ACF's temporal stride; only the ACF method has one).
        """
        ...

    def score(
        self, engine: Engine, handle: Any, taps: Lines, plan: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(score, aux)`` for a chunk of pairs, on the host."""
        ...

    def slope(
        self, aux: dict[str, np.ndarray], score: np.ndarray, params: StivParams, plan: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(theta_deg, slope_px_per_frame)`` of the best pair of each node."""
        ...


class AcfMethod:
    """Reference STIV: ray integrals of the STI autocorrelation (spec section 8.3)."""

    name = "acf"
    aux_keys = ("idx", "before", "after")

    def plan(self, p: int, t: int, params: StivParams, lag_step: int = 1) -> AcfPlan:
        """Polar grid and folded ray operator for P x t STIs (t in steps of ``lag_step``)."""
        return AcfPlan.build(p, t, params.d_rho, params.d_theta, lag_step)

    def score(self, engine: Engine, handle: Any, taps: Lines, plan: AcfPlan):
        """Peak ray integral, its ray index and its two neighbours."""
        idx, peak, before, after = engine.acf_scores(handle, taps, plan)
        return peak, {"idx": idx, "before": before, "after": after}

    def slope(self, aux, score, params: StivParams, plan: AcfPlan):
        """Streak angle from the best ray (parabolic sub-step with ``refine``).

        The rays at 0 and 180 degrees are one ray (no motion); ``tan`` of 180 degrees is
        -1.2e-16, not 0, which would turn a still node's direction by 180 degrees and flag it
        upstream. Which of the two wins is float rounding (the numba and GPU engines
        differed on Ngwerere), so both give a slope of exactly 0.
        """
        theta = plan.theta[np.nan_to_num(aux["idx"]).astype(int)]
        if params.refine:
            theta = theta + params.d_theta * parabola_offset(aux["before"], score, aux["after"])
        slope = np.tan(np.deg2rad(theta))
        return theta, np.where(np.mod(theta, 180.0) == 0.0, 0.0, slope)


class GradientMethod:
    """Streak orientation from the gradient structure tensor (fast, less robust)."""

    name = "gradient"
    aux_keys = ("slope",)

    def plan(self, p: int, t: int, params: StivParams, lag_step: int = 1) -> None:
        """Nothing to prepare (the tensor has its own temporal scales)."""
        if lag_step != 1:
            raise ValueError("lag_step: the gradient method has no temporal stride")
        return None

    def score(self, engine: Engine, handle: Any, taps: Lines, plan: None):
        """Orientation coherence, and the slope it belongs to."""
        slope, coherence = engine.gradient_scores(handle, taps)
        return coherence, {"slope": slope}

    def slope(self, aux, score, params: StivParams, plan: None):
        """The tensor's slope directly; theta from it."""
        slope = aux["slope"]
        return np.mod(np.rad2deg(np.arctan(slope)), 180.0), slope


METHODS: dict[str, StivMethod] = {"acf": AcfMethod(), "gradient": GradientMethod()}
