"""Decode, rectify and stack: the frames of one video as the STIV engine reads them.

Decoded frames (:class:`~ivy_gpu.frames.video.FrameReader`) go straight through the remap
tables of (scaffold, WSE) (:class:`~ivy_gpu.scaffold.rectify.Rectifier`, cached) into a stack
allocated by the engine, in device memory on the GPU backend. The stack starts at
``config.STACK_INITIAL_FRAMES`` frames at most and doubles as needed, so a container
that announces no duration never reserves hours of frames.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ivy_gpu import config
from ivy_gpu.engines.base import Engine
from ivy_gpu.frames import nvdec
from ivy_gpu.frames.stabilize import (
    AUTO_THRESHOLD_PX,
    STABLE_INLIERS_MIN,
    MotionEstimator,
    MotionReport,
    compose,
    stable_mask,
    summarize,
)
from ivy_gpu.frames.track_xp import ArrayTracker
from ivy_gpu.frames.video import FrameReader, frame_interval
from ivy_gpu.hydraulics.grid import place_nodes
from ivy_gpu.params import MIN_FRAMES, StivParams
from ivy_gpu.results import StageError, VideoConfig
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.scaffold.rectify import Rectifier, check_frame_size

Progress = Callable[[str, float, str], None]

#: Stable-region masks per rectifier (:meth:`_Tracker._stable`), gone with the rectifier.
_STABLE_MASKS: weakref.WeakKeyDictionary[Rectifier, dict[tuple, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class LoadedVideo:
    """A rectified stack ready for STIV.

    Attributes
    ----------
    stack : array, shape (frames, rows, cols), uint8
        In the memory of the engine that loaded it.
    first_frame : ndarray
        The first rectified frame on the host (for the figures).
    times : ndarray
        Frame timestamps, seconds.
    dt : float
        Frame interval, seconds.
    rectifier : Rectifier
        The full plan view's tables (pixel size, geometry).
    warnings : list of str
    seconds : float
        Wall time spent loading.
    nodes : ndarray or None
        STIV nodes in full plan-view pixels (placed before decoding).
    offset : (x, y)
        Where the stack's first column and row lie in the full plan view (the band).
    motion : MotionReport or None
        Camera motion found (and corrected) while loading; None with ``stabilize="off"``.
    decoder : str
        Who decoded the frames: ``pyav``, ``nvdec``, or ``pyav (NVDEC not used: why)``.
    """

    stack: Any
    first_frame: np.ndarray
    times: np.ndarray
    dt: float
    rectifier: Rectifier
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    nodes: np.ndarray | None = None
    offset: tuple[int, int] = (0, 0)
    motion: MotionReport | None = None
    decoder: str = "pyav"


_RECTIFIERS: dict[tuple, tuple[ScaffoldConfig, Rectifier]] = {}


def rectifier_for(scaffold: ScaffoldConfig, wse_m: float) -> Rectifier:
    """Remap tables for (scaffold, WSE), cached so a batch at one WSE builds them once.

    The cache holds the scaffold itself, so its ``id`` cannot be reused while cached.
    """
    if scaffold.calibration_size is None:
        raise StageError(
            "rectify",
            f"{scaffold.path}: the scaffold records no calibration frame "
            "size (video_metadata or calibration image)",
        )
    key = (id(scaffold), round(float(wse_m), 6))
    entry = _RECTIFIERS.get(key)
    if entry is None or entry[0] is not scaffold:
        if len(_RECTIFIERS) >= config.RECTIFIER_CACHE_SIZE:
            _RECTIFIERS.clear()
        try:
            rect = Rectifier(scaffold.rectification, wse_m, scaffold.calibration_size)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # degenerate
            reason = str(exc).removeprefix(f"{scaffold.path}: ")
            raise StageError(
                "rectify",
                f"{scaffold.path}: cannot build the remap tables at WSE "
                f"{float(wse_m):.3f} m ({reason})",
            ) from None
        entry = (scaffold, rect)
        _RECTIFIERS[key] = entry
    return entry[1]


def site_nodes(scaffold: ScaffoldConfig, shape: tuple[int, int]) -> np.ndarray:
    """The scaffold's STIV nodes on a plan view of ``shape`` (rows, cols)."""
    return place_nodes(
        scaffold.cross_section_line,
        scaffold.num_grid_points,
        shape,
        scaffold.results_grid,
        scaffold.mask_polygons,
    )


def stiv_band(
    scaffold: ScaffoldConfig, rect: Rectifier, params: StivParams
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The STIV nodes and the band of the plan view their search lines read.

    The band covers the fan widened by the stride's extra angles and the blur margin, so
    everything STIV, the stride and the quality windows read lies inside it. None when no
    line fits in the image (STIV then reports every node invalid).
    """
    from ivy_gpu.stiv.driver import STRIDE_FAN
    from ivy_gpu.stiv.lines import line_geometry

    rows, cols = rect.output_shape
    nodes = site_nodes(scaffold, rect.output_shape)
    wide = params.replace(phi_range=min(180.0, params.phi_range + STRIDE_FAN * params.d_phi))
    lines = line_geometry(nodes, wide, cols, rows)
    if not lines.pairs.size:
        return nodes, None
    y_lo, y_hi, x_lo, x_hi = lines.window
    m = 2
    return nodes, (
        max(0, y_lo - m),
        min(rows - 1, y_hi + m),
        max(0, x_lo - m),
        min(cols - 1, x_hi + m),
    )


def load_stack(
    scaffold: ScaffoldConfig,
    video: VideoConfig,
    engine: Engine,
    keep_frames: Path | None = None,
    progress: Progress | None = None,
    params: StivParams | None = None,
    stabilize: str | None = None,
) -> LoadedVideo:
    """Decode, convert to gray and rectify the selected frames into one stack.

    With ``params`` (and ``config.RECTIFY_BAND``) the nodes are placed first and only the
    band of the plan view their search lines read is rectified; the first frame is
    rectified in full for the figures. ``stabilize`` (``auto``, ``on``, ``off``) estimates
    each frame's camera motion as it streams and composes its inverse into that frame's
    lookup (:mod:`ivy_gpu.frames.stabilize`; ``off`` only measures, to warn); no second pass over
    the video. ``None`` skips motion estimation altogether.

    Raises
    ------
    StageError
        ``read`` for a missing, corrupt or too short video; ``rectify`` for a frame
        size that differs from the calibration image or tables that cannot be built;
        ``grid`` for nodes that cannot be placed.
    """
    t0 = time.perf_counter()
    path = video.video_path
    try:
        reader = FrameReader(
            path, video.start_time, video.end_time, video.frame_step, video.max_frames
        )
    except ValueError as exc:
        raise StageError("read", str(exc)) from None
    try:
        rect = rectifier_for(scaffold, video.water_surface_elevation)
        check_frame_size((reader.info.width, reader.info.height), rect.frame_size, str(path))
    except ValueError as exc:
        raise StageError("rectify", str(exc)) from None
    nodes, band, tables = None, None, rect
    if params is not None:
        try:
            nodes, band = stiv_band(scaffold, rect, params)
        except ValueError as exc:
            raise StageError("grid", f"{scaffold.path}: {exc}") from None
        if band is not None and config.RECTIFY_BAND:
            tables = rect.band(*band)
        else:
            band = None
    try:
        nvdec_wanted, why_not = nvdec.wanted(engine)
        make_tracker = None
        if stabilize is not None:
            config.motion_tracker()  # a bad IVY_GPU_MOTION is said before any decoding
            kernels = bool(getattr(engine, "use_cuda_kernels", False))
            xp = getattr(engine, "xp", np)
            make_tracker = functools.partial(_Tracker, scaffold, rect, stabilize, xp, kernels)
    except ValueError as exc:  # IVY_GPU_MOTION, IVY_GPU_DECODER
        raise StageError("read", str(exc)) from None
    fill = functools.partial(
        _fill, engine=engine, tables=tables, rect=rect, band=band, make_tracker=make_tracker,
        keep_frames=keep_frames, progress=progress,
    )  # fmt: skip
    decoder = "pyav"
    if why_not is not None:  # installed, but it cannot load
        decoder = f"pyav (NVDEC not used: {why_not})"
        nvdec.say_once(f"{path}: NVDEC not used ({why_not}); decoding with PyAV")
    try:
        if nvdec_wanted:
            try:
                nv = nvdec.NvdecReader(
                    path, video.start_time, video.end_time, video.frame_step, video.max_frames,
                    xp=engine.xp,
                )  # fmt: skip
                stack, times, first, tracker = fill(nv)
                reader, decoder = nv, "nvdec"
            except Exception as exc:  # noqa: BLE001 - NvdecUnusable, or a device frame's fault
                why = str(exc)
                if not isinstance(exc, nvdec.NvdecUnusable):
                    why = f"{type(exc).__name__}: {why}"
                decoder = f"pyav (NVDEC not used: {why})"
                nvdec.say_once(f"{path}: NVDEC not used ({why}); decoding with PyAV")
        if decoder != "nvdec":
            stack, times, first, tracker = fill(reader)
    except ValueError as exc:
        raise StageError("read", str(exc)) from None
    rows, cols = stack.shape[1:]
    n = len(times)
    if n < MIN_FRAMES:
        raise StageError(
            "read",
            f"{path}: only {n} frames in the selected time range "
            f"(STIV needs at least {MIN_FRAMES})",
        )
    if stack.shape[0] > n + max(2, n // 8):  # a grown buffer: keep n frames, free the rest
        trimmed = engine.empty((n, rows, cols), np.uint8)
        trimmed[...] = stack[:n]
        stack = trimmed
    elif stack.shape[0] > n:  # a few frames over the estimate: a view, not another copy
        stack = stack[:n]
    engine.synchronize()
    times_arr = np.asarray(times)
    dt, warn = frame_interval(times_arr, video.frame_step, reader.info.fps)
    warnings = [warn] if warn else []
    warnings += _container_warnings(reader, video)
    motion = tracker.report() if tracker else None
    if motion is not None:
        warnings += motion.notes
    return LoadedVideo(
        stack=stack,
        first_frame=first if first is not None else engine.to_host(stack[0]),
        times=times_arr,
        dt=dt,
        rectifier=rect,
        warnings=warnings,
        seconds=time.perf_counter() - t0,
        nodes=nodes,
        offset=(0, 0) if band is None else (band[2], band[0]),
        motion=motion,
        decoder=decoder,
    )


def _fill(
    reader: FrameReader,
    engine: Engine,
    tables: Rectifier,
    rect: Rectifier,
    band: tuple | None,
    make_tracker: Callable[..., _Tracker] | None,
    keep_frames: Path | None,
    progress: Progress | None,
) -> tuple[Any, list[float], np.ndarray | None, _Tracker | None]:
    """Decode, track and rectify ``reader``'s frames into a new stack.

    Returns the stack (possibly longer than the frames), their times, the first frame
    rectified in full (with a band) and the motion tracker.
    """
    rows, cols = tables.output_shape
    expected = reader.expected_frames()
    on_device = bool(getattr(reader, "on_device", False))
    tracker = None
    if make_tracker is not None:
        tracker = make_tracker(engine.to_host if on_device else None)
    stack = engine.empty((min(expected, config.STACK_INITIAL_FRAMES), rows, cols), np.uint8)
    times: list[float] = []
    first = None
    for i, t, luma in reader:
        if i >= stack.shape[0]:
            grown = engine.empty((2 * stack.shape[0], rows, cols), np.uint8)
            grown[: stack.shape[0]] = stack
            stack = grown
        moved = tracker.tables(luma, tables, i) if tracker else tables
        engine.remap(luma, moved, stack[i], on_device)
        done = [i]
        for j, held, redo in tracker.redo() if tracker else ():
            engine.remap(held, redo, stack[j], on_device)  # held while sampling; it moved
            done.append(j)
        if first is None and band is not None:
            first = rect.rectify(engine.to_host(luma) if on_device else luma)
        times.append(t)
        if keep_frames is not None:
            import cv2

            keep_frames.mkdir(parents=True, exist_ok=True)
            for j in done:
                cv2.imwrite(str(keep_frames / f"t{j:05d}.png"), engine.to_host(stack[j]))
        if progress and i % 10 == 0:
            progress("read", min(1.0, (i + 1) / expected), f"frame {i + 1}")
    return stack, times, first, tracker


class _Tracker:
    """Per-frame camera motion against the first frame, and the tables that undo it.

    ``auto`` first looks at every :data:`~ivy_gpu.config.MOTION_SAMPLE_STEP`-th frame only:
    a still camera then costs an estimate per step (and a copy of the frames in between).
    At the first sample that moved more than the threshold it tracks every frame from then
    on, and goes back over the frames held since the last sample (:meth:`redo`: the loader
    rectifies them again with their own correction); so a camera that moves from its first
    steps is corrected frame by frame exactly as when every frame is estimated.
    """

    def __init__(
        self,
        scaffold: ScaffoldConfig,
        rect: Rectifier,
        mode: str,
        xp: ModuleType = np,
        kernels: bool = False,
        host: Callable[[Any], np.ndarray] | None = None,
    ) -> None:
        self.scaffold, self.rect, self.mode = scaffold, rect, mode
        #: Copies a device frame to the host for the OpenCV tracker (frames decoded on the GPU).
        self.host = host
        self.xp, self.kernels, self.how = xp, kernels, config.motion_tracker()
        self.estimator: MotionEstimator | ArrayTracker | None = None
        self.shifts: list[float] = []
        self.rotations: list[float] = []
        self.inliers: list[float] = []
        self.corrected = 0
        self.failed = 0
        self.every = config.MOTION_SAMPLE_STEP if mode == "auto" else 1
        self.seen = 0
        self.held: list[tuple[int, np.ndarray]] = []  # frames since the last sample
        self._redo: list[tuple[int, np.ndarray, Rectifier]] = []

    def _stable(self, shape: tuple[int, int]) -> np.ndarray:
        """The stable region (0/255), built once per (site, WSE) tables and frame shape.

        A batch at one WSE shares the rectifier (:func:`rectifier_for`), so its videos
        share the mask too (about 0.1 s of CPU at 1080p). The mask is read-only.
        """
        import cv2

        poly = self.scaffold.project.get("stabilization_polygon")
        key = (
            tuple(shape),
            None if not poly else tuple(np.asarray(poly, float).ravel().tolist()),
            tuple(np.asarray(self.scaffold.cross_section_line, float).ravel().tolist()),
        )
        masks = _STABLE_MASKS.setdefault(self.rect, {})
        if key not in masks:
            if poly:
                mask = np.zeros(shape, np.uint8)
                cv2.fillPoly(mask, [np.asarray(poly, np.int32).reshape(-1, 2)], 255)
            else:
                mask = stable_mask(self.rect, self.scaffold.cross_section_line)
            mask.flags.writeable = False
            masks[key] = mask
        return masks[key]

    def tables(self, luma: np.ndarray, tables: Rectifier, index: int = 0) -> Rectifier:
        """The tables for frame ``index`` (the reference's, or composed with its motion)."""
        if self.estimator is None:
            stable = self._stable(luma.shape)
            if self.how == "array":  # on the engine's namespace: the device for the GPU engine
                self.estimator = ArrayTracker(luma, stable, self.xp, kernels=self.kernels)
            else:
                self.estimator = MotionEstimator(self._for_estimator(luma), stable)
            return tables
        if self.every > 1:  # auto, still sampling
            self.seen += 1
            if self.seen % self.every:
                self.held.append((index, luma))  # the reader's own array, not reused
                return tables  # still until a sample says otherwise (then redone)
            n_corrected = self.corrected
            out = self._track(luma, tables)
            if self.corrected > n_corrected:  # it moved: every frame from now on
                self.every = 1
                for j, held in self.held:
                    n = self.corrected
                    redo = self._track(held, tables)
                    if self.corrected > n:
                        self._redo.append((j, held, redo))
            self.held.clear()
            return out
        return self._track(luma, tables)

    def redo(self) -> list[tuple[int, np.ndarray, Rectifier]]:
        """Frames (index, luma, tables) held while sampling that turned out to need correcting."""
        out, self._redo = self._redo, []
        return out

    def _for_estimator(self, luma: Any) -> Any:
        """``luma`` where the estimator reads it: the host for OpenCV's, else as it is."""
        return self.host(luma) if self.host is not None and self.how != "array" else luma

    def _track(self, luma: np.ndarray, tables: Rectifier) -> Rectifier:
        a, inl = self.estimator.estimate(self._for_estimator(luma))
        if a is None:
            self.failed += 1
            return tables
        shift = self.estimator.displacement(a)
        self.shifts.append(shift)
        self.rotations.append(float(np.degrees(np.arctan2(a[1, 0], a[0, 0]))))
        self.inliers.append(inl)
        if self.mode == "on" or (self.mode == "auto" and shift > AUTO_THRESHOLD_PX):
            self.corrected += 1
            return compose(tables, a)
        return tables

    def report(self) -> MotionReport:
        features = 0 if self.estimator is None else len(self.estimator.points)
        r = summarize(
            self.mode, self.shifts, self.rotations, self.inliers, self.corrected, features
        )
        if self.mode == "off" and r.rms_px > AUTO_THRESHOLD_PX:
            r.notes.append(
                f"the camera moved {r.rms_px:.2f} px RMS (max {r.max_px:.2f} px) and "
                "stabilization is off: velocities may be wrong (use --stabilize auto)"
            )
        if r.corrected_frames and r.inlier_fraction < STABLE_INLIERS_MIN:
            r.notes.append(
                f"only {100 * r.inlier_fraction:.0f} % of the stable region's features follow "
                "one camera motion (RANSAC inliers): it holds things that move (vegetation, "
                "water, people), so the correction, and the velocities, are less sure; draw a "
                "stabilization_polygon around rigid features (site create or site from-pyorc "
                "--stable-polygon)"
            )
        if self.failed:
            r.notes.append(
                f"camera motion could not be estimated on {self.failed} frame(s) "
                f"({features} stable-region features): those frames are not stabilized"
            )
        return r


def _container_warnings(reader: FrameReader, video: VideoConfig) -> list[str]:
    """A truncated video and an ignored display rotation, in words."""
    out = []
    announced = reader.info.frame_count
    whole = video.start_time is None and video.end_time is None and video.max_frames is None
    if whole and announced and reader.decoded and reader.decoded < announced - 1:
        out.append(
            f"{video.video_path}: decoded {reader.decoded} frames but the container announces "
            f"{announced}: the video may be truncated"
        )
    if reader.rotation % 360:
        out.append(
            f"{video.video_path}: the container asks for a {reader.rotation} deg display "
            "rotation, which is ignored (frames are used as stored, as the calibration must be)"
        )
    return out
