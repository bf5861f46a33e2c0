"""Executors of a batch: they run videos and yield ``(row index, result)``.

The batch loop itself (bad rows, resume, summary, progress, stop-on-error) is
:class:`ivy_gpu.pipeline.batch.BatchOrchestrator`; an executor only decides where and in which
order videos run. :class:`LocalExecutor` runs them in CSV order in this process and
decodes the next video while the current one is analysed; :class:`DaskExecutor` runs
one task per video on a Dask cluster.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ivy_gpu import config
from ivy_gpu.engines import backends
from ivy_gpu.frames.stack import LoadedVideo, load_stack
from ivy_gpu.params import StivParams, VideoConfig
from ivy_gpu.pipeline.drawing import FigureProcesses
from ivy_gpu.pipeline.process import run_video
from ivy_gpu.results import ProcessingResult
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.stiv.quality import QualityRules


@dataclass(frozen=True)
class VideoRunner:
    """Runs one video of a batch; small and picklable, so cluster workers get it once."""

    scaffold: ScaffoldConfig
    out: Path
    backend: str
    stiv: StivParams
    rules: QualityRules | None = None
    stabilize: str | None = None
    figures: bool = True

    def __call__(
        self, job: Job, preload=None, stage_progress=None, defer=None, drawer=None
    ) -> ProcessingResult | Future:
        """Process ``job`` (``preload``: the prefetched stack's loader, if any).

        ``defer`` (``submit(fn) -> Future``) draws the figures and writes ``results.json``
        off the critical path; the future of the result comes back then. ``drawer`` draws
        deferred figures elsewhere (:class:`~ivy_gpu.pipeline.drawing.FigureProcesses`).
        """
        return run_video(
            self.scaffold,
            job.config,
            output_directory=self.out,
            backend=self.backend,
            stiv=self.stiv,
            progress=stage_progress,
            preload=preload,
            output_name=job.folder,
            rules=self.rules,
            stabilize=self.stabilize,
            figures=self.figures,
            defer=defer,
            drawer=drawer,
        )


@dataclass(frozen=True)
class Job:
    """One video to run: its row index, its configuration and its output folder name."""

    index: int
    config: VideoConfig
    folder: str


class Executor(Protocol):
    """Runs the jobs of a batch and yields ``(row index, result)`` as videos finish."""

    def run(self, runner: VideoRunner, jobs: list[Job]) -> Iterator[tuple[int, ProcessingResult]]:
        """Yield a result per job (fewer after :meth:`stop`)."""
        ...

    def stop(self) -> None:
        """Start no further job (stop on error)."""
        ...


class LocalExecutor:
    """Videos one after another in this process; the next decodes while this one runs.

    With figures, a video's figures are drawn (and its ``results.json`` written, last) on a
    figure thread while the next video is computed; results are yielded in CSV order as
    their files are complete, and the batch waits for the last ones at the end.
    """

    def __init__(
        self,
        prefetch: bool = True,
        stage_progress=None,
        defer_figures: bool = True,
        figure_workers: int | None = None,
    ) -> None:
        self.prefetch = prefetch
        #: Videos decoded ahead at once (read here: a bad setting fails before any output).
        self.depth = config.prefetch_videos() if prefetch else 0
        #: Figure drawers: 1 the figure thread, more that many processes
        #: (:mod:`ivy_gpu.pipeline.drawing`); None or 0: :func:`ivy_gpu.config.figure_workers`.
        self.figure_workers = config.figure_workers(figure_workers)
        config.motion_tracker()  # a bad IVY_GPU_MOTION is named before any video runs
        self.stage_progress = stage_progress
        self.defer_figures = defer_figures
        self._stopped = False

    def stop(self) -> None:
        """Start no further video."""
        self._stopped = True

    def run(self, runner: VideoRunner, jobs: list[Job]):
        """Yield ``(index, result)`` in CSV order."""
        self._stopped = False
        depth = self.depth
        # one thread per video decoded ahead: several decoders at once with a depth of 2 or more
        pool = ThreadPoolExecutor(depth, thread_name_prefix="ivy-prefetch") if depth else None
        drawing = runner.figures and self.defer_figures
        # no more drawers than videos: a batch of one draws on the thread (no start-up)
        workers = max(1, min(self.figure_workers, len(jobs))) if drawing else 0
        figures = ThreadPoolExecutor(workers, thread_name_prefix="ivy-figures") if drawing else None
        drawer = FigureProcesses(workers) if workers > 1 else None
        waiting = config.figure_queue(workers)
        if drawer is not None:
            drawer.start()  # their start-up overlaps the first video's decoding
        engine = backends.get_engine(runner.backend)
        pending: dict[int, Future] = {}
        order: deque[tuple[int, ProcessingResult | Future]] = deque()
        try:
            for i, job in enumerate(jobs):
                if self._stopped:
                    break
                for nxt in jobs[i + 1 : i + 1 + depth]:  # overlap: the next videos decode now
                    if nxt.index not in pending:
                        pending[nxt.index] = pool.submit(
                            load_stack,
                            runner.scaffold,
                            nxt.config,
                            engine,
                            params=runner.stiv,
                            stabilize=runner.stabilize,
                        )
                preload = _once(pending.pop(job.index)) if job.index in pending else None
                defer = figures.submit if figures is not None else None
                order.append((job.index, runner(job, preload, self.stage_progress, defer, drawer)))
                preload = None
                while order and (_done(order[0][1]) or len(order) > waiting):
                    index, res = order.popleft()
                    yield index, _value(res)
            while order:  # the batch waits for the last figures
                index, res = order.popleft()
                yield index, _value(res)
        finally:
            for f in pending.values():
                f.cancel()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if figures is not None:
                figures.shutdown(wait=True)
            if drawer is not None:
                drawer.close()


def _done(res: ProcessingResult | Future) -> bool:
    return not isinstance(res, Future) or res.done()


def _value(res: ProcessingResult | Future) -> ProcessingResult:
    return res.result() if isinstance(res, Future) else res


def _once(future: Future) -> Callable[[], LoadedVideo]:
    """The prefetched stack's loader, which lets go of the future once read.

    Nothing but the video being processed then holds the stack, so it is freed as soon as
    the video is analysed.
    """
    box = [future]

    def load():
        return box.pop().result()

    return load


class DaskExecutor:
    """Each video a task on a Dask cluster; results come back as they finish."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._futures: list[Any] = []

    def stop(self) -> None:
        """Cancel the tasks not yet finished."""
        for f in self._futures:
            if not f.done():
                f.cancel()

    def run(self, runner: VideoRunner, jobs: list[Job]):
        """Yield ``(index, result)`` as tasks complete; a task that died is recorded."""
        from distributed import as_completed

        if not jobs:
            return
        remote = self.client.scatter(runner, broadcast=True)
        futures = {self.client.submit(_run_remote, remote, job, pure=False): job for job in jobs}
        self._futures = list(futures)
        for future in as_completed(self._futures):
            job = futures[future]
            if future.cancelled():
                continue
            try:
                res = future.result()
            except Exception as exc:  # the task could not run: a worker died, ...
                res = ProcessingResult(
                    video_path=job.config.video_path,
                    error_stage="worker",
                    error_message=f"{job.config.video_path}: the cluster worker running it "
                    f"failed ({type(exc).__name__}: {exc})",
                    water_surface_elevation=job.config.water_surface_elevation,
                    alpha=job.config.alpha,
                )
            yield job.index, res


def _run_remote(runner: VideoRunner, job: Job) -> ProcessingResult:
    return runner(job)
