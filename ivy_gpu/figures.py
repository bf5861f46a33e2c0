"""PNG figures of a measurement (matplotlib, written atomically).

Figures are drawn on their own Agg canvas (``matplotlib.figure.Figure``), never through
``pyplot``: importing this module does not change the user's matplotlib backend (a
notebook keeps its own), and no figure is left open in pyplot's registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ivy_gpu.fileio import atomic_output


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
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
) -> Path:
    """Rectified frame with the section line, nodes and surface velocity vectors.

    ``excluded`` vectors (flagged, left out of the discharge) are drawn red, ``noted`` ones
    (flagged but kept: fan edge, upstream) orange, the others cyan.
    """
    fig = _figure(8, 8 * rectified.shape[0] / rectified.shape[1] + 0.6)
    ax = fig.subplots()
    _show(ax, rectified)
    ax.plot(line[:, 0], line[:, 1], "-", color="yellow", lw=1.5, label="cross-section")
    a = np.deg2rad(90.0 - np.asarray(direction_geo))
    ok = np.isfinite(magnitude)
    n = len(nodes)
    excluded = np.zeros(n, bool) if excluded is None else np.asarray(excluded, bool)
    noted = np.zeros(n, bool) if noted is None else np.asarray(noted, bool)
    scale = 0.15 * rectified.shape[1] / max(np.nanmax(magnitude), 1e-6) if ok.any() else 1.0
    for sel, colour, label in (
        (ok & ~excluded & ~noted, "cyan", "measured"),
        (ok & noted & ~excluded, "orange", "flagged, kept (fan edge / upstream)"),
        (ok & excluded, "red", "flagged, left out and filled"),
    ):
        if sel.any():
            ax.quiver(
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
    ax.plot(nodes[~ok, 0], nodes[~ok, 1], "rx", label="no velocity")
    ax.set_title(title or "rectified frame, surface velocity")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_axis_off()
    return _save(fig, path)


def best_stis(path: Path, stis: np.ndarray, node_ids: list[int], theta: np.ndarray) -> Path:
    """The best space-time image of a few nodes, with the detected streak direction."""
    k = len(node_ids)
    fig = _figure(3 * k, 3.2)
    axes = fig.subplots(1, k, squeeze=False)
    for ax, i in zip(axes[0], node_ids, strict=True):
        img = stis[i]
        ax.imshow(img, cmap="gray", aspect="auto", interpolation="nearest")
        if np.isfinite(theta[i]):
            t = np.arange(img.shape[1])
            ax.plot(t, np.tan(np.deg2rad(theta[i])) * (t - t[0]) + 0, "r-", lw=1)
            ax.set_ylim(img.shape[0] - 0.5, -0.5)
        ax.set_title(f"node {i}: theta {theta[i]:.1f} deg", fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("pixel along search line")
    return _save(fig, path)


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
) -> Path:
    """Depths (bed below the water surface) and normal surface velocity across the section.

    ``filled`` velocities (flagged or missing, interpolated) are drawn as open markers.
    """
    fig = _figure(8, 3.8)
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
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_ylabel(f"velocity ({v_label})", color="crimson")
    ax.set_title("cross-section")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    return _save(fig, path)
