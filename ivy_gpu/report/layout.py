"""Margins of the per-video figures, computed from their texts instead of ``tight_layout``.

``Figure.tight_layout`` measures every axis by laying its ticks out (locator, formatter, one
``Tick`` artist each, their text boxes), and the draw that follows lays them out again: it
was a quarter of the drawing time of a video's figures. The figures of
:mod:`ivy_gpu.report.figures` are a row of plain axes, so their margins follow from a few
measures, taken here without laying ticks out: the tick labels' strings (the axis' own
locator and formatter, the strings the draw will show), their extents in the tick font, and
the extents of the titles, axis labels and legends. Nothing is clipped by the figure's edge
and neighbouring panels keep apart (``tests/report/test_figure_layout.py`` checks that on
the drawn figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure

#: Space kept clear around the figure's content and between panels, in font sizes (as
#: ``tight_layout``'s ``pad``).
PAD_FONTS = 1.08


def _points(points: float) -> float:
    """``points`` in inches (the figure's units)."""
    return float(points) / 72.0


def pad_inches() -> float:
    """:data:`PAD_FONTS` font sizes, in inches."""
    import matplotlib as mpl

    return PAD_FONTS * _points(mpl.rcParams["font.size"])


def _size(fig: Figure, artist, renderer: RendererBase) -> tuple[float, float]:
    """Width and height of an artist's box, inches (0 for a hidden or empty one)."""
    if artist is None or not artist.get_visible():
        return 0.0, 0.0
    if hasattr(artist, "get_text") and not artist.get_text():
        return 0.0, 0.0
    box = artist.get_window_extent(renderer)
    return box.width / fig.dpi, box.height / fig.dpi


def tick_labels(axis: Axis) -> tuple[list[float], list[str]]:
    """The major ticks inside the view and the strings the draw will show for them."""
    lo, hi = sorted(axis.get_view_interval())
    locs = np.asarray(axis.get_major_locator()(), float)
    eps = 1e-10 * max(abs(lo), abs(hi), 1.0)
    locs = locs[(locs >= lo - eps) & (locs <= hi + eps)]
    return [float(v) for v in locs], list(axis.get_major_formatter().format_ticks(locs))


def _label_extents(
    fig: Figure, axis: Axis, renderer: RendererBase
) -> tuple[list[float], list[tuple[float, float]]]:
    """The ticks of :func:`tick_labels`, and each label's (width, height) in inches."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    which = axis.axis_name  # "x" or "y"
    prop = FontProperties(size=mpl.rcParams[f"{which}tick.labelsize"])
    locs, texts = tick_labels(axis)
    out = []
    for text in texts:
        ismath = text.count("$") >= 2 and not mpl.rcParams["text.usetex"]
        w, h, _ = renderer.get_text_width_height_descent(text, prop, ismath=ismath)
        out.append((w / fig.dpi, h / fig.dpi))
    return locs, out


def axis_room(fig: Figure, axis: Axis, renderer: RendererBase) -> float:
    """Inches an axis needs outside its spine: ticks, their labels, the axis label."""
    import matplotlib as mpl

    if not (axis.get_visible() and axis.axes.axison):
        return 0.0
    which = axis.axis_name
    ticks = _points(mpl.rcParams[f"{which}tick.major.size"])
    ticks += _points(mpl.rcParams[f"{which}tick.major.pad"])
    _, labels = _label_extents(fig, axis, renderer)
    # a y axis's labels stand side by side with it, an x axis's below it
    widest = max((w if which == "y" else h for w, h in labels), default=0.0)
    w, h = _size(fig, axis.label, renderer)
    label = (w if which == "y" else h) + _points(axis.labelpad) if w or h else 0.0
    room = ticks + widest + label
    if axis.get_major_formatter().get_offset():  # "1e3" and the like: a line more
        room += _points(mpl.rcParams["font.size"])
    return room


def end_overhang(fig: Figure, axis: Axis, renderer: RendererBase) -> tuple[float, float]:
    """How far (inches) an x axis's first and last tick labels reach past the axes' ends."""
    if not (axis.get_visible() and axis.axes.axison):
        return 0.0, 0.0
    locs, extents = _label_extents(fig, axis, renderer)
    if not locs:
        return 0.0, 0.0
    lo, hi = axis.get_view_interval()
    span = hi - lo if hi != lo else 1.0
    width = axis.axes.get_position().width * fig.get_figwidth()

    def reach(k: int, edge: float) -> float:
        inside = abs(locs[k] - edge) / abs(span) * width
        return max(0.0, extents[k][0] / 2 - inside)

    return reach(0, lo), reach(-1, hi)


def title_room(fig: Figure, ax: Axes, renderer: RendererBase, pad: float | None = None) -> float:
    """Inches above the axes that its title takes, with its ``pad`` (points; rcParams')."""
    import matplotlib as mpl

    _, h = _size(fig, ax.title, renderer)
    pad = mpl.rcParams["axes.titlepad"] if pad is None else pad
    return h + _points(pad) if h else 0.0


def title_width(fig: Figure, ax: Axes, renderer: RendererBase) -> float:
    """Width of the axes' title, inches."""
    return _size(fig, ax.title, renderer)[0]


def row(
    fig: Figure,
    axes: list[Axes],
    renderer: RendererBase,
    *,
    right: float = 0.0,
    bottom: float = 0.0,
    title_pad: float | None = None,
    centred: float = 0.0,
) -> None:
    """Place a row of equal panels: room for their axes, titles and the extra inches given.

    ``right`` and ``bottom`` are inches the caller's own artists need at those edges (a
    twin's y axis, a figure legend); the panels' own ticks, axis labels and titles
    (set ``title_pad`` points above the axes, as given to ``set_title``) are measured here.
    Titles wider than their panel push the panels apart, as does ``centred``: the width
    (inches) of an artist centred on each panel (a legend).
    """
    fw, fh = fig.get_size_inches()
    pad = pad_inches()
    k = len(axes)
    below = max(axis_room(fig, ax.xaxis, renderer) for ax in axes)
    above = max(title_room(fig, ax, renderer, title_pad) for ax in axes)
    titles = [max(title_width(fig, ax, renderer), centred) for ax in axes]
    first_out, last_out = end_overhang(fig, axes[0].xaxis, renderer)
    left_room = max(first_out, *(axis_room(fig, ax.yaxis, renderer) for ax in axes))
    right_room = max(right, last_out)
    left, width, gap = _row_widths(fw, pad, k, left_room, right_room, titles)
    fig.subplots_adjust(
        left=left / fw,
        right=(left + k * width + (k - 1) * gap) / fw,
        bottom=(pad + below + bottom) / fh,
        top=1 - (pad + above) / fh,
        wspace=gap / width if k > 1 else 0.0,
    )


def _row_widths(
    fw: float, pad: float, k: int, left_room: float, right_room: float, titles: list[float]
) -> tuple[float, float, float]:
    """``(left margin, panel width, gap)`` in inches: the widest panels the constraints allow.

    The constraints: the axes' rooms (left of each panel, right of each panel, ``pad`` between),
    and each centred title (``titles``: widths) clear of its neighbours by ``pad`` and inside
    the figure by ``pad``. The row's total width grows with the panel width, so the widest
    panel that fits is found by bisection; what is left over (titles alone setting the width)
    is shared by both margins (the right one is what the row leaves).
    """
    pitch_titles = max([(titles[i] + titles[i + 1]) / 2 + pad for i in range(k - 1)], default=0.0)

    def layout(width: float) -> tuple[float, float, float, float]:
        pitch = max(width + left_room + right_room + pad, pitch_titles)
        left = max(pad + left_room, pad + (titles[0] - width) / 2)
        right = max(pad + right_room, pad + (titles[-1] - width) / 2)
        return left, width, pitch - width, right

    def total(width: float) -> float:
        left, width, gap, right = layout(width)
        return left + k * width + (k - 1) * gap + right

    lo, hi = 0.05 * fw / k, fw
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) <= fw else (lo, mid)
    left, width, gap, _ = layout(lo)
    return left + max(0.0, fw - total(lo)) / 2, width, gap
