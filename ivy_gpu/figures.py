"""PNG figures of a measurement (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ivy_gpu.fileio import atomic_output  # noqa: E402


def _save(fig, path: Path) -> Path:
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
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
) -> Path:
    """Rectified frame with the section line, nodes and surface velocity vectors."""
    fig, ax = plt.subplots(figsize=(8, 8 * rectified.shape[0] / rectified.shape[1] + 0.6))
    _show(ax, rectified)
    ax.plot(line[:, 0], line[:, 1], "-", color="orange", lw=1.5, label="cross-section")
    a = np.deg2rad(90.0 - np.asarray(direction_geo))
    ok = np.isfinite(magnitude)
    scale = 0.15 * rectified.shape[1] / max(np.nanmax(magnitude), 1e-6) if ok.any() else 1.0
    ax.quiver(
        nodes[ok, 0],
        nodes[ok, 1],
        magnitude[ok] * np.cos(a[ok]) * scale,
        -magnitude[ok] * np.sin(a[ok]) * scale,
        color="cyan",
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.003,
    )
    ax.plot(nodes[~ok, 0], nodes[~ok, 1], "rx", label="no velocity")
    ax.plot(nodes[ok, 0], nodes[ok, 1], ".", color="cyan", ms=3, label="nodes")
    ax.set_title(title or "rectified frame, surface velocity")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_axis_off()
    return _save(fig, path)


def best_stis(path: Path, stis: np.ndarray, node_ids: list[int], theta: np.ndarray) -> Path:
    """The best space-time image of a few nodes, with the detected streak direction."""
    k = len(node_ids)
    fig, axes = plt.subplots(1, k, figsize=(3 * k, 3.2), squeeze=False)
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
) -> Path:
    """Depths (bed below the water surface) and normal surface velocity across the section."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    s = stations * factor
    ax.fill_between(s, -depths * factor, 0, color="#9cc3e6", label="water")
    ax.plot(s, -depths * factor, "k-", lw=1.2, label="bed")
    ax.set_xlabel(f"station ({units_label})")
    ax.set_ylabel(f"depth below WSE ({units_label})")
    ax2 = ax.twinx()
    ax2.plot(s, velocity * v_factor, "o-", color="crimson", ms=3, label="normal surface velocity")
    ax2.set_ylabel(f"velocity ({v_label})", color="crimson")
    ax.set_title("cross-section")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    return _save(fig, path)


def site_overview(
    path: Path,
    camera_frame: np.ndarray,
    rectified: np.ndarray,
    nodes: np.ndarray,
    line: np.ndarray,
    gcp_pixels: np.ndarray,
    stations: np.ndarray,
    bed: np.ndarray,
    wse: float,
) -> Path:
    """Camera view with GCPs, plan view with section and nodes, and the surveyed section."""
    fig = plt.figure(figsize=(13, 8))
    ax1 = fig.add_subplot(2, 2, 1)
    _show(ax1, camera_frame)
    ax1.plot(gcp_pixels[:, 0], gcp_pixels[:, 1], "y+", ms=10, mew=2, label="GCPs")
    ax1.set_title("camera view")
    ax1.legend(fontsize=8)
    ax1.set_axis_off()
    ax2 = fig.add_subplot(2, 2, 2)
    _show(ax2, rectified)
    ax2.plot(line[:, 0], line[:, 1], "-", color="orange", lw=1.5, label="cross-section line")
    ax2.plot(nodes[:, 0], nodes[:, 1], "c.", ms=5, label="STIV nodes")
    ax2.set_title("plan view at the water surface (north up)")
    ax2.legend(fontsize=8)
    ax2.set_axis_off()
    ax3 = fig.add_subplot(2, 1, 2)
    ax3.plot(stations, bed, "k-", label="surveyed bed")
    ax3.axhline(wse, color="tab:blue", label=f"WSE {wse:.2f} m")
    ax3.fill_between(stations, bed, wse, where=bed < wse, color="#9cc3e6")
    ax3.set_xlabel("station from left bank (m)")
    ax3.set_ylabel("elevation (m)")
    ax3.legend(fontsize=8)
    ax3.set_title("cross-section survey")
    return _save(fig, path)
