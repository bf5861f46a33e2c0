"""Batches: the batch CSV, the orchestrator that overlaps decoding with compute, the summary.

While video k is in STIV and discharge, video k+1 is decoded and rectified on a
worker thread (PyAV, OpenCV and the Numba kernels release the GIL). A failure is
recorded with its stage and the batch goes on (unless ``stop_on_error``). The
summary CSV is rewritten atomically after every video, so a killed batch keeps
everything finished, and ``resume`` skips videos whose results are complete.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ivy_gpu import backends
from ivy_gpu.fileio import atomic_write_text
from ivy_gpu.pipeline import StageError, load_stack, run_video
from ivy_gpu.results import BatchResult, ProcessingResult, VideoConfig
from ivy_gpu.scaffold import ScaffoldConfig, as_scaffold
from ivy_gpu.units import unit_system
from ivy_gpu.video import parse_time

REQUIRED_COLUMNS = ("video_path", "water_surface_elevation")
SUMMARY_COLUMNS = (
    "video_path",
    "status",
    "water_surface_elevation",
    "alpha",
    "discharge_m3s",
    "discharge",
    "area_m2",
    "mean_velocity_ms",
    "uncertainty_iso_95",
    "uncertainty_ive_95",
    "num_frames",
    "processing_time_s",
    "error_stage",
    "error_message",
)

BatchProgress = Callable[[int, int, ProcessingResult], None]


@dataclass(frozen=True)
class BatchRow:
    """One CSV row: a video to process, or the reason the row is unusable."""

    line: int
    video_path: Path
    wse_display: str
    config: VideoConfig | None
    error: str | None = None


def _opt_int(value: str, name: str, minimum: int) -> int | None:
    if value is None or not str(value).strip():
        return None
    try:
        v = int(float(value))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an integer") from None
    if v != float(value) or v < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return v


def read_batch_csv(path: str | Path, display_units: str = "Metric") -> list[BatchRow]:
    """Parse a batch CSV (domain specification, section 3.1).

    Required columns ``video_path`` and ``water_surface_elevation`` (in the scaffold's
    display units); optional ``start_time``, ``end_time`` (seconds, ``MM:SS`` or
    ``HH:MM:SS[.fff]``), ``alpha`` (0.85), ``frame_step`` (1), ``max_frames``,
    ``measurement_number``, ``measurement_date``, ``comments``. Unknown columns are
    ignored; relative video paths resolve against the CSV's folder.

    Raises
    ------
    ValueError
        Unreadable file, missing required columns, or no data rows. A bad *row* is
        not an error here: it comes back with ``error`` set.
    """
    path = Path(path)
    to_m = 1.0 / unit_system(display_units).length
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read batch CSV ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: missing required columns: {', '.join(missing)}")
    out: list[BatchRow] = []
    for k, raw in enumerate(rows):
        row = {
            (key or "").strip(): (val or "").strip()
            for key, val in raw.items()
            if isinstance(val, str) or val is None
        }
        if not any(row.values()):
            continue
        line = k + 2
        video = row.get("video_path", "")
        vpath = Path(video) if Path(video).is_absolute() else path.parent / video
        wse_text = row.get("water_surface_elevation", "")
        try:
            if not video:
                raise ValueError("video_path: empty")
            try:
                wse = float(wse_text)
            except ValueError:
                raise ValueError(f"water_surface_elevation: {wse_text!r} is not a number") from None
            alpha_text = row.get("alpha", "")
            try:
                alpha = float(alpha_text) if alpha_text else 0.85
            except ValueError:
                raise ValueError(f"alpha: {alpha_text!r} is not a number") from None
            cfg = VideoConfig(
                vpath,
                wse * to_m,
                alpha,
                parse_time(row.get("start_time"), "start_time"),
                parse_time(row.get("end_time"), "end_time"),
                _opt_int(row.get("frame_step"), "frame_step", 1) or 1,
                _opt_int(row.get("max_frames"), "max_frames", 2),
                _opt_int(row.get("measurement_number"), "measurement_number", 0),
                row.get("measurement_date") or None,
                row.get("comments") or None,
            )
            out.append(BatchRow(line, vpath, wse_text, cfg))
        except ValueError as exc:
            out.append(BatchRow(line, vpath, wse_text, None, f"{path}: row {line}: {exc}"))
    if not out:
        raise ValueError(f"{path}: batch CSV has no data rows")
    return out


def output_names(rows: list[BatchRow]) -> list[str]:
    """Per-video folder names: the video stem, made unique with the CSV line if repeated."""
    seen: set[str] = set()
    names = []
    for row in rows:
        name = row.video_path.stem or f"row{row.line}"
        if name in seen:
            name = f"{name}_line{row.line}"
        seen.add(name)
        names.append(name)
    return names


def _completed(folder: Path, cfg: VideoConfig) -> ProcessingResult | None:
    """A finished result from a previous run (for ``resume``), or None."""
    try:
        data = json.loads((folder / "results.json").read_text())
        table = pd.read_csv(folder / "discharge_table.csv")
    except (OSError, ValueError):
        return None
    inputs = data.get("inputs") or {}
    if (
        data.get("status") != "completed"
        or not np.isclose(
            inputs.get("water_surface_elevation_m", np.nan), cfg.water_surface_elevation
        )
        or not np.isclose(inputs.get("alpha", np.nan), cfg.alpha)
    ):
        return None
    return ProcessingResult(
        video_path=cfg.video_path,
        success=True,
        water_surface_elevation=cfg.water_surface_elevation,
        alpha=cfg.alpha,
        num_frames=data.get("num_frames") or 0,
        timestep_seconds=data.get("timestep_s"),
        pixel_gsd=data.get("pixel_gsd_m"),
        backend=data.get("backend"),
        total_discharge=data.get("discharge_m3s"),
        total_area=data.get("area_m2"),
        mean_velocity=data.get("mean_velocity_ms"),
        discharge_dataframe=table,
        discharge_uncertainty={
            "iso_u95": data.get("uncertainty_iso_95"),
            "ive_u95": data.get("uncertainty_ive_95"),
        },
        warnings=list(data.get("warnings") or []),
        output_directory=folder,
        processing_time_seconds=data.get("processing_time_s") or 0.0,
    )


def _fmt(v: float | None, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    return f"{v:.{digits}g}"


def summary_row(row: BatchRow, result: ProcessingResult, display_units: str) -> dict:
    """One line of ``batch_summary.csv``."""
    u = unit_system(display_units)
    q = result.total_discharge if result.success else None
    unc = result.discharge_uncertainty or {}
    return {
        "video_path": str(row.video_path),
        "status": "completed" if result.success else "failed",
        "water_surface_elevation": row.wse_display,
        "alpha": "" if row.config is None else _fmt(row.config.alpha),
        "discharge_m3s": _fmt(q),
        "discharge": _fmt(None if q is None else q * u.discharge),
        "area_m2": _fmt(result.total_area if result.success else None),
        "mean_velocity_ms": _fmt(result.mean_velocity if result.success else None),
        "uncertainty_iso_95": _fmt(unc.get("iso_u95") if result.success else None, 4),
        "uncertainty_ive_95": _fmt(unc.get("ive_u95") if result.success else None, 4),
        "num_frames": str(result.num_frames) if result.num_frames else "",
        "processing_time_s": f"{result.processing_time_seconds:.2f}",
        "error_stage": result.error_stage or "",
        "error_message": result.error_message or "",
    }


def write_summary(path: Path, rows: list[dict]) -> None:
    """Rewrite ``batch_summary.csv`` atomically."""
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    atomic_write_text(path, frame.to_csv(index=False))


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
        Decode and rectify the next video while the current one is analysed.
    progress : callable, optional
        ``progress(index, total, result)`` after every video.
    stage_progress : callable, optional
        ``(stage, fraction, message)`` within each video.
    refine : bool
        Sub-step STIV refinement.
    client : dask.distributed.Client, optional
        Run each video as a task on a Dask cluster. Videos and the output folder must
        be on a file system the workers share; the scaffold is sent to every worker
        once. Results come back as they finish and the summary is rewritten, in CSV
        order, after each.
    """

    def __init__(
        self,
        scaffold: ScaffoldConfig,
        output_directory: str | Path,
        backend: str = "auto",
        stop_on_error: bool = False,
        resume: bool = False,
        prefetch: bool = True,
        progress: BatchProgress | None = None,
        stage_progress=None,
        refine: bool = True,
        client=None,
    ) -> None:
        self.scaffold = scaffold
        self.out = Path(output_directory)
        self.backend = backend
        self.stop_on_error = stop_on_error
        self.resume = resume
        self.prefetch = prefetch
        self.progress = progress
        self.stage_progress = stage_progress
        self.refine = refine
        self.client = client

    def run(self, rows: list[BatchRow], csv_path: Path | None = None) -> BatchResult:
        """Process every row in order; returns one result per row."""
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        names = output_names(rows)
        name = backends.resolve_backend(self.backend)
        results: list[ProcessingResult] = []
        summary: list[dict] = []
        done = [None] * len(rows)
        if self.resume:
            done = [
                None if r.config is None else _completed(self.out / n, r.config)
                for r, n in zip(rows, names, strict=True)
            ]
        todo = [k for k, r in enumerate(rows) if r.config is not None and done[k] is None]
        if self.client is not None:
            return self._run_distributed(rows, names, done, todo, name, csv_path, t0)
        pool = ThreadPoolExecutor(max_workers=1) if self.prefetch else None
        pending: dict[int, Future] = {}

        def submit(k: int) -> None:
            if pool is not None and k not in pending:
                pending[k] = pool.submit(load_stack, self.scaffold, rows[k].config, name)

        stopped = False
        try:
            for k, row in enumerate(rows):
                if stopped:
                    res = _not_processed(row)
                elif row.config is None:
                    res = _bad_row(row)
                elif done[k] is not None:
                    res = done[k]
                else:
                    later = [j for j in todo if j > k]
                    if later:
                        submit(later[0])  # overlap: the next video decodes while this one runs
                    res = self._one(k, row, names[k], name, pending.pop(k, None))
                results.append(res)
                summary.append(summary_row(row, res, self.scaffold.display_units))
                write_summary(self.out / "batch_summary.csv", summary)
                if self.progress:
                    self.progress(k, len(rows), res)
                if self.stop_on_error and not res.success and not stopped:
                    stopped = True
        finally:
            for f in pending.values():
                f.cancel()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return BatchResult(results, self.out, csv_path, time.perf_counter() - t0)

    def _run_distributed(self, rows, names, done, todo, backend, csv_path, t0) -> BatchResult:
        from distributed import as_completed

        results: list[ProcessingResult | None] = list(done)
        for k, row in enumerate(rows):
            if row.config is None:
                results[k] = _bad_row(row)
        scaffold = self.client.scatter(self.scaffold, broadcast=True)
        futures = {
            self.client.submit(
                run_video,
                scaffold,
                rows[k].config,
                self.out,
                backend,
                None,
                None,
                False,
                self.refine,
                names[k],
                pure=False,
            ): k
            for k in todo
        }

        def flush() -> None:
            lines = [
                summary_row(rows[k], r, self.scaffold.display_units)
                for k, r in enumerate(results)
                if r is not None
            ]
            write_summary(self.out / "batch_summary.csv", lines)

        flush()
        stopped = False
        for future in as_completed(list(futures)):
            k = futures[future]
            if future.cancelled():
                continue
            try:
                res = future.result()
            except Exception as exc:  # the task could not run (a worker died, ...)
                res = ProcessingResult(
                    video_path=rows[k].video_path,
                    error_stage="read",
                    error_message=f"{rows[k].video_path}: the cluster could not process it "
                    f"({type(exc).__name__}: {exc})",
                )
            results[k] = res
            flush()
            if self.progress:
                self.progress(k, len(rows), res)
            if self.stop_on_error and not res.success and not stopped:
                stopped = True
                for f in futures:
                    if f is not future:
                        f.cancel()
        for k, r in enumerate(results):
            if r is None:  # cancelled after a failure (stop on error)
                results[k] = _not_processed(rows[k])
        flush()
        return BatchResult(results, self.out, csv_path, time.perf_counter() - t0)

    def _one(
        self, k: int, row: BatchRow, folder: str, backend: str, future: Future | None
    ) -> ProcessingResult:
        cfg = row.config
        t0 = time.perf_counter()
        loaded = None
        if future is not None:
            try:
                loaded = future.result()
            except Exception as exc:  # StageError, or anything unexpected while loading
                stage = getattr(exc, "stage", "read")
                msg = (
                    str(exc)
                    if isinstance(exc, StageError)
                    else (f"{cfg.video_path}: unexpected {type(exc).__name__} while reading: {exc}")
                )
                res = ProcessingResult(
                    video_path=cfg.video_path,
                    error_stage=stage,
                    error_message=msg,
                    water_surface_elevation=cfg.water_surface_elevation,
                    alpha=cfg.alpha,
                )
                res.processing_time_seconds = time.perf_counter() - t0
                from ivy_gpu.pipeline import finalize_result_json

                finalize_result_json(self.out / folder, res, self.scaffold)
                return res
        res = run_video(
            self.scaffold,
            cfg,
            self.out,
            backend,
            self.stage_progress,
            loaded=loaded,
            refine=self.refine,
            output_name=folder,
        )
        if loaded is not None:
            res.processing_time_seconds += loaded.seconds
        return res


def process_batch(
    scaffold_path: str | Path | ScaffoldConfig,
    videos: list[VideoConfig],
    output_directory: str | Path,
    backend: str = "auto",
    stop_on_error: bool = False,
    resume: bool = False,
    progress: BatchProgress | None = None,
    client=None,
) -> BatchResult:
    """Process a list of :class:`VideoConfig` (WSE in metres) with one scaffold.

    ``client`` (a ``dask.distributed.Client``) runs the videos on a cluster.
    """
    scaffold = as_scaffold(scaffold_path)
    u = unit_system(scaffold.display_units)
    rows = [
        BatchRow(i + 2, v.video_path, f"{v.water_surface_elevation * u.length:.6g}", v)
        for i, v in enumerate(videos)
    ]
    return BatchOrchestrator(
        scaffold, output_directory, backend, stop_on_error, resume, progress=progress, client=client
    ).run(rows)


def process_batch_csv(
    scaffold_path: str | Path | ScaffoldConfig,
    batch_csv_path: str | Path,
    output_directory: str | Path,
    backend: str = "auto",
    stop_on_error: bool = False,
    resume: bool = False,
    progress: BatchProgress | None = None,
    client=None,
) -> BatchResult:
    """Process every row of a batch CSV (WSE in the scaffold's display units).

    ``client`` (a ``dask.distributed.Client``) runs the videos on a cluster.
    """
    scaffold = as_scaffold(scaffold_path)
    rows = read_batch_csv(batch_csv_path, scaffold.display_units)
    return BatchOrchestrator(
        scaffold, output_directory, backend, stop_on_error, resume, progress=progress, client=client
    ).run(rows, Path(batch_csv_path))
