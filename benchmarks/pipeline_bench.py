"""End-to-end benchmark: decode alone vs the whole pipeline, and batch overlap.

A generated 1080p 30 fps clip (``ivy_gpu.synthetic.sites``) is (1) only decoded,
(2) decoded and rectified, (3) processed end to end with ``process_video``; a batch
of short clips is run with and without the prefetch overlap. Peak memory is the
process's maximum resident set size.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

from ivy_gpu.benchmarks.common import gpu_backends
from ivy_gpu.engines import backends


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


#: PyAV threading variants timed against the reader's default (``AUTO``, one thread per core).
DECODE_SETTINGS = (("NONE", 1), ("SLICE", 0), ("FRAME", 0), ("AUTO", 0), ("AUTO", 1))


def decode_rate(video: Path, thread_type: str, threads: int) -> tuple[int, float]:
    """Frames and seconds to decode ``video`` to luma with one PyAV threading setting.

    ``threads`` 0 lets FFmpeg use one thread per core.
    """
    import av

    from ivy_gpu.frames.video import _luma

    t0 = time.perf_counter()
    n = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        stream.thread_count = threads
        for frame in container.decode(stream):
            _luma(frame)
            n += 1
    return n, time.perf_counter() - t0


def run(
    width: int = 1920,
    height: int = 1080,
    seconds: float = 10.0,
    batch_videos: int = 20,
    batch_seconds: float = 2.0,
    work: Path | None = None,
) -> list[dict]:
    """Return rows ``{case, backend, seconds, detail}``."""
    from ivy_gpu.frames.stack import load_stack
    from ivy_gpu.frames.video import FrameReader
    from ivy_gpu.pipeline.batch import BatchOrchestrator, BatchRow
    from ivy_gpu.pipeline.process import process_video
    from ivy_gpu.results import VideoConfig
    from ivy_gpu.scaffold.ivyfile import load_scaffold
    from ivy_gpu.synthetic.sites import SiteSpec, make_site

    tmp = Path(work or tempfile.mkdtemp(prefix="ivy_bench_"))
    rows: list[dict] = []
    try:
        truth = make_site(
            tmp / "big", SiteSpec(width_px=width, height_px=height, duration_s=seconds, seed=5)
        )
        video = tmp / "big" / truth["video"]
        scaffold = load_scaffold(tmp / "big" / "site.ivy")
        t0 = time.perf_counter()
        n = sum(1 for _ in FrameReader(video))
        decode = time.perf_counter() - t0
        rows.append(
            dict(
                case=f"decode only ({width}x{height}, {n} frames)",
                backend="-",
                seconds=decode,
                detail=f"{n / decode:.0f} frames/s",
            )
        )
        for thread_type, threads in DECODE_SETTINGS:
            n_dec, secs = decode_rate(video, thread_type, threads)
            rows.append(
                dict(
                    case=f"decode only, PyAV thread_type {thread_type}, "
                    f"thread_count {threads or 'auto'}",
                    backend="-",
                    seconds=secs,
                    detail=f"{n_dec / secs:.0f} frames/s",
                )
            )
        cfg = VideoConfig(video, truth["wse_m"])
        names = ["numba", *gpu_backends()]
        for name in names:
            t0 = time.perf_counter()
            loaded = load_stack(scaffold, cfg, backends.get_engine(name))
            rows.append(
                dict(
                    case="decode + gray + rectify into the stack",
                    backend=name,
                    seconds=time.perf_counter() - t0,
                    detail=f"stack {tuple(loaded.stack.shape)}",
                )
            )
            del loaded
            t0 = time.perf_counter()
            r = process_video(scaffold, video, truth["wse_m"], tmp / "out", backend=name)
            total = time.perf_counter() - t0
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r.stage_seconds.items())
            rows.append(
                dict(
                    case="process_video end to end",
                    backend=name,
                    seconds=total,
                    detail=f"{total / decode:.2f}x decode alone; stages (s): {stages}; "
                    f"Q error {100 * (r.total_discharge / truth['discharge_m3s'] - 1):+.2f} %; "
                    f"peak RSS {_rss_mb():.0f} MB",
                )
            )
        if not batch_videos:
            return rows
        small = make_site(
            tmp / "small", SiteSpec(width_px=1280, height_px=720, duration_s=batch_seconds, seed=6)
        )
        sc = load_scaffold(tmp / "small" / "site.ivy")
        vpath = tmp / "small" / small["video"]
        batch_rows = [
            BatchRow(
                i + 2,
                vpath.with_name(f"clip{i:02d}.mp4"),
                "100.8",
                VideoConfig(vpath.with_name(f"clip{i:02d}.mp4"), small["wse_m"]),
            )
            for i in range(batch_videos)
        ]
        for row in batch_rows:
            shutil.copy(vpath, row.video_path)
        for name in names:
            for overlap in (False, True):
                t0 = time.perf_counter()
                b = BatchOrchestrator(
                    sc, tmp / f"batch_{name}_{overlap}", backend=name, prefetch=overlap
                ).run(batch_rows)
                total = time.perf_counter() - t0
                per = sum(r.processing_time_seconds for r in b.video_results)
                rows.append(
                    dict(
                        case=f"batch of {batch_videos} x 720p {batch_seconds:.0f} s clips, "
                        f"{'prefetch overlap' if overlap else 'sequential'}",
                        backend=name,
                        seconds=total,
                        detail=f"sum of per-video times {per:.1f} s; "
                        f"{b.successful}/{b.total_videos} ok",
                    )
                )
    finally:
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table."""
    lines = ["| case | backend | seconds | detail |", "|---|---|---|---|"]
    lines += [
        f"| {r['case']} | {r['backend']} | {r['seconds']:.2f} | {r['detail']} |" for r in rows
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))
