"""Per-node quality control: the downstream normal, flags, and the velocity spread over time.

Every node gets zero or more flags (``ProcessingResult.node_flags``, the ``flags`` column
of ``stiv_results.csv``). The rules and their thresholds (:class:`QualityRules`):

``invalid``
    No usable search line (every line leaves the image or meets constant no-data).
``threshold``
    The speed exceeded the scaffold's ``max_vel_threshold``.
``fan_edge``
    The best search angle is the first or the last of the fan: the true direction may be
    outside it. *Informational* (the vector is kept): widen the fan if it is frequent.
``upstream``
    The velocity normal to the section points upstream (negative discharge). *Kept*: a
    real eddy or backwater must count negative; a spurious upstream vector is caught by
    the rules below.
``outlier``
    The normalized median test along the section (Westerweel and Scarano, 2005, the
    standard PIV validation): the residual against the median of up to two neighbours
    on each side, divided by their median absolute deviation plus ``epsilon`` (a fraction
    of the video's median speed), exceeds ``outlier_threshold`` (3).
``low_score``
    The best ray-integral score is below ``low_score_fraction`` (0.5) of the median score
    of the video's valid nodes: the space-time image barely shows a streak.
``unsteady``
    The node's chosen line is re-measured on
    ``windows`` (4) sliding windows of half the clip each. ``sigma_v`` is the robust
    spread of those window velocities (1.4826 x their median absolute deviation, so one
    window spoiled by glare does not count). The node is unsteady when ``sigma_v``, or
    the distance of the whole-clip velocity from the window median, exceeds
    ``unsteady_cv`` (0.5) of the window median speed (floor ``speed_floor``, 0.05 m/s),
    or fewer than two windows give a velocity: the clip does not support one velocity
    (glare, rain, a passing object decided the whole-clip value).

``still``
    Still water: the node's space-time image shows no motion. Its autocorrelation's
    zero-speed ray (theta = 0) scores at least ``still_ratio`` (0.8) of its best ray at
    full frame rate, so the best streak angle is not resolved from zero speed (a moving
    texture at 0.5 px/frame scores 0-0.5 there, at 0.3 px/frame up to 0.7), and at least
    ``still_window_ratio`` (0.6) in every time window: flow over a visible static bed or
    bank has a zero-speed ridge too, but the streaks of what floats by win in some part of
    the clip (the Ngwerere clip: 0.37-0.6 in one window at such nodes). The node's
    velocity is 0 m/s and it is *kept*: still water is data, not a gap to fill from
    flowing neighbours. It is never ``unsteady``, ``upstream``, ``outlier``, ``fan_edge``
    or ``stride_limited`` (a direction and a stride mean nothing without motion). Flow
    slower than about 0.2 px/frame over a few seconds can read as still.

``stride_limited``
    A slow node needed a temporal stride (:func:`ivy_gpu.stiv.driver.apply_stride`) that the clip
    is too short to give (fewer than 32 steps of k frames would remain), or its strided
    re-measurement found no streak (the surface decorrelates over k frames) and it kept its
    full-rate value: its speed may read low (up to 18 % at 0.1 px/frame unstrided).
    *Informational*: use a longer clip.

Nodes flagged ``invalid``, ``threshold``, ``outlier``, ``low_score`` or ``unsteady`` are left
out of the discharge and filled by interpolation along the section like a NaN.

With ``method="gradient"`` the video is also checked against the ACF
(:func:`gradient_check`): the ACF re-measures up to ``gradient_check_nodes`` (8) nodes over
the whole fan, and a warning says so when the median ratio of the two speeds is off by more
than ``gradient_check_tolerance`` (25 %). A least-squares tensor fits one motion per STI and
can lock onto texture that hardly moves (the real Ngwerere clip: a quarter of the ACF's speed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivy_gpu.angles import geo_to_ari
from ivy_gpu.params import NODE_FLAGS as FLAGS

#: Flags that say a node is still water (kept, velocity 0).
STILL_DROPS = ("unsteady", "upstream", "outlier", "fan_edge", "stride_limited")
#: Flags that leave a node out of the discharge.
EXCLUDING = ("invalid", "threshold", "outlier", "low_score", "unsteady")


def has_flag(flags: list[str], names: tuple[str, ...]) -> np.ndarray:
    """Per node, whether its ``;``-separated flags (``stiv_results.csv``) hold one of ``names``."""
    return np.array([any(f in names for f in fl.split(";")) for fl in flags], bool)


def excluded_by(flags: list[str]) -> np.ndarray:
    """Per node, whether its ``;``-separated flags (``stiv_results.csv``) leave it out."""
    return has_flag(flags, EXCLUDING)


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the node flags (see the module docstring for the reasoning)."""

    outlier_threshold: float = 3.0
    outlier_epsilon: float = 0.2
    low_score_fraction: float = 0.5
    still_ratio: float = 0.8
    still_window_ratio: float = 0.6
    unsteady_cv: float = 0.5
    speed_floor: float = 0.05
    windows: int = 4
    min_window_frames: int = 24
    min_valid_fraction: float = 0.5
    gradient_check_nodes: int = 8
    gradient_check_tolerance: float = 0.25


@dataclass
class NodeQuality:
    """Quality of every node of one video."""

    flags: list[tuple[str, ...]]
    excluded: np.ndarray
    still: np.ndarray
    sigma_v: np.ndarray
    window_median: np.ndarray
    window_spread: np.ndarray
    windows: int
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Nodes per flag, and the valid (kept) count."""
        out = {f: sum(f in fl for fl in self.flags) for f in FLAGS}
        out["valid"] = int((~self.excluded).sum())
        return out

    def velocity(self, values: np.ndarray) -> np.ndarray:
        """``values`` (per node) with still nodes at 0."""
        return np.where(self.still, 0.0, values)

    def flag_strings(self) -> list[str]:
        """One ``;``-separated string per node (empty when clean)."""
        return [";".join(fl) for fl in self.flags]


def downstream_normal(
    line: np.ndarray, start_bank: str, magnitude: np.ndarray, direction_geo: np.ndarray
) -> tuple[np.ndarray, str | None]:
    """Unit normal of the section line pointing downstream, (x right, y up) components.

    Looking downstream, the left bank is on the left: a line drawn from the left bank to
    the right bank has the downstream side on its left (counter-clockwise turn of the
    line direction in a y-up frame), a line from the right bank on its right. When the
    median direction of the valid vectors disagrees with that side, the flow decides and
    a warning says so (the scaffold's bank is then probably wrong).
    """
    tx, ty = line[1, 0] - line[0, 0], -(line[1, 1] - line[0, 1])  # y up
    norm = np.hypot(tx, ty)
    if norm == 0:
        raise ValueError("cross_section_line: the two endpoints coincide")
    n = np.array([-ty, tx]) / norm
    if start_bank == "right":
        n = -n
    ok = np.isfinite(magnitude) & np.isfinite(direction_geo) & (magnitude > 0)
    if ok.sum() == 0:
        return n, None
    a = np.deg2rad(geo_to_ari(np.asarray(direction_geo, float)[ok]))
    u, v = magnitude[ok] * np.cos(a), magnitude[ok] * np.sin(a)
    along = u * n[0] + v * n[1]
    if np.median(along) < 0:
        return -n, (
            f"most vectors cross the section against the downstream side given by "
            f"cross_section_start_bank={start_bank!r}; the flow's side was used "
            "(check the scaffold's start bank)"
        )
    return n, None


def signed_normal(magnitude: np.ndarray, direction_geo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``V . n``: velocity normal to the section, positive downstream (m/s)."""
    a = np.deg2rad(geo_to_ari(np.asarray(direction_geo, float)))
    return magnitude * np.cos(a) * n[0] + magnitude * np.sin(a) * n[1]


def outliers(vn: np.ndarray, rules: QualityRules) -> np.ndarray:
    """Normalized median test along the section (nodes in station order)."""
    out = np.zeros(vn.shape, bool)
    ok = np.isfinite(vn)
    if ok.sum() < 3:
        return out
    eps = rules.outlier_epsilon * float(np.median(np.abs(vn[ok]))) + 1e-3
    idx = np.flatnonzero(ok)
    for k, i in enumerate(idx):
        nb = vn[idx[max(0, k - 2) : k][::-1].tolist() + idx[k + 1 : k + 3].tolist()]
        if nb.size < 2:
            continue
        med = np.median(nb)
        scale = np.median(np.abs(nb - med)) + eps
        out[i] = abs(vn[i] - med) / scale > rules.outlier_threshold
    return out


def time_windows(n_frames: int, rules: QualityRules) -> list[tuple[int, int]]:
    """``(start, stop)`` frames of the sliding time windows (empty when the clip is too short).

    Each window spans half the clip (at least ``min_window_frames``): a short window makes
    STIV itself noisy (fewer frame lags in the autocorrelation), which would read as
    unsteadiness. ``windows`` windows slide evenly from the start to the end of the clip,
    so they overlap; two halves of the clip are independent.
    """
    length = max(rules.min_window_frames, n_frames // 2)
    if n_frames < 2 * rules.min_window_frames or rules.windows < 2:
        return []
    starts = np.linspace(0, n_frames - length, rules.windows).round().astype(int)
    return [(int(a), int(a) + length) for a in starts]


def assess(
    sr: Any,
    vn: np.ndarray,
    stations: np.ndarray,
    window_vn: np.ndarray | None,
    phi_range: float,
    rules: QualityRules,
    zero_ratio: np.ndarray | None = None,
) -> NodeQuality:
    """Flags of every node from the STIV result, the signed normal velocity and the windows.

    ``window_vn`` is (K, nodes): the signed normal velocity of each node's best line in K
    time windows, or None when the clip is too short for two windows. ``zero_ratio``
    (:func:`zero_speed_ratios`, NaN where not measured) marks still nodes
    (``NodeQuality.still``); their velocity is 0 (:meth:`NodeQuality.velocity`).
    """
    n = vn.size
    flags: list[list[str]] = [[] for _ in range(n)]

    def add(mask: np.ndarray, name: str) -> None:
        for i in np.flatnonzero(mask):
            flags[i].append(name)

    valid_line = np.asarray(sr.valid_line, bool)
    add(~valid_line, "invalid")
    add(np.asarray(sr.over_threshold, bool), "threshold")
    score = np.asarray(sr.score, float)
    good = np.isfinite(score) & np.isfinite(vn)
    if good.any():
        add(good & (score < rules.low_score_fraction * np.median(score[good])), "low_score")
    still = np.zeros(n, bool)
    if zero_ratio is not None:  # still water needs texture to tell: not low_score
        still = is_still(zero_ratio, rules) & np.isfinite(vn) & ~_flagged(flags)
    vn = np.where(still, 0.0, vn)
    if phi_range < 180:
        add(np.asarray(sr.fan_edge, bool), "fan_edge")
    add(np.isfinite(vn) & (vn < 0), "upstream")
    if getattr(sr, "stride_limited", None) is not None:
        add(np.asarray(sr.stride_limited, bool), "stride_limited")
    order = np.argsort(stations, kind="stable")
    out = np.zeros(n, bool)
    out[order] = outliers(vn[order], rules)
    add(out, "outlier")
    sigma = np.full(n, np.nan)
    median = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    notes: list[str] = []
    k = 0
    if window_vn is not None:
        k = window_vn.shape[0]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            median = np.nanmedian(window_vn, axis=0)
            # robust spread: one window spoiled by glare must not make a node unsteady
            sigma = 1.4826 * np.nanmedian(np.abs(window_vn - median), axis=0)
            spread = np.nanmax(window_vn, axis=0) - np.nanmin(window_vn, axis=0)
        sigma[np.sum(np.isfinite(window_vn), axis=0) < 2] = np.nan
        limit = rules.unsteady_cv * np.maximum(np.abs(median), rules.speed_floor)
        steady = (sigma <= limit) & (np.abs(vn - median) <= limit)
        add(np.isfinite(vn) & ~steady, "unsteady")
    else:
        notes.append("clip too short for the time windows: no sigma_v and no 'unsteady' flag")
    for i in np.flatnonzero(still):
        flags[i] = [f for f in flags[i] if f not in STILL_DROPS] + ["still"]
    ordered = [tuple(f for f in FLAGS if f in fl) for fl in flags]
    excluded = np.array([any(f in EXCLUDING for f in fl) for fl in ordered], bool)
    excluded |= ~np.isfinite(vn)
    return NodeQuality(ordered, excluded, still, sigma, median, spread, k, notes)


def _flagged(flags: list[list[str]]) -> np.ndarray:
    """Nodes with a flag so far (no line, too fast, or too little texture to tell)."""
    return np.array([bool(fl) for fl in flags], bool)


def is_still(zero_ratio: np.ndarray, rules: QualityRules) -> np.ndarray:
    """Nodes whose zero-speed ray scores like the best one over the clip and in every window.

    ``zero_ratio`` is (1 + windows, nodes) from :func:`zero_speed_ratios` (or one row): the
    whole clip's ratio must reach ``still_ratio`` and every window's ``still_window_ratio``.
    """
    r = np.atleast_2d(np.asarray(zero_ratio, float))
    still = np.isfinite(r[0]) & (r[0] >= rules.still_ratio)
    with np.errstate(invalid="ignore"):
        still &= np.all(~(r[1:] < rules.still_window_ratio), axis=0)  # NaN windows: no say
    return still


def zero_speed_ratio(sti: np.ndarray, params: Any) -> np.ndarray:
    """Score of the zero-speed ray over the best ray score, per STI (reference ACF).

    ``sti`` is (n, P, T) raw STIs; each is z-scored along time, autocorrelated and
    integrated along the rays of the spec's polar grid (section 8.3), as STIV scores it.
    NaN where the STI is unusable.
    """
    from ivy_gpu.kernels.acf import acf_full_numpy
    from ivy_gpu.kernels.rays import crop_bounds, polar_grid, ray_integrals_numpy
    from ivy_gpu.kernels.sti import standardize_numpy

    sti = np.asarray(sti, np.float32)
    n, p, t = sti.shape
    out = np.full(n, np.nan)
    z, valid = standardize_numpy(sti)
    ok = valid & np.isfinite(sti).all(axis=(1, 2))
    if not ok.any():
        return out
    r = acf_full_numpy(z[ok])
    r0, r1, c0, c1 = crop_bounds(p, t)
    rho, theta = polar_grid(p, t, params.d_rho, params.d_theta)
    f = ray_integrals_numpy(r[:, r0:r1, c0:c1], p, t, rho, theta, params.d_rho)
    best = f.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ok] = np.where(best > 0, f[:, 0] / best, np.nan)
    return out


def zero_speed_ratios(
    loaded: Any, nodes: np.ndarray, sr: Any, params: Any, engine: Any, rules: QualityRules
) -> np.ndarray | None:
    """:func:`zero_speed_ratio` of each slow node's best line, whole clip and time windows.

    Returns (1 + windows, nodes): the whole clip's ratio, then each time window's
    (:func:`time_windows`). Still water shows no streak in any part of the clip; flow over a
    visible static bed or bank shows a zero-speed ridge *and* the streaks of what floats by,
    which win in some window (:func:`is_still` asks both). Only
    nodes slower than ``config.STRIDE_BELOW_PX`` px/frame at full frame rate (where a streak
    can be confused with none) are measured; NaN elsewhere. None for the gradient method (it
    has no rays) and with ``search_line="ivytools"`` (the reference keeps its own results).
    """
    from ivy_gpu import config
    from ivy_gpu.stiv.driver import run_stiv

    if params.method != "acf" or params.search_line != "unit":
        return None
    n = len(nodes)
    windows = time_windows(loaded.stack.shape[0], rules)
    out = np.full((1 + len(windows), n), np.nan)
    slope = np.abs(np.tan(np.deg2rad(np.asarray(sr.theta, float))))
    pick = np.flatnonzero(np.isfinite(slope) & (slope < config.STRIDE_BELOW_PX))
    if not pick.size:
        return out
    if sr.sti is not None:  # the run gathered every node's best STI already (for the figures)
        stis = sr.sti[pick]
    else:
        ox, oy = loaded.offset
        stis = run_stiv(
            loaded.stack,
            nodes[pick, 0] - ox,
            nodes[pick, 1] - oy,
            params.replace(stride=False),
            pixel_gsd=loaded.rectifier.pixel_gsd,
            d_t=loaded.dt,
            backend=engine,
            phis=np.asarray(sr.best_phi_ari, float)[pick, None],
            return_sti=True,
        ).sti
    out[0, pick] = zero_speed_ratio(stis, params)
    for k, (start, stop) in enumerate(windows):
        out[1 + k, pick] = zero_speed_ratio(stis[..., start:stop], params)
    return out


def window_normals(
    loaded: Any,
    nodes: np.ndarray,
    sr: Any,
    params: Any,
    engine: Any,
    n_hat: np.ndarray,
    rules: QualityRules,
) -> np.ndarray | None:
    """Signed normal velocity of each node's best line in the sliding time windows.

    Each node's chosen line is re-measured in every window
    (:func:`ivy_gpu.stiv.quality.time_windows`); shape (windows, nodes), None when the clip is
    too short.
    """
    from ivy_gpu.stiv.driver import run_stiv_windows

    windows = time_windows(loaded.stack.shape[0], rules)
    if not windows:
        return None
    origin = geo_to_ari(params.phi_origin)
    best = np.where(np.isfinite(sr.best_phi_ari), sr.best_phi_ari, origin)
    phis = best[:, None]  # one line per node: the chosen one
    rect = loaded.rectifier
    ox, oy = loaded.offset
    results = run_stiv_windows(
        loaded.stack,
        nodes[:, 0] - ox,
        nodes[:, 1] - oy,
        params,
        windows,
        phis,
        pixel_gsd=rect.pixel_gsd,
        d_t=loaded.dt,
        backend=engine,
    )
    return np.array([signed_normal(r.magnitude, r.direction, n_hat) for r in results])


def gradient_check(
    loaded: Any, nodes: np.ndarray, sr: Any, params: Any, engine: Any, rules: QualityRules
) -> str | None:
    """A warning when the gradient method's speeds disagree with the ACF's at a few nodes.

    None when the method is not ``gradient``, when they agree, or when too few nodes
    have a speed from both methods (fewer than three) to tell.
    """
    from ivy_gpu.stiv.driver import run_stiv

    if params.method != "gradient":
        return None
    have = np.flatnonzero(np.isfinite(sr.magnitude))
    if have.size < 3:
        return None
    spread = np.linspace(0, have.size - 1, rules.gradient_check_nodes).round().astype(int)
    pick = have[np.unique(spread)]
    ox, oy = loaded.offset
    acf = run_stiv(
        loaded.stack,
        nodes[pick, 0] - ox,
        nodes[pick, 1] - oy,
        params.replace(method="acf"),
        pixel_gsd=loaded.rectifier.pixel_gsd,
        d_t=loaded.dt,
        backend=engine,
    )
    ok = np.isfinite(acf.magnitude) & (acf.magnitude > 0)
    if ok.sum() < 3:
        return None
    ratio = float(np.median(sr.magnitude[pick][ok] / acf.magnitude[ok]))
    if abs(ratio - 1.0) <= rules.gradient_check_tolerance:
        return None
    return (
        f"method 'gradient' reads {ratio:.2f} x the ACF's speed at {int(ok.sum())} check "
        "nodes (median): it does not fit this video; use method 'acf'"
    )


def quality_rules(min_valid_fraction: float = 0.5) -> QualityRules:
    """Quality rules with a checked ``min_valid_fraction`` (in [0, 1])."""
    from ivy_gpu.checks import check_range

    return QualityRules(
        min_valid_fraction=check_range("min_valid_fraction", min_valid_fraction, 0, 1)
    )
