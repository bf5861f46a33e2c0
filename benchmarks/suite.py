"""Benchmark suite: times each backend and stage on generated workloads and writes a table.

Run with ``ivy-gpu bench`` (or ``python -m ivy_gpu.benchmarks.suite``). Timings
are wall-clock medians of repeated runs after a warm-up (JIT compilation and FFT
planning excluded); GPU timings synchronize the device before reading the clock.
Peak memory is the largest NumPy/SciPy allocation total during the call
(``tracemalloc``), not counting the input stack, or CuPy's memory-pool peak.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ivy_gpu.benchmarks.common import device_name, gpu_backends, usable
from ivy_gpu.engines import backends
from ivy_gpu.engines.base import Engine
from ivy_gpu.stiv.driver import stiv_exhaustive
from ivy_gpu.synthetic.scenes import advected_texture


@dataclass
class Row:
    """One benchmark measurement."""

    case: str
    backend: str
    frames: int
    height: int
    width: int
    nodes: int
    angles: int
    num_pixels: int
    seconds: float
    us_per_pair: float
    stis_per_s: float
    peak_mb: float


def streaming_stack(frames: int, height: int, width: int, speed_px: int = 2, seed: int = 0):
    """A cheap large stack: a smoothed noise band shifted ``speed_px`` columns per frame."""
    import scipy.ndimage

    rng = np.random.default_rng(seed)
    band = rng.standard_normal((height, width + speed_px * frames)).astype(np.float32)
    band = scipy.ndimage.gaussian_filter(band, 1.5)
    band = np.clip(128 + 40 * band / band.std(), 0, 255).astype(np.uint8)
    stack = np.empty((frames, height, width), dtype=np.uint8)
    for t in range(frames):
        stack[t] = band[:, speed_px * t : speed_px * t + width]
    return stack


def node_layout(layout: str, height: int, width: int, p: int, seed: int = 0) -> np.ndarray:
    """Node positions (x, y) of a benchmark layout on a ``height x width`` frame.

    ``grid``: 575 nodes (23 x 25) over the whole frame, as a site with several sections;
    ``scattered``: 57 random nodes over the frame; ``row``: 575 nodes along the middle row
    (the original benchmark, the kindest case for one bounding-box crop).
    """
    m = p + 3
    if layout == "grid":
        gx, gy = np.meshgrid(np.linspace(m, width - m, 25), np.linspace(m, height - m, 23))
        return np.column_stack([gx.ravel(), gy.ravel()])
    if layout == "scattered":
        rng = np.random.default_rng(seed)
        return np.column_stack([rng.uniform(m, width - m, 57), rng.uniform(m, height - m, 57)])
    if layout == "row":
        return np.column_stack([np.linspace(m, width - m, 575), np.full(575, height / 2)])
    raise ValueError(f"layout: unknown layout {layout!r}; choose grid, scattered or row")


def _measure(fn: Callable[[], object], engine: Engine, repeats: int) -> tuple[float, float]:
    """Median seconds (device synchronized) and peak working memory in MB."""
    fn()  # warm-up: JIT, FFT plans, device transfer of constants
    engine.synchronize()
    host = engine.xp is np
    pool = None if host else engine.xp.get_default_memory_pool()
    times = []
    peak = 0.0
    for _ in range(repeats):
        if host:
            tracemalloc.start()
        t0 = time.perf_counter()
        fn()
        engine.synchronize()
        times.append(time.perf_counter() - t0)
        if host:
            peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
        else:
            peak = max(peak, pool.total_bytes() / 2**20)
    return float(np.median(times)), peak


def time_stiv(
    case: str,
    backend: str,
    stack: np.ndarray,
    nodes: int | np.ndarray,
    angles: int,
    p: int,
    repeats: int = 2,
    method: str = "acf",
) -> Row:
    """Time one ``stiv_exhaustive`` call; ``nodes`` is a count along the middle row or (n, 2)."""
    engine = backends.get_engine(backend)
    t, h, w = stack.shape
    if np.ndim(nodes) == 0:
        x = np.linspace(p + 2, w - p - 3, int(nodes))
        y = np.full(int(nodes), h / 2)
    else:
        x, y = np.asarray(nodes, float).T
    kw = dict(
        num_pixels=p,
        phi_origin=90.0,
        d_phi=1.0,
        phi_range=(angles - 1) / 2,
        pixel_gsd=0.01,
        d_t=1 / 30,
        backend=backend,
        method=method,
    )
    seconds, peak = _measure(lambda: stiv_exhaustive(stack, x, y, **kw), engine, repeats)
    pairs = x.size * angles
    return Row(
        case,
        backend,
        t,
        h,
        w,
        int(x.size),
        angles,
        p,
        seconds,
        seconds / pairs * 1e6,
        pairs / seconds,
        peak,
    )


def rectify_rows(repeats: int = 20) -> list[dict]:
    """Table build per WSE and per-frame remap of a 1080p frame (CPU, and GPU when usable)."""
    from ivy_gpu.kernels.remap import remap_cv2
    from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
    from ivy_gpu.synthetic.sites import Site, SiteSpec

    site = Site(SiteSpec(width_px=1920, height_px=1080))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    builds = []
    for k in range(6):
        t0 = time.perf_counter()
        rect = Rectifier(params, site.spec.wse_m + 0.01 * k, (1920, 1080))
        builds.append(time.perf_counter() - t0)
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920), dtype=np.uint8)
    rows = [
        dict(stage="tables for a new WSE (first call)", backend="numpy", ms=builds[0] * 1e3),
        dict(
            stage="tables for a new WSE (warm, median)",
            backend="numpy",
            ms=float(np.median(builds[1:])) * 1e3,
        ),
    ]
    for interp in ("bilinear", "nearest"):
        remap_cv2(frame, rect.map_x, rect.map_y, interp)
        t0 = time.perf_counter()
        for _ in range(repeats):
            remap_cv2(frame, rect.map_x, rect.map_y, interp)
        rows.append(
            dict(
                stage=f"rectify 1080p gray frame ({interp})",
                backend="opencv",
                ms=(time.perf_counter() - t0) / repeats * 1e3,
            )
        )
    for name in gpu_backends():
        engine = backends.get_engine(name)
        out = engine.empty(rect.output_shape, np.uint8)
        engine.remap(frame, rect, out)
        engine.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            engine.remap(frame, rect, out)
        engine.synchronize()
        rows.append(
            dict(
                stage="upload + rectify 1080p gray frame into the uint8 stack (linear)",
                backend=name,
                ms=(time.perf_counter() - t0) / repeats * 1e3,
            )
        )
    return rows


def accuracy_table(seed: int = 11) -> list[dict]:
    """Speed and direction errors on synthetic truth: ACF vs gradient, refine off/on."""
    xs = np.array([60.0, 80.0, 100.0, 120.0, 70.0, 110.0])
    ys = np.array([70.0, 90.0, 80.0, 100.0, 110.0, 60.0])
    out = []
    for speed_px, direction in [(0.6, 80.0), (1.1, 90.0), (1.55, 60.0), (2.05, 250.0)]:
        stack = advected_texture(
            (300, 180, 180), speed_px=speed_px, direction_geo=direction, seed=seed
        )
        for method in ("acf", "gradient"):
            for refine in (False, True):
                r = stiv_exhaustive(
                    stack,
                    xs,
                    ys,
                    num_pixels=48,
                    phi_origin=direction + 5,
                    d_phi=1,
                    phi_range=20,
                    pixel_gsd=1.0,
                    d_t=1.0,
                    refine=refine,
                    method=method,
                    backend="numba",
                )
                err = np.abs(r.magnitude / speed_px - 1) * 100
                derr = np.abs((r.direction - direction + 180) % 360 - 180)
                out.append(
                    dict(
                        speed_px=speed_px,
                        direction=direction,
                        method=method,
                        refine=refine,
                        mean_speed_err_pct=float(np.nanmean(err)),
                        max_speed_err_pct=float(np.nanmax(err)),
                        mean_dir_err_deg=float(np.nanmean(derr)),
                    )
                )
    return out


def run_suite(
    quick: bool = False,
    backends_wanted: tuple[str, ...] = ("numpy", "numba", "cupy"),
    out_dir: Path | None = None,
) -> tuple[list[Row], list[dict]]:
    """Run the suite; ``quick`` uses small workloads (for smoke tests)."""
    available = [b for b in backends_wanted if usable(b)]
    rows: list[Row] = []
    if quick:
        stack = streaming_stack(60, 120, 240)
        for b in available:
            rows.append(time_stiv("quick", b, stack, 8, 5, 16, repeats=1))
        _write_json(out_dir, rows, [])
        return rows, []
    big = streaming_stack(300, 1080, 1920)
    for b in available:
        nodes = 40 if b == "numpy" else 575  # the reference is slow: a subset, per pair
        rows.append(time_stiv("1080p-575x31", b, big, nodes, 31, 32))
        if b != "numpy":
            for layout in ("grid", "scattered"):
                xy = node_layout(layout, 1080, 1920, 32)
                rows.append(time_stiv(f"1080p-{layout}-{len(xy)}x31", b, big, xy, 31, 32))
            # long lines, as IVyTools sets P from the line length on fine pixels (the
            # pipeline benchmark's site: 138); the numba engine's pixel-axis FFT path
            xy = node_layout("scattered", 1080, 1920, 138)
            rows.append(time_stiv(f"1080p-scattered-{len(xy)}x31-P138", b, big, xy, 31, 138))
        if b != "numpy":
            rows.append(
                time_stiv("1080p-575x31-gradient", b, big, nodes, 31, 32, method="gradient")
            )
    fast = [b for b in available if b != "numpy"]
    for b in fast:
        for n in (50, 150):
            rows.append(time_stiv(f"nodes-{n}", b, big, n, 31, 32))
        for a in (11, 61):
            rows.append(time_stiv(f"angles-{a}", b, big, 150, a, 32))
        for t in (100, 200):
            rows.append(time_stiv(f"frames-{t}", b, big[:t], 150, 31, 32))
    del big
    acc = accuracy_table()
    _write_json(out_dir, rows, acc)
    return rows, acc


def _write_json(out_dir: Path | None, rows: list[Row], acc: list[dict]) -> None:
    """``stiv_bench.json``: every timed row and the accuracy table (also for ``--quick``)."""
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stiv_bench.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "accuracy": acc}, indent=1)
    )


def environment() -> dict:
    """Device, date and commit for the report."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        commit = "unknown"
    usable, why = backends.gpu_status()
    gpu = device_name() if usable else "none"
    import os

    from ivy_gpu.pipeline.provenance import numba_path

    return dict(
        date=_dt.date.today().isoformat(),
        commit=commit,
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        gpu=gpu,
        gpu_status=why,
        python=platform.python_version(),
        numpy=np.__version__,
        numba_path=numba_path(),
    )


def markdown(rows: list[Row], acc: list[dict], env: dict, rect: list[dict] = ()) -> str:
    """Render the measurements as Markdown tables."""
    lines = [
        f"Measured {env['date']}, commit `{env['commit']}`, CPU {env['cpu']} "
        f"({env['cores']} cores), GPU: {env['gpu']}; numba ACF path: "
        f"{env['numba_path']}.",
        "",
        "| case | backend | frames x rows x cols | nodes x angles | P | time (s) | "
        "us per (node, angle) | STIs/s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.backend} | {r.frames}x{r.height}x{r.width} | "
            f"{r.nodes}x{r.angles} | {r.num_pixels} | {r.seconds:.3f} | "
            f"{r.us_per_pair:.1f} | {r.stis_per_s:,.0f} | {r.peak_mb:.0f} |"
        )
    if rect:
        lines += ["", "| rectification stage | backend | ms |", "|---|---|---|"]
        lines += [f"| {r['stage']} | {r['backend']} | {r['ms']:.2f} |" for r in rect]
    if acc:
        lines += [
            "",
            "| px/frame | direction | method | refine | mean speed err % | "
            "max speed err % | mean dir err deg |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in acc:
            lines.append(
                f"| {a['speed_px']} | {a['direction']} | {a['method']} | {a['refine']} "
                f"| {a['mean_speed_err_pct']:.2f} | {a['max_speed_err_pct']:.2f} | "
                f"{a['mean_dir_err_deg']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(quick: bool = False, out_dir: Path = Path("bench_output"), pipeline: bool = False) -> str:
    """Run the suite and return (and write) the Markdown report."""
    rows, acc = run_suite(quick=quick, out_dir=out_dir)
    rect = rectify_rows(repeats=3 if quick else 20)
    text = markdown(rows, acc, environment(), rect)
    if pipeline:
        from ivy_gpu.benchmarks import pipeline_bench

        prow = pipeline_bench.run(640, 360, 2.0, 3, 1.0) if quick else pipeline_bench.run()
        text += "\n" + pipeline_bench.markdown(prow)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stiv_bench.md").write_text(text)
    return text


if __name__ == "__main__":
    print(main())
