"""Discharge uncertainty: ISO 748 and IVE (Cohn, Kiang and Mason, 2013).

Domain specification, section 11, with the fixes of section 14.17: the
rectification term uses the real RMSE over the wetted width, the ISO
contributions name their own terms, the IVE sums use ``(q_i s / x_i)^2`` (not
``q_i^4``), the IVE velocity-spread floor is a fraction of the mean velocity (so
both sides are m/s), and fewer than 6 verticals gives an explicit invalid result.
All results are 95 % expanded uncertainties as fractions (0.06 = 6 %).

Neither sees what the clip itself shows about time sampling: a few seconds of a surface
that gusts, with a node that reads differently in each half, is one sample. The stated
uncertainty ``u95`` (:func:`combined_u95`) is ISO 748's with a time-sampling term from the
discharge of each time window of the clip (:func:`time_sampling`); :func:`rating` turns it
and the share of filled nodes into a measurement rating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ISO_VERTICALS = ([5, 10, 15, 20, 25, 30, 35], [0.075, 0.045, 0.030, 0.025, 0.020, 0.015, 0.010])


@dataclass(frozen=True)
class UncertaintyInputs:
    """1-sigma inputs (fractions) and the rectification RMSE."""

    rectification_rmse_m: float = 0.0
    scene_width_m: float = 1.0
    u_so: float = 0.01
    u_sm: float = 0.01
    u_b: float = 0.005
    u_c: float = 0.0
    u_alpha: float = 0.03

    @property
    def u_rect(self) -> float:
        """Rectification uncertainty: RMSE over the scene (wetted) width."""
        if self.scene_width_m <= 0:
            raise ValueError("uncertainty: scene width must be > 0")
        return self.rectification_rmse_m / self.scene_width_m

    def systematic(self) -> float:
        """``u_s = sqrt(u_so^2 + u_sm^2 + u_alpha^2 + u_rect^2)``."""
        return math.sqrt(self.u_so**2 + self.u_sm**2 + self.u_alpha**2 + self.u_rect**2)


@dataclass(frozen=True)
class UncertaintyResult:
    """ISO 748 and IVE 95 % uncertainties (fractions) with per-term contributions."""

    iso_u95: float
    ive_u95: float
    iso_contributions: dict = field(default_factory=dict)
    ive_contributions: dict = field(default_factory=dict)
    ive_note: str = ""
    time_u95: float = float("nan")
    u95: float = float("nan")
    window_discharges: list = field(default_factory=list)


def time_sampling(q_windows, q_total: float) -> float:
    """Relative 1-sigma of the clip's discharge from the discharge of its time windows.

    The windows (:func:`ivy_gpu.stiv.quality.time_windows`) each span half the clip and
    slide from its start to its end, so the first and the last are its two independent
    halves: the clip's value, their mean, has ``std(Q_k) / sqrt(2)``. A whole-clip value
    away from what the windows say (their median) counts too: ``sqrt(s^2 / 2 + (Q -
    median(Q_k))^2) / |Q|``. NaN with fewer than two window discharges.
    """
    q = np.asarray(q_windows, float)
    q = q[np.isfinite(q)]
    if q.size < 2 or not (math.isfinite(q_total) and q_total != 0):
        return float("nan")
    s2 = float(np.var(q, ddof=1)) / 2.0 + (q_total - float(np.median(q))) ** 2
    return math.sqrt(s2) / abs(q_total)


def combined_u95(iso_u95: float, time_u95: float) -> float:
    """The stated U95: ISO 748's and the time-sampling term in quadrature (ISO alone without)."""
    if not math.isfinite(time_u95):
        return iso_u95
    return math.hypot(iso_u95, time_u95)


#: Rating bands: (name, highest U95, highest share of filled nodes), best first.
RATING_BANDS = (("good", 0.10, 0.10), ("fair", 0.20, 0.25))


def rating(u95: float, filled: int, nodes: int, windows: int) -> tuple[str, list[str]]:
    """A measurement rating, ``good`` / ``fair`` / ``poor``, and why it is not better.

    ``good``: U95 at most 10 % and at most 10 % of the nodes filled; ``fair``: at most 20 %
    and 25 %; ``poor`` otherwise, or when U95 is unknown. A clip too short for the time
    windows is at best ``fair`` (its time sampling was not checked).
    """
    reasons: list[str] = []
    share = filled / nodes if nodes else 1.0
    if not (u95 is not None and math.isfinite(u95)):
        return "poor", ["no uncertainty"]
    grade = len(RATING_BANDS)
    for i, (_, top_u, top_fill) in enumerate(RATING_BANDS):
        if u95 <= top_u and share <= top_fill:
            grade = i
            break
    if grade > 0:
        top_u, top_fill = RATING_BANDS[0][1:]
        if u95 > top_u:
            reasons.append(f"U95 {100 * u95:.1f} % > {100 * top_u:.0f} %")
        if share > top_fill:
            reasons.append(f"{filled} of {nodes} nodes filled")
    if not windows and grade == 0:
        grade, reasons = 1, ["clip too short for the time windows"]
    names = [b[0] for b in RATING_BANDS] + ["poor"]
    return names[grade], reasons


def iso748(depths, unit_q, inputs: UncertaintyInputs, u_p_nodes=None) -> tuple[float, dict]:
    """ISO 748 U95 (fraction) and the share of each term in ``u_q^2``.

    ``u_p_nodes`` (relative 1-sigma per vertical, NaN where unknown) replaces ISO 748's
    assumed point-velocity uncertainty (7 %) by the measured one: for STIV, the standard
    error of a node's velocity over the clip's time windows (``sigma_v / sqrt(K) / |v|``).
    """
    d = np.asarray(depths, float)
    q = np.asarray(unit_q, float)
    up = np.full(d.shape, 0.07)
    if u_p_nodes is not None:
        measured = np.asarray(u_p_nodes, float)
        up = np.where(np.isfinite(measured), measured, 0.07)
    ok = np.isfinite(d) & np.isfinite(q)
    d, q, up = d[ok], q[ok], up[ok]
    n = int(np.asarray(depths).size)
    u_m = float(np.interp(n, *ISO_VERTICALS))
    qs = q.sum()
    if not qs > 0:
        return float("nan"), {}
    w2 = np.sum(q**2) / qs**2
    terms = {
        "u_so": inputs.u_so**2,
        "u_sm": inputs.u_sm**2,
        "u_alpha": inputs.u_alpha**2,
        "u_rect": inputs.u_rect**2,
        "u_m": u_m**2,
        "u_b": w2 * inputs.u_b**2,
        "u_d": float(np.sum(q**2 * np.where(d > 0.3, 0.005, 0.015) ** 2) / qs**2),
        "u_p": float(np.sum(q**2 * up**2) / qs**2),
        "u_v": w2 * 0.08**2,
        "u_c": w2 * inputs.u_c**2,
    }
    uq2 = sum(terms.values())
    return 2.0 * math.sqrt(uq2), {k: v / uq2 for k, v in terms.items()}


def ive(
    stations, depths, surface_velocity, alpha, unit_q, q_total: float, inputs: UncertaintyInputs
) -> tuple[float, dict, str]:
    """IVE U95 (fraction), contributions and a note (empty when valid)."""
    b = np.asarray(stations, float)
    d = np.asarray(depths, float)
    v = np.broadcast_to(np.asarray(alpha, float), b.shape) * np.asarray(surface_velocity, float)
    v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
    q = np.asarray(unit_q, float)
    n = b.size
    if n < 6:
        return float("nan"), {}, f"IVE needs at least 6 verticals, got {n}"
    if not q_total > 0:
        return float("nan"), {}, "IVE needs a positive discharge"
    s_d = s_v = 0.0
    for i in range(2, n - 2):
        if b[i + 1] == b[i - 1]:
            continue
        w = (b[i + 1] - b[i]) / (b[i + 1] - b[i - 1])
        dd = d[i] - (w * d[i - 1] + (1 - w) * d[i + 1])
        dv = v[i] - (w * v[i - 1] + (1 - w) * v[i + 1])
        if np.isfinite(dd) and np.isfinite(dv) and np.isfinite(w):
            s_d += dd**2 / (2 * (1 - w + w**2))
            s_v += dv**2 / (2 * (1 - w + w**2))
    s_d = math.sqrt(s_d / (n - 5))
    s_v = max(math.sqrt(s_v / (n - 5)), inputs.u_sm * float(np.nanmean(v)))
    ud2 = uv2 = ub2 = 0.0
    for i in range(2, n - 2):
        if np.isfinite(q[i]) and d[i] > 0 and v[i] > 0:
            ud2 += (q[i] * s_d / d[i]) ** 2 / q_total**2
            uv2 += (q[i] * s_v / v[i]) ** 2 / q_total**2
            ub2 += q[i] ** 2 * inputs.u_b**2 / q_total**2
    terms = {"u_s": inputs.systematic() ** 2, "u_d": ud2, "u_v": uv2, "u_b": ub2}
    uq2 = sum(terms.values())
    return 2.0 * math.sqrt(uq2), {k: t / uq2 for k, t in terms.items()}, ""


def discharge_uncertainty(
    table, q_total: float, inputs: UncertaintyInputs, u_p_nodes=None, q_windows=None
) -> UncertaintyResult:
    """Both estimates from a mid-section table (:func:`ivy_gpu.hydraulics.discharge.midsection`).

    ``u_p_nodes``: measured relative velocity uncertainty per table row (see :func:`iso748`).
    ``q_windows``: the discharge of each time window of the clip (:func:`time_sampling`).
    """
    iso_u95, iso_c = iso748(table["Depth"], table["Unit Discharge"], inputs, u_p_nodes)
    ive_u95, ive_c, note = ive(
        table["Station Distance"],
        table["Depth"],
        table["Surface Velocity"],
        table["α (alpha)"],
        table["Unit Discharge"],
        q_total,
        inputs,
    )
    windows = [] if q_windows is None else [float(q) for q in q_windows]
    time_u95 = 2.0 * time_sampling(windows, q_total)
    return UncertaintyResult(
        iso_u95, ive_u95, iso_c, ive_c, note, time_u95, combined_u95(iso_u95, time_u95), windows
    )
