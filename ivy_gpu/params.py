"""The run configurations: :class:`StivParams` (every STIV setting) and :class:`VideoConfig`.

One frozen :class:`StivParams` is shared by the scaffold, the API, the pipeline and the CLI.

A scaffold stores the IVyTools keys (``stiv_num_pixels``, ``stiv_phi_origin``,
``stiv_phi_range``, ``stiv_dphi``, ``stiv_max_vel_threshold_mps``,
``stiv_gaussian_blur_sigma``) and, when set, ivy_gpu's own (``stiv_method``,
``stiv_interpolation``, ``stiv_d_rho``, ``stiv_d_theta``, ``stiv_refine``); the
API and the CLI override any field with :meth:`StivParams.replace`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivy_gpu.checks import check_choice, check_even_int, check_positive, check_range

#: The quality flags a node can carry (:mod:`ivy_gpu.stiv.quality`), in a fixed order: bit k of
#: the NetCDF ``flags`` variable is ``NODE_FLAGS[k]``.
NODE_FLAGS = (
    "invalid",
    "threshold",
    "fan_edge",
    "upstream",
    "outlier",
    "low_score",
    "unsteady",
    "stride_limited",
    "still",
)
METHODS = ("acf", "gradient")
INTERPOLATIONS = ("bilinear", "nearest")
SEARCH_LINES = ("unit", "ivytools")

#: STIV needs at least this many frames (shorter selections are refused before decoding).
MIN_FRAMES = 4

#: Compatibility modes: the STIV settings that reproduce another tool's numbers.
#: ``ivytools``: the IVyTools python port (its stretched search lines, nearest sampling,
#: the reference angle grid without refinement).
COMPAT_MODES: dict[str, dict[str, Any]] = {
    "ivytools": {
        "search_line": "ivytools",
        "interpolation": "nearest",
        "refine": False,
        "stride": False,
    },
}

#: Scaffold key of each field (IVyTools' names where IVyTools has one).
SCAFFOLD_KEYS = {
    "num_pixels": "stiv_num_pixels",
    "phi_origin": "stiv_phi_origin",
    "phi_range": "stiv_phi_range",
    "d_phi": "stiv_dphi",
    "max_vel_threshold": "stiv_max_vel_threshold_mps",
    "sigma": "stiv_gaussian_blur_sigma",
    "method": "stiv_method",
    "interpolation": "stiv_interpolation",
    "d_rho": "stiv_d_rho",
    "d_theta": "stiv_d_theta",
    "refine": "stiv_refine",
    "search_line": "stiv_search_line",
    "stride": "stiv_temporal_stride",
}

#: The keys IVyTools itself writes (always saved); the others are saved when not default.
IVYTOOLS_FIELDS = ("num_pixels", "phi_origin", "phi_range", "d_phi", "max_vel_threshold", "sigma")


@dataclass(frozen=True)
class StivParams:
    """Every STIV setting except the per-video pixel size and frame interval.

    Attributes
    ----------
    num_pixels : int
        Search-line length P in pixels (even, >= 4).
    phi_origin : float
        Centre of the search fan, geographic degrees.
    phi_range : float
        Fan half-width, degrees, in [0, 180].
    d_phi : float
        Fan step, degrees (> 0).
    max_vel_threshold : float
        Speeds above this (m/s) become NaN.
    sigma : float
        Spatial Gaussian blur sigma in pixels; 0 disables it.
    method : {"acf", "gradient"}
        Streak angle from the autocorrelation rays (reference) or the gradient
        structure tensor.
    interpolation : {"bilinear", "nearest"}
        Sampling along the search line (``"nearest"`` is IVyTools' own).
    d_rho, d_theta : float
        Ray step (lags) and ray-angle step (degrees) of the ACF search.
    refine : bool
        Sub-step parabolic refinement of the streak and search angles (the
        pipeline's default); ``False`` is the reference grid search.
    stride : bool
        Re-measure slow nodes with a temporal stride (k frames per step) so their streak
        lands where the formulation is unbiased (:func:`ivy_gpu.stiv.driver.apply_stride`).
    search_line : {"unit", "ivytools"}
        ``unit``: 1-px sample spacing on every line (default). ``ivytools``: IVyTools'
        own geometry, where rounding stretches about half of the lines to a spacing of
        P / (P - 1) px and those lines read (P - 1) / P of the speed (spec 14.22).
    """

    num_pixels: int = 20
    phi_origin: float = 90.0
    phi_range: float = 90.0
    d_phi: float = 1.0
    max_vel_threshold: float = 10.0
    sigma: float = 0.0
    method: str = "acf"
    interpolation: str = "bilinear"
    d_rho: float = 0.5
    d_theta: float = 0.5
    refine: bool = True
    search_line: str = "unit"
    stride: bool = True

    def __post_init__(self) -> None:
        check_even_int("num_pixels", self.num_pixels, 4)
        check_positive("d_phi", self.d_phi)
        check_range("phi_range", self.phi_range, 0.0, 180.0)
        try:
            origin = float(self.phi_origin)
        except (TypeError, ValueError):
            raise ValueError(f"phi_origin: expected a number, got {self.phi_origin!r}") from None
        if not math.isfinite(origin):
            raise ValueError(f"phi_origin: must be finite, got {self.phi_origin!r}")
        check_positive("max_vel_threshold", self.max_vel_threshold)
        check_positive("sigma", self.sigma, allow_zero=True)
        check_choice("method", self.method, METHODS)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("search_line", self.search_line, SEARCH_LINES)
        check_positive("d_rho", self.d_rho)
        check_range("d_theta", self.d_theta, 1e-3, 90.0)
        for flag in ("refine", "stride"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}: expected true or false, got {getattr(self, flag)!r}")
        for name in ("phi_origin", "phi_range", "d_phi", "max_vel_threshold", "sigma"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("d_rho", "d_theta"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "num_pixels", int(self.num_pixels))

    def replace(self, **changes: Any) -> StivParams:
        """A copy with some fields changed (``None`` values are ignored), validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"STIV parameters: unknown setting(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_scaffold(self) -> dict[str, Any]:
        """Scaffold keys of these settings (ivy_gpu's own only where not default)."""
        default = StivParams()
        out = {}
        for name, key in SCAFFOLD_KEYS.items():
            value = getattr(self, name)
            if name in IVYTOOLS_FIELDS or value != getattr(default, name):
                out[key] = value
        return out

    def describe(self) -> str:
        """One line for ``ivy-gpu info``."""
        return (
            f"P={self.num_pixels} phi0={self.phi_origin:g} range={self.phi_range:g} "
            f"dphi={self.d_phi:g} vmax={self.max_vel_threshold:g} sigma={self.sigma:g} "
            f"method={self.method} interpolation={self.interpolation} "
            f"d_rho={self.d_rho:g} d_theta={self.d_theta:g} refine={self.refine} "
            f"search_line={self.search_line} stride={self.stride}"
        )

    def with_compat(self, compat: str | None) -> StivParams:
        """These settings in a compatibility mode (``None`` or ``"none"``: unchanged)."""
        if compat in (None, "none"):
            return self
        check_choice("compat", compat, ("none", *COMPAT_MODES))
        return self.replace(**COMPAT_MODES[compat])


@dataclass(frozen=True)
class VideoConfig:
    """One video to process.

    Attributes
    ----------
    video_path : Path
    water_surface_elevation : float
        Metres.
    alpha : float
        Surface-to-mean velocity coefficient, 0 < alpha <= 1.
    start_time, end_time : float or None
        Seconds (half-open range).
    frame_step : int
    max_frames : int or None
    measurement_number, measurement_date, measurement_time, comments : optional metadata
    gage_height : float or None
        The gauge reading, as given (the batch CSV's display units).
    """

    video_path: Path
    water_surface_elevation: float
    alpha: float = 0.85
    start_time: float | None = None
    end_time: float | None = None
    frame_step: int = 1
    max_frames: int | None = None
    measurement_number: int | None = None
    measurement_date: str | None = None
    comments: str | None = None
    measurement_time: str | None = None
    gage_height: float | None = None

    def __post_init__(self) -> None:
        from ivy_gpu.checks import check_finite, parse_time

        object.__setattr__(self, "video_path", Path(self.video_path))
        for name in ("water_surface_elevation", "alpha"):
            object.__setattr__(self, name, check_finite(name, getattr(self, name)))
        if not (0 < self.alpha <= 1):
            raise ValueError(f"alpha: must be in (0, 1], got {self.alpha!r}")
        for name in ("start_time", "end_time"):
            object.__setattr__(self, name, parse_time(getattr(self, name), name))
        for name, low in (("frame_step", 1), ("max_frames", MIN_FRAMES)):
            value = getattr(self, name)
            if value is None and name == "max_frames":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if (
            self.start_time is not None
            and self.end_time is not None
            and self.end_time <= self.start_time
        ):
            raise ValueError(
                f"end_time: {self.end_time} s is not after start_time {self.start_time} s"
            )


def search_line_pixels(length_m: float, gsd_m: float) -> int:
    """The GUI's search-line length in pixels: ``int(L / g)``, made even (spec 8.7)."""
    p = int(length_m / gsd_m)
    return p + (p % 2)


def stiv_params_for(
    scaffold: Any, stiv: StivParams | Mapping[str, Any] | None = None
) -> StivParams:
    """The scaffold's STIV settings, replaced by ``stiv`` (a StivParams or some overrides).

    Raises
    ------
    ValueError
        ``stiv`` is neither (``stiv="acf"`` names the parameter and what it wants).
    """
    if isinstance(stiv, StivParams):
        return stiv
    if stiv is not None and not isinstance(stiv, Mapping):
        raise ValueError(
            f"stiv: expected a dict of STIV settings (e.g. {{'method': 'acf'}}) or a "
            f"StivParams, got {type(stiv).__name__} {stiv!r}"
        )
    return scaffold.stiv.replace(**dict(stiv or {}))
