"""PNG figures of a measurement (matplotlib, written atomically).

Figures are drawn on their own Agg canvas (``matplotlib.figure.Figure``), never through
``pyplot``: importing this module does not change the user's matplotlib backend (a
notebook keeps its own), and no figure is left open in pyplot's registry.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ivy_gpu.fileio import atomic_output
from ivy_gpu.report import layout
from ivy_gpu.results import stated_u95

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ivy_gpu.results import ProcessingResult
    from ivy_gpu.units import UnitSystem

#: Resolution of the saved PNGs. Figures are created at it, so the text extents measured for
#: their layout (:mod:`ivy_gpu.report.layout`) are reused when the figure is saved.
DPI = 110

#: Titles stand on the axes' top edge (their pad above it). Given, matplotlib does not look for
#: tick labels above the axes at every draw (these figures have none there): 5-8 % less
#: drawing time, the same PNGs.
TITLE_Y = 1.0

#: Characters per line of an STI panel's title (9 pt in a 3.4 in panel), wrapped beyond.
STI_TITLE_CHARS = 40

#: Points at least between the section plot and its title, where its legend stands.
TITLE_PAD = 28

#: The figures of one video (:func:`ivy_gpu.pipeline.outputs.write_figures`), each with the
#: report's caption.
FIGURES = (
    ("rectified_vectors.png", "surface velocity"),
    ("section.png", "section"),
    ("stis.png", "space-time images"),
)


def discharge_text(r: ProcessingResult, u: UnitSystem) -> str:
    """``Q = 1.96 ± 0.17 m³/s (U95, fair)`` in display units: the stated U95 and the rating."""
    q = r.total_discharge * u.discharge
    u95 = stated_u95(r.discharge_uncertainty)
    pm = f" ± {u95 * abs(q):.2g}" if u95 is not None else ""
    text = f"{q:.4g}{pm} {u.discharge_label}"
    if u.name == "English":
        text += f" ({r.total_discharge:.4g} m³/s)"
    said = ", ".join(x for x in ("U95" if pm else "", r.quality_rating or "") if x)
    return text + (f" ({said})" if said else "")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return Path(path)


def _show(ax, image: np.ndarray, max_width: int = 900) -> None:
    """Show a gray image in pixel coordinates, downsampled first (Agg resampling is slow)."""
    import cv2

    h, w = image.shape[:2]
    shown = image
    if w > max_width:
        shown = cv2.resize(
            image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA
        )
    ax.imshow(shown, cmap="gray", extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")


def _nice(x: float) -> float:
    """A round number (1, 2 or 5 times a power of ten) not above ``x``."""
    if not x > 0:
        return 1.0
    p = 10 ** np.floor(np.log10(x))
    return float(max(m for m in (1, 2, 5) if m * p <= x) * p)


def _scale_bar(ax, width_px: int, height_px: int, gsd_m: float, factor: float, label: str) -> None:
    """A scale bar of a round length (display units) in the lower-left corner."""
    length = _nice(0.2 * width_px * gsd_m * factor)
    px = length / factor / gsd_m
    x0, y0 = 0.04 * width_px, 0.95 * height_px
    ax.plot([x0, x0 + px], [y0, y0], "-", color="white", lw=4, solid_capstyle="butt")
    ax.plot([x0, x0 + px], [y0, y0], "-", color="black", lw=1.5, solid_capstyle="butt")
    ax.text(x0 + px / 2, y0 - 0.02 * height_px, f"{length:g} {label}", ha="center",
            va="bottom", color="white", fontsize=8,
            bbox=dict(facecolor="black", alpha=0.5, lw=0, pad=1))  # fmt: skip


def _north_arrow(ax, width_px: int, height_px: int, north: tuple[float, float]) -> None:
    """A north arrow in the upper-right corner; ``north`` is (dx, dy) in image pixels."""
    d = np.asarray(north, float)
    d = d / np.hypot(*d) * 0.07 * min(width_px, height_px)
    x, y = 0.93 * width_px, 0.12 * height_px
    ax.annotate("", xy=(x + d[0], y + d[1]), xytext=(x - d[0], y - d[1]),
                arrowprops=dict(arrowstyle="-|>", color="white", lw=2))  # fmt: skip
    ax.text(x + 1.5 * d[0], y + 1.5 * d[1], "N", color="white", ha="center", va="center",
            fontsize=10, fontweight="bold")  # fmt: skip


def rectified_vectors(
    path: Path,
    rectified: np.ndarray,
    nodes: np.ndarray,
    line: np.ndarray,
    magnitude: np.ndarray,
    direction_geo: np.ndarray,
    title: str = "",
    excluded: np.ndarray | None = None,
    noted: np.ndarray | None = None,
    gsd_m: float | None = None,
    units=None,
    north: tuple[float, float] | None = (0.0, -1.0),
    limited: np.ndarray | None = None,
) -> Path:
    """Rectified frame with the section line, nodes and surface velocity vectors.

    ``excluded`` vectors (flagged, left out of the discharge) are drawn red, ``noted`` ones
    (flagged but kept: fan edge, upstream) orange, the others cyan; ``limited`` nodes (slow,
    the clip too short for the temporal stride they needed) are ringed in yellow. A speed
    key, a scale bar (when ``gsd_m`` is known) and a north arrow (``north``: the image
    direction of +Y, None when the plan view is not north-up) are drawn in ``units``
    (display units).
    """
    from ivy_gpu.units import METRIC

    u = units or METRIC
    h, w = rectified.shape[:2]
    fig = _figure(8, 8 * h / w + 0.7)
    ax = fig.subplots()
    _show(ax, rectified)
    ax.plot(line[:, 0], line[:, 1], "-", color="yellow", lw=1.5, label="cross-section")
    a = np.deg2rad(90.0 - np.asarray(direction_geo))
    ok = np.isfinite(magnitude)
    n = len(nodes)
    excluded = np.zeros(n, bool) if excluded is None else np.asarray(excluded, bool)
    noted = np.zeros(n, bool) if noted is None else np.asarray(noted, bool)
    top = float(np.nanmax(magnitude)) if ok.any() else 1.0
    scale = 0.15 * w / max(top, 1e-6)
    drawn = None
    for sel, colour, label in (
        (ok & ~excluded & ~noted, "cyan", "measured"),
        (ok & noted & ~excluded, "orange", "flagged, kept (fan edge / upstream)"),
        (ok & excluded, "red", "flagged, left out and filled"),
    ):
        if sel.any():
            drawn = ax.quiver(
                nodes[sel, 0],
                nodes[sel, 1],
                magnitude[sel] * np.cos(a[sel]) * scale,
                -magnitude[sel] * np.sin(a[sel]) * scale,
                color=colour,
                angles="xy",
                scale_units="xy",
                scale=1,
                width=0.003,
                label=label,
            )
    if drawn is not None:
        key = _nice(top * u.velocity)
        ax.quiverkey(drawn, 0.80, 0.05, key / u.velocity * scale, f"{key:g} {u.velocity_label}",
                     labelpos="N", coordinates="axes", color="white", labelcolor="white",
                     fontproperties={"size": 8})  # fmt: skip
    if (~ok).any():
        ax.plot(nodes[~ok, 0], nodes[~ok, 1], "rx", label="no velocity")
    if limited is not None and np.asarray(limited, bool).any():
        sel = np.asarray(limited, bool)
        ax.plot(nodes[sel, 0], nodes[sel, 1], "o", mfc="none", mec="yellow", ms=9,
                label="stride-limited (slow, clip too short)")  # fmt: skip
    if gsd_m:
        _scale_bar(ax, w, h, gsd_m, u.length, u.length_label)
    if north is not None:
        _north_arrow(ax, w, h, north)
    ax.set_title(title or "rectified frame, surface velocity", y=TITLE_Y)
    ax.set_axis_off()
    layout.row(fig, [ax], fig.canvas.get_renderer(), bottom=0.06 * fig.get_figheight())
    fig.legend(loc="lower center", ncol=4, fontsize=8, frameon=False)
    return _save(fig, path)


def sti_panels(
    path: Path,
    stis: np.ndarray,
    picks: list[tuple[str, int]],
    theta: np.ndarray,
    speed: np.ndarray,
    score: np.ndarray,
    gsd_m: float,
    dt_s: float,
    stride: np.ndarray | None = None,
    units=None,
    flags: list[str] | None = None,
) -> Path:
    """Space-time images of chosen nodes (e.g. best, median, worst score) in metres and seconds.

    ``picks`` are (label, node) pairs. The fitted streak (the detected angle ``theta``) is
    drawn over each STI; the title gives the node's speed, score and quality flags
    (``flags``, ``;``-separated per node). A node re-measured at a temporal stride
    (``stride``) shows its full-rate STI and angle, and says so.
    """
    from ivy_gpu.units import METRIC

    u = units or METRIC
    k = max(1, len(picks))
    fig = _figure(3.4 * k, 3.8)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for ax, (label, i) in zip(axes, picks, strict=False):
        img = stis[i]
        p, t = img.shape
        step = dt_s  # the STI and its angle are the full-rate search's (see apply_stride)
        ext = (0.0, t * step, p * gsd_m * u.length, 0.0)
        ax.imshow(img, cmap="gray", aspect="auto", interpolation="nearest", extent=ext)
        if np.isfinite(theta[i]):
            tt = np.arange(t, dtype=float)
            yy = np.tan(np.deg2rad(theta[i])) * tt
            ax.plot(tt * step, yy * gsd_m * u.length, "r-", lw=1.2, label="fitted streak")
            ax.set_ylim(ext[2], 0.0)
            ax.set_xlim(0.0, ext[1])
        v = speed[i] * u.velocity
        k = 1 if stride is None or not np.isfinite(stride[i]) else int(stride[i])
        note = f", re-measured at stride {k}" if k > 1 else ""
        flag = flags[i].replace(";", ", ") if flags and flags[i] else "none"
        lines = (f"{label}: node {i}", f"{v:.3f} {u.velocity_label}, score {score[i]:.3g}{note}",
                 f"flags: {flag}")  # fmt: skip
        # long lines (a stride note, several flags) wrapped to the panel's width
        text = "\n".join(textwrap.fill(x, STI_TITLE_CHARS) for x in lines)
        ax.set_title(text, fontsize=9, y=TITLE_Y)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"distance along search line ({u.length_label})")
    layout.row(fig, list(axes), fig.canvas.get_renderer())
    return _save(fig, path)


def pick_sti_nodes(score: np.ndarray, speed: np.ndarray) -> list[tuple[str, int]]:
    """The best, median and worst-scoring nodes with a valid speed (fewer if fewer exist)."""
    ok = np.flatnonzero(np.isfinite(score) & np.isfinite(speed))
    if ok.size == 0:
        return []
    order = ok[np.argsort(score[ok], kind="stable")[::-1]]
    picks = [("best", int(order[0])), ("median", int(order[len(order) // 2])),
             ("worst", int(order[-1]))]  # fmt: skip
    seen: set[int] = set()
    return [(lab, i) for lab, i in picks if not (i in seen or seen.add(i))]


def section_profile(
    path: Path,
    stations: np.ndarray,
    depths: np.ndarray,
    velocity: np.ndarray,
    units_label: str = "m",
    factor: float = 1.0,
    v_label: str = "m/s",
    v_factor: float = 1.0,
    filled: np.ndarray | None = None,
    title: str = "cross-section",
    rejected: np.ndarray | None = None,
) -> Path:
    """Depths (bed below the water surface) and normal surface velocity across the section.

    ``filled`` velocities (flagged or missing, interpolated) are drawn as open markers, and
    beside them, crossed, the ``rejected`` value a flagged node measured (NaN where none).
    The legend sits above the plot, clear of the axes and their labels.
    """
    fig = _figure(8, 4.2)
    ax = fig.subplots()
    s = stations * factor
    ax.fill_between(s, -depths * factor, 0, color="#9cc3e6", label="water")
    ax.plot(s, -depths * factor, "k-", lw=1.2, label="bed")
    ax.set_xlabel(f"station ({units_label})")
    ax.set_ylabel(f"depth below WSE ({units_label})")
    ax2 = ax.twinx()
    ax2.plot(s, velocity * v_factor, "-", color="crimson", lw=1, label="normal surface velocity")
    filled = np.zeros(len(s), bool) if filled is None else np.asarray(filled, bool)
    ax2.plot(s[~filled], velocity[~filled] * v_factor, "o", color="crimson", ms=3, label="measured")
    if filled.any():
        ax2.plot(
            s[filled],
            velocity[filled] * v_factor,
            "o",
            mfc="none",
            color="crimson",
            ms=5,
            label="filled (flagged or missing)",
        )
    if rejected is not None and np.isfinite(rejected).any():
        ok = np.isfinite(rejected)
        ax2.plot(s[ok], np.asarray(rejected)[ok] * v_factor, "x", color="crimson", ms=6,
                 label="measured, rejected by a flag")  # fmt: skip
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_ylabel(f"normal surface velocity ({v_label})", color="crimson")
    handles = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    legend = ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower center",
                       bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=8, frameon=False)  # fmt: skip
    r = fig.canvas.get_renderer()
    box = legend.get_window_extent(r)
    ax.set_title(title, pad=TITLE_PAD, y=TITLE_Y)
    sink = ax.title.get_transform().transform(ax.title.get_position())[1]  # its anchor, and
    sink -= ax.title.get_window_extent(r).y0  # how far below it the title's lines reach
    pad = max(TITLE_PAD, (box.height + sink) * 72 / fig.dpi + 4)  # clear of the legend's rows
    ax.set_title(title, pad=pad, y=TITLE_Y)
    layout.row(fig, [ax], r, right=layout.axis_room(fig, ax2.yaxis, r), title_pad=pad,
               centred=box.width / fig.dpi)  # fmt: skip
    return _save(fig, path)
