"""Experiment: search lines sampled straight from the decoded frames, against the rectified stack.

Today every frame is rectified (the band STIV reads) into a stack, and the search lines
are sampled from the stack: two interpolations (the remap, then the line's bilinear taps).
The alternative maps each line sample to raw frame pixels once per WSE (through the remap
tables) and gathers those pixels from every decoded frame as it streams: one
interpolation, no rectified stack. This script measures both on generated sites with a
known surface velocity (:mod:`ivy_gpu.synthetic.sites`), with a still camera and no blur
(raw sampling cannot follow a per-frame stabilization correction without per-frame taps),
and writes a table: node speed error against the truth, and the time to read the clip into
what STIV scores.

Run: ``python -m ivy_gpu.benchmarks.raw_lines [--out DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.engines import backends
from ivy_gpu.engines.base import Taps
from ivy_gpu.frames.stack import load_stack, rectifier_for, stiv_band
from ivy_gpu.frames.video import FrameReader
from ivy_gpu.hydraulics.grid import node_stations
from ivy_gpu.kernels.sti import PackedStack, bilinear_taps, cell_index, read_cells
from ivy_gpu.params import StivParams, stiv_params_for
from ivy_gpu.results import VideoConfig
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig, load_scaffold
from ivy_gpu.site.figure import plan_to_frame
from ivy_gpu.stiv.driver import METHOD_OBJECTS, reduce_nodes, run_stiv, score_pairs
from ivy_gpu.stiv.lines import SearchLines, line_geometry, sample_window
from ivy_gpu.synthetic.sites import Site, SiteSpec, make_site


@dataclass
class RawLines:
    """Every usable search line's samples in raw frame pixels, as a packed gather."""

    lines: SearchLines  # in full plan-view pixels
    taps: Taps  # in raw pixels, relative to ``window``
    window: tuple[int, int, int, int]
    cells: np.ndarray


def raw_lines(scaffold: ScaffoldConfig, wse: float, params: StivParams) -> RawLines:
    """Map the search lines of (scaffold, WSE) to raw pixels once (bilinear on the tables)."""
    rect = rectifier_for(scaffold, wse)
    nodes, _ = stiv_band(scaffold, rect, params)
    rows, cols = rect.output_shape
    lines = line_geometry(nodes, params, cols, rows)
    p = params.num_pixels
    sx = lines.sx.reshape(-1, p)[lines.pairs]
    sy = lines.sy.reshape(-1, p)[lines.pairs]
    raw = plan_to_frame(rect, sx, sy)
    rx, ry = raw[:, 0].reshape(sx.shape), raw[:, 1].reshape(sx.shape)
    window = sample_window(rx, ry, 0.0, *rect.frame_size)
    y_lo, y_hi, x_lo, x_hi = window
    w, h = x_hi - x_lo + 1, y_hi - y_lo + 1
    taps = bilinear_taps(rx - x_lo, ry - y_lo, w, h, params.interpolation)
    return RawLines(lines, taps, window, read_cells(h, w, taps[0], taps[1]))


def read_raw(video: Path, rl: RawLines) -> tuple[PackedStack, int]:
    """Stream the clip and keep only the raw pixels the lines read, time-last."""
    y_lo, y_hi, x_lo, x_hi = rl.window
    h, w = y_hi - y_lo + 1, x_hi - x_lo + 1
    cy, cx = np.divmod(rl.cells, w)
    cy, cx = cy + y_lo, cx + x_lo
    cols = [luma[cy, cx] for _, _, luma in FrameReader(video)]
    rows = np.ascontiguousarray(np.stack(cols, axis=1))
    return PackedStack(rows, cell_index(rl.cells, h, w)), len(cols)


def true_speeds(
    spec: SiteSpec, scaffold: ScaffoldConfig, nodes: np.ndarray, wse: float, gsd: float
) -> np.ndarray:
    """The site's true surface speed (m/s) at the nodes (full plan-view pixels)."""
    stations = node_stations(
        nodes, scaffold.cross_section_line, scaffold.cross_section, wse, gsd, scaffold.start_bank
    ).stations
    return Site(spec).surface_speed(stations)


def compare(
    scaffold: ScaffoldConfig, video: Path, wse: float, engine, repeats: int = 2
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, float]:
    """Both ways on one clip (best of ``repeats`` timings, stride off, no stabilization).

    Returns the timings and sizes, the node speeds from the stack and from raw frames,
    the nodes (full plan-view pixels) and the plan pixel size.
    """
    params = stiv_params_for(scaffold, {"stride": False})
    method = METHOD_OBJECTS[params.method]
    out: dict = {}
    best = dict.fromkeys(("read_stack_s", "stiv_stack_s", "read_raw_s", "stiv_raw_s"), np.inf)
    for _ in range(repeats):
        t0 = time.perf_counter()
        loaded = load_stack(scaffold, VideoConfig(video, wse), engine, params=params)
        t1 = time.perf_counter()
        ox, oy = loaded.offset
        x, y = loaded.nodes[:, 0] - ox, loaded.nodes[:, 1] - oy
        gsd, dt = loaded.rectifier.pixel_gsd, loaded.dt
        a = run_stiv(loaded.stack, x, y, params, pixel_gsd=gsd, d_t=dt, backend=engine)
        t2 = time.perf_counter()
        n_frames, out["stack_mb"] = loaded.stack.shape[0], loaded.stack.nbytes / 1e6
        nodes = loaded.nodes
        del loaded
        rl = raw_lines(scaffold, wse, params)
        packed, t = read_raw(video, rl)
        t3 = time.perf_counter()
        assert t == n_frames
        plan = method.plan(params.num_pixels, t, params)
        score, aux = score_pairs(engine, method, packed, rl.lines, rl.taps, plan, t)
        b, _, _ = reduce_nodes(method, score, aux, rl.lines, params, plan, gsd, dt)
        t4 = time.perf_counter()
        out["raw_mb"] = packed.rows.nbytes / 1e6
        for k, v in zip(best, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            best[k] = min(best[k], v)
    out.update(best)
    return out, np.asarray(a.magnitude, float), np.asarray(b["magnitude"], float), nodes, gsd


def measure(spec: SiteSpec, work: Path, backend: str = "numba") -> dict:
    """Node speed errors against the truth and read times, both ways, for one site."""
    truth = make_site(work, spec)
    scaffold = load_scaffold(work / "site.ivy")
    wse = truth["wse_m"]
    engine = backends.get_engine(backend)
    out, a, b, nodes, gsd = compare(scaffold, work / truth["video"], wse, engine)
    out["site"] = (
        f"{spec.width_px}x{spec.height_px}, u_max {spec.u_max} m/s, "
        f"camera {spec.camera_height_m} m up, P {scaffold.stiv.num_pixels}"
    )
    true = true_speeds(spec, scaffold, nodes, wse, gsd)
    wet = true > 0.2 * spec.u_max  # away from the banks' zero-speed edge
    for name, r in (("stack", a), ("raw", b)):
        err = (r[wet] - true[wet]) / true[wet]
        out[f"{name}_rms_pct"] = 100 * float(np.sqrt(np.nanmean(err**2)))
        out[f"{name}_bias_pct"] = 100 * float(np.nanmean(err))
    out["nodes"] = int(wet.sum())
    out["max_diff_pct"] = 100 * float(np.nanmax(np.abs(a - b)[wet] / true[wet]))
    return out


#: Sites measured: the pipeline benchmark's 1080p clip, the tests' oblique 720p site, a slow
#: river and a steep far view (lower camera: plan pixels far from the camera are upsampled).
SITES = (
    SiteSpec(width_px=1920, height_px=1080, duration_s=10.0, seed=5),
    SiteSpec(width_px=1280, height_px=720, duration_s=6.0, flow_angle_deg=8.0, seed=12),
    SiteSpec(width_px=1280, height_px=720, duration_s=10.0, u_max=0.3, seed=13),
    SiteSpec(width_px=1280, height_px=720, duration_s=6.0, camera_height_m=2.5, seed=14),
)

COLUMNS = (
    ("site", "site"),
    ("nodes", "nodes"),
    ("stack_rms_pct", "stack: speed RMS %"),
    ("stack_bias_pct", "stack: bias %"),
    ("raw_rms_pct", "raw: speed RMS %"),
    ("raw_bias_pct", "raw: bias %"),
    ("max_diff_pct", "max |stack - raw| %"),
    ("read_stack_s", "read + rectify s"),
    ("read_raw_s", "read + gather s"),
    ("stiv_stack_s", "STIV on stack s"),
    ("stiv_raw_s", "STIV on raw s"),
    ("stack_mb", "stack MB"),
    ("raw_mb", "raw rows MB"),
)


def table(rows: list[dict]) -> str:
    """Markdown table of :func:`measure` rows."""
    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)

    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    body = ["| " + " | ".join(cell(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def ngwerere(folder: Path, backend: str = "numba") -> str:
    """Both ways on the real Ngwerere clip (no truth: how far the node speeds differ)."""
    scaffold = load_scaffold(folder / "ngwerere_site.ivy")
    engine = backends.get_engine(backend)
    out, a, b, _, _ = compare(scaffold, folder / "ngwerere_20191103.mp4", 1182.2, engine)
    both = np.isfinite(a) & np.isfinite(b)
    d = np.abs(a - b)[both]
    return (
        f"Ngwerere (P {scaffold.stiv.num_pixels}, stabilization off both ways): {both.sum()} nodes "
        f"valid both ways ({np.isfinite(a).sum()} stack, {np.isfinite(b).sum()} raw); "
        f"|stack - raw| median {np.median(d):.4f} m/s, max {d.max():.4f} m/s; mean speed "
        f"{np.nanmean(a):.4f} vs {np.nanmean(b):.4f} m/s; "
        f"read + rectify {out['read_stack_s']:.2f} s vs read + gather {out['read_raw_s']:.2f} s; "
        f"STIV {out['stiv_stack_s']:.2f} vs "
        f"{out['stiv_raw_s']:.2f} s; stack {out['stack_mb']:.0f} MB vs rows {out['raw_mb']:.0f} MB"
    )


def main() -> None:  # pragma: no cover - a measurement script
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--ngwerere", type=Path, default=None, help="also compare on this fixture")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ivy_raw_"))
    rows = []
    for i, spec in enumerate(SITES):
        rows.append(measure(spec, work / f"site{i}", args.backend))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    if args.ngwerere is not None:
        text += "\n\n" + ngwerere(args.ngwerere, args.backend)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
