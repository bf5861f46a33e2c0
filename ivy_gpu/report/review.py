"""``review.html``: every node of one video and what the discharge took from it.

One self-contained page per video folder (images inline, no script, no link outside the
folder but the batch report beside it): one row per node with its best space-time image (the
fitted streak drawn, metres and seconds on the axes), its speed, normal velocity, score,
``sigma_v`` and stride, every flag with the one-line reason, and the value the discharge used
with its source (measured, filled, excluded, override). Written with the figures; a recompute
with overrides writes it again.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import cv2
import numpy as np

from ivy_gpu.fileio import atomic_write_text
from ivy_gpu.report.figures import discharge_text
from ivy_gpu.results import ProcessingResult
from ivy_gpu.units import format_value

REVIEW = "review.html"

#: One line per flag: why it was raised, and what it did to the node.
FLAG_REASONS = {
    "invalid": "no usable search line (every line leaves the image or meets no-data): filled",
    "threshold": "faster than the scaffold's max_vel_threshold: filled",
    "fan_edge": "best angle at the edge of the search fan; the flow may lie outside it (kept)",
    "upstream": "moves upstream, counts as negative discharge (kept)",
    "outlier": "differs from its neighbours (normalized median test): filled",
    "low_score": "weak streak: score below half the video's median score: filled",
    "unsteady": "the half-clip time windows disagree on its velocity: filled",
    "stride_limited": "slow, and the clip is too short for the stride it needed: may read low",
    "still": "still water: the zero-speed ray scores like the best one; reads 0 m/s (kept)",
}
#: Source of the used value -> how the page says it.
SOURCE_WORDS = {
    "measured": "measured",
    "filled": "filled (no valid measurement)",
    "excluded": "filled (measured value left out)",
    "override": "set by hand (override)",
}

_STI_HEIGHT, _STI_WIDTH = 96, 240


def sti_levels(sti: np.ndarray) -> np.ndarray:
    """The STIs as the figures draw them: grey levels rounded to whole numbers (NaN kept).

    An STI's samples are interpolated from 8-bit frames, so their fractions hold no more of
    the scene; rounded, they are stored as one byte each
    (:func:`ivy_gpu.pipeline.outputs.save_figure_inputs`), and a redraw from the file shows
    exactly what the first drawing showed.
    """
    levels = np.rint(np.asarray(sti, np.float32))
    return np.clip(levels, 0.0, 255.0, out=levels)


def stretch_bounds(sti: np.ndarray) -> tuple[float, float] | None:
    """The 1st and 99th percentiles of an STI's grey levels (None when no sample is finite).

    The samples are counted as whole grey levels (:func:`sti_levels`: what the figures' STIs
    hold) in a 256-bin histogram, whose order statistics give ``np.nanpercentile``'s linear
    interpolation without sorting the samples.
    """
    img = sti_levels(sti).ravel()
    img = img[~np.isnan(img)]
    if img.size == 0:
        return None
    counts = np.bincount(img.astype(np.intp), minlength=256)
    ends = np.cumsum(counts)
    out = []
    for q in (0.01, 0.99):
        at = q * (img.size - 1)
        below = math.floor(at)
        a, b = np.searchsorted(ends, [below, min(below + 1, img.size - 1)], side="right")
        t = at - below  # numpy's lerp, from the nearer end
        out.append(float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)))
    return out[0], out[1]


def sti_image(sti: np.ndarray, theta_deg: float) -> str | None:
    """A JPEG data URI of one STI (percentile-stretched) with its fitted streak in red.

    The stretch is :func:`stretch_bounds`'; the STI is first sampled down to the page's size
    (nearest neighbour), then stretched.
    """
    img = np.asarray(sti, np.float32)
    bounds = stretch_bounds(img) if img.ndim == 2 else None
    if bounds is None:
        return None
    lo, hi = bounds
    shown = cv2.resize(img, (_STI_WIDTH, _STI_HEIGHT), interpolation=cv2.INTER_NEAREST)
    scaled = np.clip((shown - lo) / max(hi - lo, 1e-6) * 255, 0, 255)
    grey = np.nan_to_num(scaled).astype(np.uint8)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    p, t = img.shape
    if math.isfinite(theta_deg):
        # the streak through the origin: distance (samples) = tan(theta) * time (frames)
        slope = math.tan(math.radians(theta_deg))
        t_end = t if abs(slope * t) <= p else p / abs(slope)
        x1 = round(t_end / t * (_STI_WIDTH - 1))
        y1 = round(abs(slope) * t_end / p * (_STI_HEIGHT - 1))
        cv2.line(bgr, (0, 0), (x1, y1), (0, 0, 255), 2)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 82])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def _cell(v: float | None, spec: str, factor: float = 1.0) -> str:
    return format_value(None if v is None else float(v) * factor, spec) or "-"


def write_review(
    out: Path,
    r: ProcessingResult,
    sti: np.ndarray | None,
    theta: np.ndarray,
    score: np.ndarray,
    units,
    report_link: str | None = None,
) -> Path:
    """Write ``out/review.html`` for the result ``r`` (its table's ``Source`` gives the use).

    ``sti`` is (nodes, P, T) (None: rows without images); ``theta`` and ``score`` per node;
    ``units`` the display unit system; ``report_link`` a relative link to the batch report.
    """
    u = units
    n = len(r.node_positions)
    table = r.discharge_dataframe
    used = table["Surface Velocity"].to_numpy()[1:-1]
    source = table["Source"].to_numpy()[1:-1]
    flags = r.node_flags or [""] * n
    gsd, dt = r.pixel_gsd or 1.0, r.timestep_seconds or 1.0
    sigma = r.node_sigma_v if r.node_sigma_v is not None else np.full(n, np.nan)
    stride = r.node_stride if r.node_stride is not None else np.ones(n)
    rows = []
    for k in range(n):
        img = sti_image(sti[k], float(theta[k])) if sti is not None else None
        p, t = (sti.shape[1], sti.shape[2]) if sti is not None else (0, 0)
        if img:
            picture = (
                f'<figure class=sti><img alt="STI of node {k}" src="{img}">'
                f"<span class=y0>0</span><span class=y1>{p * gsd * u.length:.2f} "
                f"{u.length_label}</span><span class=x1>{t * dt:.1f} s</span></figure>"
            )
        else:
            picture = "<span class=none>no image</span>"
        reasons = "".join(
            f"<li><b>{html.escape(f)}</b>: {html.escape(FLAG_REASONS.get(f, ''))}</li>"
            for f in flags[k].split(";")
            if f
        )
        src = str(source[k])
        rows.append(
            f'<tr class="node {html.escape(src)}" id="node{k}"><td class=num>{k}</td>'
            f"<td class=num>{_cell(r.node_stations[k], '.2f', u.length)}</td><td>{picture}</td>"
            f"<td class=num>{_cell(r.stiv_magnitudes[k], '.3f', u.velocity)}</td>"
            f"<td class=num>{_cell(r.stiv_normal_velocities[k], '.3f', u.velocity)}</td>"
            f"<td class=num>{_cell(score[k], '.3g')}</td>"
            f"<td class=num>{_cell(sigma[k], '.3f', u.velocity)}</td>"
            f"<td class=num>{_cell(stride[k], '.0f')}</td><td><ul class=flags>{reasons}</ul></td>"
            f"<td class=num>{_cell(used[k], '.3f', u.velocity)}</td>"
            f"<td>{html.escape(SOURCE_WORDS.get(src, src))}</td></tr>"
        )  # fmt: skip
    counts = {s: int(np.sum(np.asarray(source) == s)) for s in SOURCE_WORDS}
    summary = ", ".join(f"{counts[s]} {SOURCE_WORDS[s]}" for s in SOURCE_WORDS if counts[s])
    unc = r.discharge_uncertainty or {}
    rated = ""
    if r.quality_rating:
        why = "; ".join(r.quality_reasons)
        rated = f"Rated {r.quality_rating}" + (f" ({why})" if why else "") + ". "
    windows = [q for q in unc.get("window_discharges") or [] if np.isfinite(q)]
    if windows:
        qs = ", ".join(f"{q * u.discharge:.4g}" for q in windows)
        rated += (
            f"The clip's {len(windows)} half-length time windows give Q = {qs} "
            f"{u.discharge_label}; U95 includes their spread."
        )
    back = ""
    if report_link:
        back = f'<p><a href="{html.escape(report_link)}">back to the batch report</a></p>'
    page = _PAGE.format(
        title=html.escape(f"{r.video_path.name}: every node"),
        name=html.escape(r.video_path.name),
        q=html.escape(f"Q = {discharge_text(r, u)}"),
        summary=html.escape(f"{n} nodes: {summary}"),
        rated=html.escape(rated),
        back=back,
        vl=html.escape(u.velocity_label),
        ll=html.escape(u.length_label),
        rows="\n".join(rows),
    )
    path = out / REVIEW
    atomic_write_text(path, page)
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; vertical-align: middle; }}
th {{ background: #f0f0f0; position: sticky; top: 0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.filled td, tr.excluded td {{ background: #fdecea; }}
tr.override td {{ background: #fff6d6; }}
ul.flags {{ margin: 0; padding-left: 1.1em; max-width: 28em; }}
figure.sti {{ position: relative; margin: 0 0 1.1em 2.6em; width: 240px; }}
figure.sti img {{ display: block; width: 240px; height: 96px; }}
figure.sti span {{ position: absolute; font-size: 0.75em; color: #555; white-space: nowrap; }}
.y0 {{ left: -1.2em; top: 0; }} .y1 {{ left: -3.2em; bottom: 0; transform: translateX(-30%); }}
.x1 {{ right: 0; bottom: -1.3em; }}
</style></head><body>
<h1>{name}</h1>
<p><b>{q}</b>. {summary}.</p>
<p>{rated}</p>
{back}
<p>Each row is one node: its best space-time image (distance along the search line down, time
to the right, the fitted streak in red), what was measured, every flag with its reason, and the
value the discharge used. Rows in red were filled from their neighbours; yellow rows were set by
hand (<code>ivy-gpu recompute --overrides</code>).</p>
<table>
<thead><tr><th>node</th><th>station ({ll})</th><th>space-time image</th><th>speed ({vl})</th>
<th>normal velocity ({vl})</th><th>score</th><th>sigma_v ({vl})</th><th>stride</th>
<th>flags</th><th>used ({vl})</th><th>source</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""
