"""A batch in steady state (issue 25): clips per hour through the real batch path.

Copies of a generated clip (1080p, 10 s, 30 fps by default) run through
:class:`~ivy_gpu.pipeline.batch.BatchOrchestrator` exactly as ``ivy-gpu batch`` runs them
(prefetch, figure thread, summary and ``record.nc``; no report). A batch of one video first
pays the fixed costs (kernel compilation or cache loading, remap tables, imports); then a
batch of N videos in the same process is timed whole: its wall time over N is the steady
state per video (the pipeline's fill and drain included once, so it errs high by at most one
video's decoding and figures over N). Each case reports clips per hour, that time over
decoding the clip alone (PyAV to luma, the reader the pipeline uses), how busy the CPUs were
(process CPU time over wall time and cores), the read + rectify seconds per video (on the
prefetch thread, overlapped with the previous video's compute; longer than decoding alone
when the two share the cores) and, with an NVIDIA GPU, its utilisation sampled by
``nvidia-smi``.

Layouts: ``section``, the scaffold's 25 nodes along the cross-section; ``grid``, 575 nodes
(23 lines of 25 parallel to the section, 5 px apart), the layout of the STIV benchmarks. The
grid's nodes share stations, so its discharge means nothing: it is a throughput workload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

#: Seconds between GPU utilisation samples.
GPU_SAMPLE_S = 0.25


class GpuSampler:
    """Samples the GPU's utilisation (%) with ``nvidia-smi`` on a thread; None without one."""

    def __init__(self) -> None:
        self.exe = shutil.which("nvidia-smi")
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if self.exe:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        args = [self.exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                text = subprocess.run(args, capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(text.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(GPU_SAMPLE_S)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        """Mean utilisation (%), None without samples."""
        return float(np.mean(self.samples)) if self.samples else None


def decode_seconds(video: Path, repeats: int = 2) -> tuple[int, float]:
    """Frames and the best of ``repeats`` times to decode ``video`` to luma (FrameReader)."""
    from ivy_gpu.frames.video import FrameReader

    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(1 for _ in FrameReader(video))
        best = min(best, time.perf_counter() - t0)
    return n, best


def grid_nodes(line: np.ndarray, per_line: int = 25, lines: int = 23, step_px: float = 5.0):
    """``lines`` x ``per_line`` nodes on lines parallel to the section, ``step_px`` apart."""
    line = np.asarray(line, float)
    t = np.linspace(0.0, 1.0, per_line)
    base = line[0] + t[:, None] * (line[1] - line[0])
    u = line[1] - line[0]
    normal = np.array([-u[1], u[0]]) / np.hypot(*u)
    offsets = (np.arange(lines) - (lines - 1) / 2) * step_px
    return np.vstack([base + o * normal for o in offsets])


def run(
    n: int = 4,
    width: int = 1920,
    height: int = 1080,
    seconds: float = 10.0,
    backend_names: list[str] | None = None,
    layouts: tuple[str, ...] = ("section", "grid"),
    figures: tuple[bool, ...] = (True, False),
    work: Path | None = None,
    decoders: tuple[int, ...] = (1,),
    deadline: float | None = None,
    skipped: list[str] | None = None,
    decoder_modes: tuple[str, ...] = ("auto",),
) -> list[dict]:
    """Return one row per (backend, layout, figures, decoders, decoder mode) case.

    ``decoders``: videos decoded ahead at once (``IVY_GPU_PREFETCH``, each on its own
    thread), set for the case and restored after it; ``decoder_modes``: ``IVY_GPU_DECODER``
    likewise (``auto``: NVDEC on the GPU engine where it works; the row says who decoded).
    ``deadline`` (``time.monotonic()``):
    a case that would end after it, judged by the longest case so far, is not started; its
    name goes into ``skipped``.
    """
    from ivy_gpu import config
    from ivy_gpu.benchmarks.common import gpu_backends
    from ivy_gpu.pipeline.batch import BatchOrchestrator, BatchRow
    from ivy_gpu.results import VideoConfig
    from ivy_gpu.scaffold.ivyfile import load_scaffold
    from ivy_gpu.synthetic.sites import SiteSpec, make_site

    tmp = Path(work or tempfile.mkdtemp(prefix="ivy_batch_bench_"))
    rows: list[dict] = []
    try:
        truth = make_site(
            tmp / "site", SiteSpec(width_px=width, height_px=height, duration_s=seconds, seed=5)
        )
        clip = tmp / "site" / truth["video"]
        frames, decode = decode_seconds(clip)
        videos = []
        for k in range(n + 1):
            path = tmp / f"clip{k:03d}.mp4"
            shutil.copyfile(clip, path)
            videos.append(path)
        base = load_scaffold(tmp / "site" / "site.ivy")
        names = backend_names or ["numba", *gpu_backends()]
        cores = config.usable_cores()  # those the figure workers are counted from
        longest = 0.0
        for name in names:
            for layout in layouts:
                sc = base
                if layout == "grid":
                    grid = grid_nodes(base.cross_section_line)
                    sc = dataclasses.replace(base, results_grid=grid, num_grid_points=len(grid))
                for fig, depth, mode in itertools.product(figures, decoders, decoder_modes):
                    case = f"{name} {layout} figures {'on' if fig else 'off'} decoders {depth}"
                    case += "" if mode == "auto" else f" ({mode})"
                    if deadline is not None and time.monotonic() + longest > deadline:
                        if skipped is not None:
                            skipped.append(case)
                        continue
                    started = time.monotonic()
                    batch_rows = [
                        BatchRow(k + 2, v, str(truth["wse_m"]), VideoConfig(v, truth["wse_m"]))
                        for k, v in enumerate(videos)
                    ]
                    out = tmp / f"out_{name}_{layout}_{int(fig)}_{depth}_{mode}"
                    # drawn as ivy-gpu batch draws them (no more drawers than videos)
                    drawers = min(config.figure_workers(), n) if fig else 0
                    options = dict(backend=name, figures=fig, report=False)
                    options.update(figure_workers=drawers or None)
                    t0 = time.perf_counter()  # the fixed costs: a batch of one
                    first = BatchOrchestrator(sc, out / "first", **options).run(batch_rows[:1])
                    first_s = time.perf_counter() - t0
                    cpu0 = _cpu_seconds()
                    t0 = time.perf_counter()
                    with (
                        GpuSampler() as gpu,
                        _env("IVY_GPU_PREFETCH", depth),
                        _env("IVY_GPU_DECODER", mode),
                    ):
                        b = BatchOrchestrator(sc, out, **options).run(batch_rows[1:])
                    wall = time.perf_counter() - t0
                    cpu = _cpu_seconds() - cpu0
                    steady = wall / n
                    decoding = np.mean(
                        [r.stage_seconds.get("read_rectify", 0.0) for r in b.video_results]
                    )
                    rows.append(
                        dict(
                            backend=name,
                            layout=f"{layout} ({sc.num_grid_points} nodes)",
                            figures=fig,
                            decoders=depth,
                            decoder_mode=mode,
                            decoder=", ".join(sorted({str(r.decoder) for r in b.video_results})),
                            figure_workers=drawers,
                            videos=n,
                            ok=b.successful + first.successful,
                            first_s=first_s,
                            steady_s=steady,
                            clips_per_hour=3600.0 / steady,
                            x_decode=steady / decode,
                            cpu_busy=cpu / wall / cores,
                            read_s=float(decoding),
                            gpu_busy=gpu.mean,
                            decode_s=decode,
                            frames=frames,
                        )
                    )
                    longest = max(longest, time.monotonic() - started)
    finally:
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its ended children.

    The children are the figure processes, which a batch stops before it returns.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


@contextlib.contextmanager
def _env(name: str, value: object):
    """Environment variable ``name`` set to ``value`` for a block, then restored."""
    before = os.environ.get(name)
    os.environ[name] = str(value)
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _decoders(row: dict) -> str:
    """Videos decoded at once, and the decoder asked for when not ``auto``."""
    mode = row.get("decoder_mode", "auto")
    return f"{row.get('decoders', 1)}" + ("" if mode == "auto" else f" ({mode} asked)")


def _figures(row: dict) -> str:
    """``off``, ``on`` (the figure thread) or ``on (N processes)``."""
    if not row["figures"]:
        return "off"
    k = row.get("figure_workers", 1)
    return "on" if k <= 1 else f"on ({k} processes)"


def markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table."""
    if not rows:
        return ""
    r0 = rows[0]
    head = (
        f"Steady-state batch: {r0['videos']} clips after a first one, each {r0['frames']} "
        f"frames; decoding one alone (PyAV to luma) {r0['decode_s']:.2f} s; "
        f"{os.cpu_count()} cores.\n\n"
    )
    lines = [
        "| backend | layout | figures | decoders | decoded by | ok | first video s | s per video "
        "| clips/hour | x decode | CPU busy | read+rectify s/video | GPU busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gpu = "n/a" if r["gpu_busy"] is None else f"{r['gpu_busy']:.0f} %"
        lines.append(
            f"| {r['backend']} | {r['layout']} | {_figures(r)} | "
            f"{_decoders(r)} | {r.get('decoder', 'pyav')} | {r['ok']}/{r['videos'] + 1} | "
            f"{r['first_s']:.2f} | "
            f"{r['steady_s']:.2f} | "
            f"{r['clips_per_hour']:.0f} | {r['x_decode']:.2f} | {100 * r['cpu_busy']:.0f} % | "
            f"{r['read_s']:.2f} | {gpu} |"
        )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))
