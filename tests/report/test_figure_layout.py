"""The per-video figures' computed margins (ivy_gpu.report.layout), checked on drawn figures.

Each figure is drawn for awkward inputs (English units, long titles and flags, a two-row
legend, stations in the thousands, a tall and a wide frame) and every text must lie inside
the canvas, clear of the other panels, and the section's title clear of its legend.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.text import Text

from ivy_gpu.report import figures, layout
from ivy_gpu.units import ENGLISH, METRIC


@pytest.fixture
def drawn(monkeypatch):
    """Figures the drawing functions would save, drawn on their canvas instead."""
    kept = []

    def keep(fig, path):
        r = fig.canvas.get_renderer()
        shown = []
        real = r.draw_text

        def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
            shown.append(mtext)
            return real(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

        r.draw_text = record  # the texts the draw renders (not ticks left outside the view)
        try:
            fig.canvas.draw()
        finally:
            del r.draw_text
        fig.shown_texts = [t for t in shown if t is not None and t.get_text().strip()]
        kept.append(fig)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def _texts(fig):
    r = fig.canvas.get_renderer()
    assert fig.shown_texts
    for t in fig.shown_texts:
        yield t, t.get_window_extent(r)


def _owner(t: Text, fig):
    for ax in fig.axes:
        if t in ax.findobj(Text):
            return ax
    return None


def check(fig) -> None:
    """Every text inside the canvas; no text of one panel over another panel's box."""
    canvas = fig.bbox
    for t, box in _texts(fig):
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1, (t.get_text(), box, canvas)
        assert box.y0 >= canvas.y0 - 1 and box.y1 <= canvas.y1 + 1, (t.get_text(), box, canvas)
        mine = _owner(t, fig)
        for ax in fig.axes:
            if mine is None or ax is mine or ax.bbox.bounds == mine.bbox.bounds:  # twins
                continue
            assert not box.overlaps(ax.bbox), (t.get_text(), box, ax.bbox)


def _sti_inputs(n=6, p=40, t=300):
    rng = np.random.default_rng(3)
    stis = rng.integers(0, 255, (n, p, t)).astype(np.uint8)
    theta = np.linspace(20.0, 70.0, n)
    speed = np.linspace(0.05, 2.5, n)
    score = np.linspace(0.2, 0.95, n)
    return stis, theta, speed, score


@pytest.mark.parametrize("units", [METRIC, ENGLISH])
@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("gsd", [0.004, 0.5])
def test_sti_panels_fit(drawn, tmp_path, units, count, gsd):
    stis, theta, speed, score = _sti_inputs()
    picks = [("best", 0), ("median", 3), ("worst", 5)][:count]
    flags = ["fan_edge;upstream;stride_limited;low_score"] * 6
    stride = np.array([1, 1, 1, 4, 1, 8], float)
    figures.sti_panels(tmp_path / "s.png", stis, picks, theta, speed, score, gsd, 1 / 30,
                       stride, units, flags)  # fmt: skip
    (fig,) = drawn
    check(fig)
    titles = [ax.title.get_window_extent() for ax in fig.axes]
    for a, b in zip(titles, titles[1:], strict=False):  # long titles side by side, apart
        assert a.x1 <= b.x0 + 1


@pytest.mark.parametrize("units", [METRIC, ENGLISH])
@pytest.mark.parametrize("first_station", [0.0, 1000.0, -25.0])
def test_section_profile_fits_and_title_clears_legend(drawn, tmp_path, units, first_station):
    s = first_station + np.linspace(0.0, 42.0, 27)
    depth = 3.0 * np.sin(np.linspace(0, np.pi, 27))
    v = np.linspace(-0.4, 2.2, 27)
    filled = np.zeros(27, bool)
    filled[[0, 5, 26]] = True
    rejected = np.full(27, np.nan)
    rejected[5] = -1.3
    figures.section_profile(
        tmp_path / "p.png", s, depth, v, units.length_label, units.length, units.velocity_label,
        units.velocity, filled=filled, rejected=rejected,
        title="a rather long video name_2026-12-08T10-15-00Z.mp4: Q = 123.4 ± 5.6 ft³/s (U95, "
        "fair)\ncross-section at WSE 1182.200 m",
    )  # fmt: skip
    (fig,) = drawn
    check(fig)
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    title = ax.title.get_window_extent()
    assert legend.y1 <= title.y0 + 0.5, (legend, title)
    assert legend.y0 >= ax.bbox.y1 - 1


@pytest.mark.parametrize("shape", [(1080, 1920), (1900, 600), (300, 2400)])
def test_rectified_vectors_fit(drawn, tmp_path, shape):
    h, w = shape
    frame = np.random.default_rng(1).integers(0, 255, shape).astype(np.uint8)
    nodes = np.column_stack([np.linspace(0.1 * w, 0.9 * w, 9), np.full(9, h / 2)])
    line = nodes[[0, -1]]
    mag = np.linspace(0.1, 1.5, 9)
    mag[2] = np.nan
    excluded = np.zeros(9, bool)
    excluded[4] = True
    figures.rectified_vectors(
        tmp_path / "v.png", frame, nodes, line, mag, np.full(9, 90.0),
        "clip_0001.mp4: Q = 1.96 ± 0.17 m³/s (U95, fair)", excluded=excluded,
        noted=np.eye(9, dtype=bool)[6], gsd_m=0.01, limited=np.eye(9, dtype=bool)[7],
    )  # fmt: skip
    (fig,) = drawn
    check(fig)
    ax = fig.axes[0]
    assert ax.bbox.y0 >= 0.06 * fig.bbox.height - 1  # the figure legend's strip stays clear


def test_check_fails_on_overlapping_panels(drawn, tmp_path, monkeypatch):
    """Without the computed margins (matplotlib's defaults) the panels' labels collide."""
    monkeypatch.setattr(layout, "row", lambda *a, **k: None)
    stis, theta, speed, score = _sti_inputs()
    figures.sti_panels(tmp_path / "s.png", stis, [("best", 0), ("median", 3), ("worst", 5)],
                       theta, speed, score, 0.004, 1 / 30, None, METRIC, None)  # fmt: skip
    with pytest.raises(AssertionError):
        check(drawn[0])


def test_tick_labels_are_the_drawn_ones(drawn, tmp_path):
    """The strings measured for the margins are those the draw shows."""
    stis, theta, speed, score = _sti_inputs()
    figures.sti_panels(tmp_path / "s.png", stis, [("best", 0)], theta, speed, score, 0.01,
                       1 / 30, None, ENGLISH, None)  # fmt: skip
    fig = drawn[0]
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        _, strings = layout.tick_labels(axis)
        labels = {id(tick.label1) for tick in axis.get_major_ticks()}
        shown = [t.get_text() for t in fig.shown_texts if id(t) in labels]
        assert len(shown) >= 3
        assert strings == shown
