"""One video to discharge: load the stack, grid, STIV, discharge, uncertainty, outputs.

Stages (``ProcessingResult.error_stage``): ``read`` (open and decode), ``rectify``
(tables and frames), ``grid`` (nodes and stations at this WSE), ``stiv``,
``discharge`` and ``save``. :func:`run_video` is the only place where a failure
becomes a result: a :class:`~ivy_gpu.results.StageError` keeps its stage, anything
unexpected is recorded against the stage in progress. ``results.json`` is written
once, at the end, with the final status and the real processing time.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ivy_gpu.engines import backends
from ivy_gpu.fileio import folder_name
from ivy_gpu.frames.stabilize import stabilize_mode
from ivy_gpu.frames.stack import LoadedVideo, load_stack
from ivy_gpu.log import IvyGpuWarning, log
from ivy_gpu.params import StivParams, stiv_params_for
from ivy_gpu.pipeline.analysis import analyse
from ivy_gpu.pipeline.batch_csv import BATCH_FILES
from ivy_gpu.pipeline.lock import FolderLock
from ivy_gpu.pipeline.outputs import (
    OutputContext,
    remove_earlier_outputs,
    write_figures,
    write_outputs,
    write_result_json,
)
from ivy_gpu.pipeline.provenance import fingerprint, inputs_of, provenance, utc_now
from ivy_gpu.report.record import measurement_of
from ivy_gpu.results import ProcessingResult, StageError, VideoConfig
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig, as_scaffold
from ivy_gpu.stiv.quality import (
    QualityRules,
    quality_rules,
)

Progress = Callable[[str, float, str], None]

__all__ = [
    "StageError",
    "analyse",
    "process_video",
    "quality_rules",
    "run_video",
    "stiv_params_for",
]


def run_video(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    *,
    output_directory: Path | None = None,
    backend: str = "auto",
    stiv: StivParams | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    preload: Callable[[], LoadedVideo] | None = None,
    keep_frames: bool = False,
    output_name: str | None = None,
    rules: QualityRules | None = None,
    stabilize: str | None = None,
    figures: bool = True,
    defer: Callable[[Callable[[], ProcessingResult]], Future] | None = None,
    drawer: Callable[..., None] | None = None,
) -> ProcessingResult | Future:
    """Process one video; failures are recorded in the result (never raised).

    Results go to ``<output_directory>/<output_name or video stem>/``. ``preload``
    returns the stack when it was loaded elsewhere (a batch's prefetch); its
    exceptions are recorded like those of loading here. ``figures`` False writes the
    tables and ``results.json`` only (no PNG, and no best STIs gathered for them).

    ``defer`` (a batch's figure worker: ``submit(fn) -> Future``) takes the drawing off the
    critical path: the tables are written here, then ``defer`` gets the rest (the figures,
    then ``results.json`` last) and its future is returned, resolving to the result.
    ``drawer`` draws those deferred figures elsewhere (:attr:`OutputContext.drawer`).
    """
    t0 = time.perf_counter()
    result = ProcessingResult(
        video_path=video.video_path,
        water_surface_elevation=float(video.water_surface_elevation),
        alpha=float(video.alpha),
        measurement=measurement_of(video),
    )
    out = None
    if output_directory is not None:
        out = Path(output_directory) / (
            output_name or folder_name(video.video_path.stem, "video", BATCH_FILES)
        )
        result.output_directory = out
    loaded_elsewhere = 0.0
    later: OutputContext | None = None  # the figures, when deferred
    started = utc_now()
    rules = rules or QualityRules()
    try:
        result.error_stage = "read"
        engine = backends.get_engine(backend)
        params = stiv_params_for(scaffold, stiv)
        mode = stabilize_mode(scaffold, stabilize)
        result.inputs = inputs_of(video, params, rules, mode)
        if video.video_path.is_file():
            result.fingerprint = fingerprint(scaffold, video, params, rules, mode)
        if preload is not None:
            loaded = preload()
            loaded_elsewhere = loaded.seconds
        else:
            frames = out / "frames" if keep_frames and out is not None else None
            loaded = load_stack(scaffold, video, engine, frames, progress, params, mode)
        result.decoder = loaded.decoder
        sr = analyse(
            scaffold,
            video,
            loaded,
            engine,
            params,
            result,
            progress,
            return_sti=out is not None and figures,
            rules=rules,
        )
        first_frame = loaded.first_frame
        # the outputs need only the first frame: the stack goes before the figures are drawn
        # (in a batch the next video's stack is loading meanwhile)
        loaded = preload = None
        if out is not None:
            t = time.perf_counter()
            result.error_stage = "save"
            elsewhere = drawer if defer is not None else None  # only deferred drawings
            ctx = OutputContext(out, scaffold, result, sr, first_frame, figures, elsewhere)
            later = ctx if figures and defer is not None else None
            write_outputs(ctx, figures=later is None)
            result.stage_seconds["save"] = time.perf_counter() - t
        result.success, result.error_stage = True, None
    except StageError as exc:
        result.error_stage, result.error_message = exc.stage, str(exc)
    except Exception as exc:  # files, or unexpected: recorded against the stage in progress
        _failed(result, exc, out, video)
    if not result.success and result.error_stage is None:
        result.error_stage = "read"
    result.processing_time_seconds = time.perf_counter() - t0 + loaded_elsewhere
    finish = functools.partial(_finish, result, scaffold, video, out, str(backend), started,
                               progress)  # fmt: skip
    if later is not None and result.success:
        return defer(functools.partial(finish, later))
    return finish()


def _failed(result: ProcessingResult, exc: Exception, out: Path | None, video: VideoConfig):
    """Record ``exc`` against the stage in progress, one line naming the file.

    An ``OSError`` names the file it concerns (the output folder while saving, the video
    before) and its reason; anything else is unexpected and says its type.
    """
    result.success = False
    stage = result.error_stage
    if isinstance(exc, OSError):
        where = out if stage == "save" else video.video_path
        reason = exc.strerror or str(exc)
        result.error_message = f"{where}: {reason} (in the {stage} stage)"
    else:
        result.error_message = (
            f"{video.video_path}: unexpected {type(exc).__name__} in the {stage} stage: {exc}"
        )


def _finish(
    result: ProcessingResult,
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    out: Path | None,
    backend: str,
    started: str,
    progress: Progress | None,
    draw: OutputContext | None = None,
) -> ProcessingResult:
    """The end of a video: its figures (``draw``, when deferred), then ``results.json`` last.

    Also the provenance, the log lines and the last progress call.
    """
    if draw is not None:
        t = time.perf_counter()
        result.error_stage = "save"
        try:
            write_figures(draw)
            result.error_stage = None
        except Exception as exc:  # noqa: BLE001 - recorded, as in run_video
            _failed(result, exc, out, video)
        seconds = time.perf_counter() - t
        result.stage_seconds["figures"] = seconds
        result.processing_time_seconds += seconds
    if out is not None:
        result.provenance = provenance(
            scaffold, video, result.backend or str(backend), started, result.decoder
        )
        try:
            write_result_json(out, result, scaffold)
            if not result.success:  # results.json says failed first, then the old tables go
                remove_earlier_outputs(out)
        except OSError as exc:
            if result.success:
                result.success, result.error_stage = False, "save"
                result.error_message = f"{out}: cannot write results ({exc})"
    if result.success:
        log.info("%s: Q = %.5g m3/s in %.2f s", video.video_path, result.total_discharge,
                 result.processing_time_seconds)  # fmt: skip
    else:
        log.info("%s: failed at %s: %s", video.video_path, result.error_stage, result.error_message)
    for stage, seconds in result.stage_seconds.items():  # -v: where the time went
        log.info("%s: %s %.2f s", video.video_path.name, stage, seconds)
    if progress:
        progress("done", 1.0, "completed" if result.success else f"failed: {result.error_stage}")
    return result


def process_video(
    scaffold_path: str | Path | ScaffoldConfig,
    video_path: str | Path,
    water_surface_elevation: float,
    output_directory: str | Path | None = None,
    alpha: float = 0.85,
    start_time: float | str | None = None,
    end_time: float | str | None = None,
    frame_step: int = 1,
    max_frames: int | None = None,
    backend: str = "auto",
    progress: Progress | None = None,
    keep_frames: bool = False,
    refine: bool | None = None,
    stiv: StivParams | Mapping[str, Any] | None = None,
    compat: str | None = None,
    min_valid_fraction: float = 0.5,
    stabilize: str | None = None,
    figures: bool = True,
) -> ProcessingResult:
    """Turn one video into discharge.

    Parameters
    ----------
    scaffold_path : path or ScaffoldConfig
        The site's IVyTools scaffold.
    video_path : path
        The video.
    water_surface_elevation : float
        WSE of this video, **metres**.
    output_directory : path, optional
        Results go to ``<output_directory>/<video_stem>/``; none are written if omitted.
    alpha : float
        Surface-to-mean velocity coefficient.
    start_time, end_time : float or str, optional
        Seconds or ``MM:SS`` / ``HH:MM:SS[.fff]``.
    frame_step, max_frames : int
        Keep every k-th frame; stop after M frames.
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend.
    progress : callable, optional
        ``progress(stage, fraction, message)``.
    keep_frames : bool
        Also write the rectified frames as PNG under ``frames/``.
    refine : bool, optional
        Sub-step STIV refinement (default: the scaffold's setting, on unless it says off).
    stiv : StivParams or mapping, optional
        STIV settings, or overrides of the scaffold's (e.g. ``{"method": "gradient"}``).
    compat : {None, "ivytools"}
        ``"ivytools"``: STIV sampled exactly as the IVyTools python port (its search-line
        geometry, nearest sampling, no refinement); everything else stays corrected.
    min_valid_fraction : float
        Fail at stage ``stiv`` when fewer nodes than this fraction give a valid,
        unflagged velocity.
    stabilize : {None, "auto", "on", "off"}
        Camera-motion correction (:mod:`ivy_gpu.frames.stabilize`); None: ``on`` when the
        scaffold's ``ffmpeg_parameters.stabilize`` is set, else ``auto``.
    figures : bool
        Draw the PNG figures (``rectified_vectors.png``, ``stis.png``, ``section.png``).
        Off, a video writes its tables and ``results.json`` only, and earlier figures in
        its folder are removed; drawing them is a large share of a clip's time on the CPU
        (``docs/benchmarks.md``).

    Returns
    -------
    ProcessingResult
        ``success`` False with ``error_stage`` / ``error_message`` on failure. Each of
        its ``warnings`` is also issued as an :class:`~ivy_gpu.log.IvyGpuWarning`.

    Raises
    ------
    ValueError
        Unreadable scaffold, invalid arguments or an unusable backend (before any
        processing).
    """
    scaffold = as_scaffold(scaffold_path)
    backends.resolve_backend(backend)
    params = stiv_params_for(scaffold, stiv)
    if refine is not None:
        params = params.replace(refine=refine)
    params = params.with_compat(compat)
    rules = quality_rules(min_valid_fraction)
    mode = stabilize_mode(scaffold, stabilize)
    video = VideoConfig(
        Path(video_path),
        water_surface_elevation,
        alpha,
        start_time,  # VideoConfig parses seconds and MM:SS / HH:MM:SS[.fff]
        end_time,
        frame_step,
        max_frames,
    )
    out = None if output_directory is None else Path(output_directory)
    with FolderLock(out) if out is not None else contextlib.nullcontext():
        result = run_video(
            scaffold,
            video,
            output_directory=out,
            backend=backend,
            stiv=params,
            progress=progress,
            keep_frames=keep_frames,
            rules=rules,
            stabilize=mode,
            figures=figures,
        )
    for w in result.warnings:  # what the caller should look at, as Python warnings
        warnings.warn(f"{video.video_path.name}: {w}", IvyGpuWarning, stacklevel=2)
    return result
