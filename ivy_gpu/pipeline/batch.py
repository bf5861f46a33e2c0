"""Batches: the batch CSV, the orchestrator that overlaps decoding with compute, the summary.

While video k is in STIV and discharge, video k+1 is decoded and rectified on a
worker thread (PyAV, OpenCV and the Numba kernels release the GIL). A failure is
recorded with its stage and the batch goes on (unless ``stop_on_error``). The
summary CSV is rewritten atomically after every video, so a killed batch keeps
everything finished, and ``resume`` skips videos whose results are complete.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ivy_gpu.engines import backends
from ivy_gpu.frames.stabilize import stabilize_mode
from ivy_gpu.log import log
from ivy_gpu.params import StivParams, stiv_params_for
from ivy_gpu.pipeline.batch_csv import (
    BATCH_FILES,
    SUMMARY_COLUMNS,
    BatchProgress,
    BatchRow,
    output_names,
    read_batch_csv,
    summary_row,
    write_summary,
)
from ivy_gpu.pipeline.executors import DaskExecutor, Executor, Job, LocalExecutor, VideoRunner
from ivy_gpu.pipeline.lock import FolderLock, remove_stale_temporaries
from ivy_gpu.pipeline.outputs import VIDEO_FILES, read_result
from ivy_gpu.pipeline.provenance import fingerprint
from ivy_gpu.report.figures import FIGURES
from ivy_gpu.results import BatchResult, ProcessingResult, VideoConfig
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig, as_scaffold
from ivy_gpu.stiv.quality import quality_rules
from ivy_gpu.units import unit_system

__all__ = [
    "SUMMARY_COLUMNS",
    "BatchOrchestrator",
    "BatchRow",
    "DaskExecutor",
    "LocalExecutor",
    "VideoRunner",
    "process_batch",
    "process_batch_csv",
    "read_batch_csv",
]


def _reusable(old: ProcessingResult | None, runner: VideoRunner, cfg: VideoConfig):
    """A completed earlier result, kept only when its fingerprint matches this row's exactly.

    The fingerprint covers the scaffold's content, the video's size and bytes, the WSE,
    alpha, the frame selection, the STIV and quality settings and the algorithm version.
    A result saved without figures is not reused when this batch draws them.
    """
    if old is None or old.fingerprint is None or not cfg.video_path.is_file():
        return None
    folder = old.output_directory
    if runner.figures and (folder is None or not (folder / FIGURES[0][0]).is_file()):
        return None
    now = fingerprint(runner.scaffold, cfg, runner.stiv, runner.rules, runner.stabilize)
    if old.fingerprint != now:
        return None
    old.reused = True
    return old


def _bad_row(row: BatchRow) -> ProcessingResult:
    """The failed result of a CSV row that could not be parsed."""
    return ProcessingResult(video_path=row.video_path, error_stage="read", error_message=row.error)


def _not_processed(row: BatchRow) -> ProcessingResult:
    """The result of a row skipped because an earlier video failed (stop on error)."""
    return ProcessingResult(
        video_path=row.video_path,
        error_message="not processed: the batch stopped at an earlier failure (stop on error)",
    )


class BatchOrchestrator:
    """Runs a batch of videos against one scaffold.

    The orchestrator owns everything a batch does once: bad rows, resume, the summary
    (rewritten in CSV order after every video), progress and stop-on-error. An
    executor only runs videos: :class:`LocalExecutor` (with the prefetch overlap) or
    :class:`DaskExecutor` (a cluster).

    Parameters
    ----------
    scaffold : ScaffoldConfig
    output_directory : path
        Per-video folders and ``batch_summary.csv`` go here.
    backend : str
        Compute backend for every video.
    stop_on_error : bool
        Stop at the first failed video (the rest are reported as not processed).
    resume : bool
        Skip videos whose results from an earlier run are complete.
    prefetch : bool
        Decode and rectify the next video while the current one is analysed (local).
    progress : callable, optional
        ``progress(index, total, result)`` after every video.
    stage_progress : callable, optional
        ``(stage, fraction, message)`` within each video (local).
    stiv : StivParams or mapping, optional
        STIV settings or overrides of the scaffold's.
    compat : {None, "ivytools"}
        STIV sampled as the IVyTools python port (see :func:`ivy_gpu.process_video`).
    min_valid_fraction : float
        A video with fewer valid, unflagged nodes than this fraction fails at ``stiv``.
    stabilize : {None, "auto", "on", "off"}
        Camera-motion correction (see :func:`ivy_gpu.process_video`).
    client : dask.distributed.Client, optional
        Run each video as a task on a Dask cluster. Videos and the output folder must
        be on a file system the workers share; the scaffold is sent to every worker
        once.
    report : bool
        Write ``report.html`` at the end (see :func:`ivy_gpu.report.page.build_report`).
    figures : bool
        Draw each video's PNG figures (see :func:`ivy_gpu.process_video`).
    gauge, tz : optional
        A gauge record to compare with in the report, and the zone of measurement times.
    figure_workers : int, optional
        Local batch: processes that draw the figures beside the videos computing (1: the
        figure thread; default :func:`ivy_gpu.config.figure_workers`: 1 below 8 cores, a
        quarter of them above, at most 4; :mod:`ivy_gpu.pipeline.drawing`).
    """

    def __init__(
        self,
        scaffold: ScaffoldConfig,
        output_directory: str | Path,
        *,
        backend: str = "auto",
        stop_on_error: bool = False,
        resume: bool = False,
        prefetch: bool = True,
        progress: BatchProgress | None = None,
        stage_progress: Callable[[str, float, str], None] | None = None,
        stiv: StivParams | Mapping[str, Any] | None = None,
        client: Any = None,
        compat: str | None = None,
        min_valid_fraction: float = 0.5,
        stabilize: str | None = None,
        report: bool = True,
        gauge: str | Path | None = None,
        tz: str | None = None,
        figures: bool = True,
        figure_workers: int | None = None,
    ) -> None:
        self.scaffold = scaffold
        self.out = Path(output_directory)
        self.report, self.gauge, self.tz = report, gauge, tz
        self.runner = VideoRunner(
            scaffold,
            self.out,
            backends.resolve_backend(backend),
            stiv_params_for(scaffold, stiv).with_compat(compat),
            quality_rules(min_valid_fraction),
            stabilize_mode(scaffold, stabilize),
            figures,
        )
        self.stop_on_error = stop_on_error
        self.resume = resume
        self.progress = progress
        if client is not None:
            self.executor: Executor = DaskExecutor(client)
        else:
            self.executor = LocalExecutor(
                prefetch=prefetch, stage_progress=stage_progress, figure_workers=figure_workers
            )

    def run(
        self,
        rows: list[BatchRow],
        csv_path: Path | None = None,
        done: Mapping[int, ProcessingResult] | None = None,
        locked: bool = False,
    ) -> BatchResult:
        """Process every row; returns one result per row, in CSV order.

        The output folder is locked for the whole batch
        (:class:`~ivy_gpu.pipeline.lock.FolderLock`): a second writer raises ``ValueError``
        naming the holder, before anything is written. ``locked`` says the caller holds the
        lock already (a station, for its whole life); ``done`` maps row indices to results
        this process made earlier, kept as they are (not checked again).
        """
        t0 = time.perf_counter()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"{self.out}: cannot create the output folder ({exc.strerror})"
            ) from None
        with contextlib.nullcontext() if locked else FolderLock(self.out):
            names = output_names(rows)
            remove_stale_temporaries(  # left by a killed writer, in the folders we make
                [(self.out, BATCH_FILES), *((self.out / n, VIDEO_FILES) for n in names)]
            )
            results: list[ProcessingResult | None] = [None] * len(rows)
            for k, row in enumerate(rows):
                if row.config is None:
                    results[k] = _bad_row(row)
                elif done and k in done:
                    results[k] = done[k]
                    results[k].reused = True
                elif self.resume:
                    old = read_result(self.out / names[k])
                    results[k] = _reusable(old, self.runner, row.config)
            jobs = [
                Job(k, row.config, names[k]) for k, row in enumerate(rows) if results[k] is None
            ]
            self._flush(rows, results)
            for k, res in self.executor.run(self.runner, jobs):
                results[k] = res
                state = "completed" if res.success else f"failed at {res.error_stage}"
                log.info("batch %d/%d: %s %s", k + 1, len(rows), rows[k].video_path.name, state)
                self._flush(rows, results)
                if self.progress:
                    self.progress(k, len(rows), res)
                if self.stop_on_error and not res.success:
                    self.executor.stop()
            final = [r if r is not None else _not_processed(rows[k]) for k, r in enumerate(results)]
            error = self._flush(rows, final)  # retried at the end: the last word
        batch = BatchResult(final, self.out, csv_path, time.perf_counter() - t0)
        batch.summary_error = error
        batch.record = self._record_values(rows, final)
        if error is None:
            batch.record_error = self._write_record(batch)
        if self.report and error is None:
            batch.report_error, batch.report_notes = self._report()
        return batch

    def _record_values(self, rows: list[BatchRow], results: list[ProcessingResult]) -> dict:
        """What ``record.nc`` needs beyond the results: site, zone, gauge values, WSE sources."""
        from ivy_gpu.interop import clip_datetime
        from ivy_gpu.report.record import gauge_at, parse_zone, read_gauge

        site = self.scaffold.path.stem if self.scaffold.path is not None else "site"
        try:
            zone = parse_zone(self.tz)
        except ValueError:
            zone = None
        values: dict = {"site_name": site, "wse_sources": [r.wse_source for r in rows]}
        if self.gauge is not None:
            for quantity, key in (("discharge", "gauge_discharge"), ("stage", "gauge_stage")):
                try:
                    g = read_gauge(self.gauge, zone, quantity=quantity)
                except ValueError:
                    continue  # the report says why a gauge record is left out
                zone = zone or g.attrs.get("zone")
                values[key] = [gauge_at(g, clip_datetime(r, zone)) for r in results]
        values["tz"] = zone
        values["station_lonlat"] = self._station_lonlat()
        return values

    def _station_lonlat(self) -> tuple[float, float] | None:
        """Where the section's midpoint is (lon, lat), when the site has a CRS."""
        from ivy_gpu.frames.stack import rectifier_for
        from ivy_gpu.interop import station_lonlat

        sc = self.scaffold
        wse = sc.rectification.calibration_wse_m
        if not sc.rectification.crs or wse is None:
            return None
        try:
            rect = rectifier_for(sc, wse)
            if not rect.has_world_grid:
                return None
            col, row = np.asarray(sc.cross_section_line, float).mean(axis=0)
            x, y = rect.pixel_to_world(col, row)
        except ValueError:
            return None
        return station_lonlat((float(x), float(y)), sc.rectification.crs)

    def _write_record(self, batch: BatchResult) -> str | None:
        """Write ``record.nc`` (:meth:`BatchResult.to_xarray`); a failure is one line."""
        from ivy_gpu.fileio import atomic_output

        path = self.out / "record.nc"
        try:
            ds = batch.to_xarray()
            with atomic_output(path) as tmp:
                ds.to_netcdf(tmp, engine="h5netcdf")
        except (OSError, ValueError) as exc:
            return f"{path}: not written ({exc})"
        return None

    def _report(self) -> tuple[str | None, list[str]]:
        """Write ``report.html``: ``(failure, notes)``, each one line, never raised.

        An unreadable gauge record does not cost the report: it is written without the
        gauge, and a note says which file was left out and why (as it does for a gauge
        with no value near any measurement).
        """
        import warnings

        from ivy_gpu.report.page import build_report
        from ivy_gpu.report.record import read_gauge

        gauge, notes = self.gauge, []
        if gauge is not None:
            try:
                read_gauge(gauge)
            except ValueError as exc:
                gauge = None
                notes.append(f"{exc}: report.html written without the gauge")
        try:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                build_report(self.out, gauge, self.tz)
        except (OSError, ValueError) as exc:
            return f"{self.out / 'report.html'}: not written ({exc})", notes
        return None, notes + [str(w.message) for w in said]

    def _flush(self, rows: list[BatchRow], results: list[ProcessingResult | None]) -> str | None:
        """Rewrite the summary; an I/O failure is returned (and retried next time), not raised."""
        lines = [
            summary_row(rows[k], r, self.scaffold.display_units)
            for k, r in enumerate(results)
            if r is not None
        ]
        try:
            write_summary(self.out / "batch_summary.csv", lines, self.scaffold.display_units)
        except OSError as exc:
            return f"{self.out / 'batch_summary.csv'}: cannot write the summary ({exc.strerror})"
        return None


def as_video_config(video: Any, index: int) -> VideoConfig:
    """A :class:`VideoConfig` from one item of ``videos``: itself, or a dict of its fields.

    Raises
    ------
    ValueError
        Anything else, or a dict with unknown or bad fields (naming the item and the field).
    """
    if isinstance(video, VideoConfig):
        return video
    if isinstance(video, Mapping):
        fields = dict(video)
        if "video_path" in fields:
            fields["video_path"] = Path(fields["video_path"])
        try:
            return VideoConfig(**fields)
        except (TypeError, ValueError) as exc:  # TypeError: a missing or unknown field
            said = str(exc).replace("VideoConfig.__init__() ", "")
            raise ValueError(f"videos[{index}]: {said}") from None
    raise ValueError(
        f"videos[{index}]: expected a VideoConfig or a dict of its fields "
        f"(video_path, water_surface_elevation, ...), got {type(video).__name__} {video!r}"
    )


def process_batch(
    scaffold_path: str | Path | ScaffoldConfig,
    videos: list[VideoConfig],
    output_directory: str | Path,
    backend: str = "auto",
    stop_on_error: bool = False,
    resume: bool = False,
    progress: BatchProgress | None = None,
    client: Any = None,
    stiv: StivParams | Mapping[str, Any] | None = None,
    compat: str | None = None,
    min_valid_fraction: float = 0.5,
    stabilize: str | None = None,
    figures: bool = True,
    figure_workers: int | None = None,
) -> BatchResult:
    """Process a list of :class:`VideoConfig` (WSE in metres) with one scaffold.

    ``client`` (a ``dask.distributed.Client``) runs the videos on a cluster; ``stiv``
    overrides the scaffold's STIV settings; ``figures`` False skips each video's PNGs;
    ``figure_workers`` > 1 draws them in that many processes (:class:`BatchOrchestrator`).
    Raises ``ValueError`` for an unreadable scaffold or an unusable backend, before any
    video is read.
    """
    videos = [as_video_config(v, i) for i, v in enumerate(videos)]
    scaffold = as_scaffold(scaffold_path)
    u = unit_system(scaffold.display_units)
    rows = [
        BatchRow(i + 2, v.video_path, f"{v.water_surface_elevation * u.length:.6g}", v)
        for i, v in enumerate(videos)
    ]
    options = dict(backend=backend, stop_on_error=stop_on_error, resume=resume)
    options.update(progress=progress, stiv=stiv, client=client, compat=compat)
    options.update(min_valid_fraction=min_valid_fraction, stabilize=stabilize, figures=figures)
    options.update(figure_workers=figure_workers)
    return BatchOrchestrator(scaffold, output_directory, **options).run(rows)


def process_batch_csv(
    scaffold_path: str | Path | ScaffoldConfig,
    batch_csv_path: str | Path,
    output_directory: str | Path,
    backend: str = "auto",
    stop_on_error: bool = False,
    resume: bool = False,
    progress: BatchProgress | None = None,
    client: Any = None,
    stiv: StivParams | Mapping[str, Any] | None = None,
    compat: str | None = None,
    min_valid_fraction: float = 0.5,
    stabilize: str | None = None,
    csv_units: str | None = None,
    gauge: str | Path | None = None,
    tz: str | None = None,
    figures: bool = True,
    figure_workers: int | None = None,
) -> BatchResult:
    """Process every row of a batch CSV.

    The CSV's WSE (and gauge height) are in the scaffold's display units, as IVyTools
    reads them, unless ``csv_units`` (``"Metric"`` or ``"English"``) says otherwise.
    ``gauge`` and ``tz`` go to the batch's ``report.html``. Other arguments as
    :func:`process_batch`.
    """
    scaffold = as_scaffold(scaffold_path)
    rows = read_batch_csv(batch_csv_path, csv_units or scaffold.display_units)
    options = dict(backend=backend, stop_on_error=stop_on_error, resume=resume)
    options.update(progress=progress, stiv=stiv, client=client, compat=compat)
    options.update(min_valid_fraction=min_valid_fraction, stabilize=stabilize, figures=figures)
    options.update(gauge=gauge, tz=tz, figure_workers=figure_workers)
    return BatchOrchestrator(scaffold, output_directory, **options).run(rows, Path(batch_csv_path))
