"""NVDEC through PyNvVideoCodec: each frame's luma decoded straight into device memory.

On the GPU engine a PyAV frame is decoded on the CPU, copied to pinned memory and uploaded;
NVDEC decodes on the GPU's own video engines and its NV12 surface already holds the luma
plane STIV reads (issue 25 item 5). PyAV stays the reference, and NVDEC is used only where
it is shown to give the same frames:

- the binding must import (it needs the driver's video libraries) and the engine must be a
  GPU engine; ``IVY_GPU_DECODER=pyav`` switches it off (:func:`ivy_gpu.config.video_decoder`);
- the timestamps are PyAV's, read from the container's packets without decoding, and the
  frames selected from them by the rule :class:`~ivy_gpu.frames.video.FrameReader` applies
  (:class:`~ivy_gpu.frames.video.FrameSelection`);
- the decoder runs from the file's first frame (no seeking), must count as many frames as
  the container has packets, and its first frame's luma must equal PyAV's bit for bit (H.264
  and HEVC decoding is exact) before any frame is handed out.

Anything else (a frame layout this module does not know, a decoder error mid-way, an error
of PyAV's own checks) raises :class:`NvdecUnusable`; :func:`ivy_gpu.frames.stack.load_stack`
then decodes the video again with PyAV and says so once per reason. ``make gpu-check``
records what a decoded frame is on the device (:mod:`ivy_gpu.benchmarks.nvdec_probe`).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ivy_gpu import config
from ivy_gpu.engines.base import host_array
from ivy_gpu.frames.video import FrameReader, _luma, _open
from ivy_gpu.log import IvyGpuWarning, log

#: Frames asked of the decoder at a time.
BATCH_FRAMES = 32


class NvdecUnusable(RuntimeError):
    """NVDEC cannot decode this video as PyAV does (the reason is the message)."""


@functools.cache
def _import() -> tuple[Any, str | None]:
    try:
        import PyNvVideoCodec as nvc  # noqa: N813 - the binding's own name
    except Exception as exc:  # noqa: BLE001 - ImportError, or the driver's RuntimeError
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return None, f"PyNvVideoCodec unavailable ({type(exc).__name__}: {first})"
    return nvc, None


def binding() -> tuple[Any, str | None]:
    """PyNvVideoCodec and None, or None and why it cannot be used (imported once)."""
    return _import()


def on_gpu(engine: Any) -> bool:
    """Whether ``engine`` keeps its stack in GPU memory (a CuPy engine)."""
    return getattr(getattr(engine, "xp", None), "__name__", "") == "cupy"


def wanted(engine: Any) -> tuple[bool, str | None]:
    """Whether a video for ``engine`` is for NVDEC, and why not where a user would ask.

    ``(True, None)``: NVDEC. ``(False, None)``: PyAV, as expected (a CPU engine,
    ``IVY_GPU_DECODER=pyav``, or no PyNvVideoCodec installed). ``(False, why)``: PyAV although
    PyNvVideoCodec is installed (it cannot load: no driver video library, say).

    Raises
    ------
    ValueError
        ``IVY_GPU_DECODER`` is not one of :data:`ivy_gpu.config.VIDEO_DECODERS`.
    """
    if config.video_decoder() != "auto" or not on_gpu(engine):
        return False, None
    nvc, why = binding()
    if nvc is not None:
        return True, None
    return False, None if why is None or "ModuleNotFoundError" in why else why


_SAID: set[str] = set()


def say_once(line: str) -> None:
    """Warn with ``line`` (and log it) the first time its reason, after the file, comes up."""
    reason = line.split(": ", 1)[-1]
    if reason not in _SAID:
        _SAID.add(reason)
        warnings.warn(line, IvyGpuWarning, stacklevel=3)
        log.warning("%s", line)


def luma_plane(frame: Any, height: int, width: int) -> Any:
    """The ``height x width`` luma of a decoded frame array, whatever its native layout.

    NV12 comes as one ``(1.5 H, W)`` array (luma rows, then the interleaved chroma rows), a
    planar surface as ``(3, H, W)`` or ``(H, W)``; rows may be padded to a pitch wider than
    the frame. Returns a view. Raises ``ValueError`` for any other shape.
    """
    shape = tuple(frame.shape)
    if len(shape) == 2 and shape[0] in (height, height * 3 // 2) and shape[1] >= width:
        return frame[:height, :width]
    if len(shape) == 3 and shape[0] in (1, 2, 3) and shape[1] == height and shape[2] >= width:
        return frame[0, :, :width]
    raise ValueError(f"decoded frame of shape {shape} is not a {height}x{width} luma layout")


def device_array(xp: ModuleType, frame: Any) -> Any:
    """An ``xp`` view of a decoded frame: its CUDA array interface, else DLPack."""
    if hasattr(frame, "__cuda_array_interface__"):
        return xp.asarray(frame)
    return xp.from_dlpack(frame)


def open_decoder(nvc: Any, path: Path) -> Any:
    """A ``SimpleDecoder`` on GPU 0 of this process, native output in device memory."""
    return nvc.SimpleDecoder(
        str(path), gpu_id=0, use_device_memory=True, output_color_type=nvc.OutputColorType.NATIVE
    )


def packet_times(path: Path) -> np.ndarray:
    """Presentation times (s) of the first video stream's frames, from its packets, sorted.

    Raises
    ------
    NvdecUnusable
        A packet without a timestamp (the frames could not be timed as PyAV times them).
    """
    with _open(path) as container:
        st = container.streams.video[0]
        tb = st.time_base or Fraction(1, 1)
        pts = []
        for packet in container.demux(st):
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            if packet.pts is None:
                raise NvdecUnusable("a packet has no timestamp")
            pts.append(packet.pts)
    return np.sort(np.asarray([float(p * tb) for p in pts], float))


class NvdecReader(FrameReader):
    """:class:`~ivy_gpu.frames.video.FrameReader`'s selection, frames decoded by NVDEC.

    Yields ``(index, time_s, luma)`` with ``luma`` a new ``xp`` (device) array of its own.
    The decoder runs from the first frame of the file (no seeking: frame ``k`` of the
    decoder is the ``k``-th timestamp of the container), and that first frame must be
    PyAV's before anything is handed out.

    Raises
    ------
    NvdecUnusable
        While iterating: before the first frame if the decoder and PyAV disagree (or the
        binding is missing), or later if the decoder fails.
    """

    #: Frames come in device memory (the engine's ``remap`` must not upload them).
    on_device = True

    def __init__(self, path: str | Path, *args: Any, xp: ModuleType, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.xp = xp

    def _plan(self, times: np.ndarray) -> dict[int, tuple[int, float]]:
        """``{frame number: (index, time)}`` of the kept frames."""
        sel = self.selection()
        picks = {}
        for k, t in enumerate(times):
            if sel.keep(t):
                picks[k] = (sel.kept - 1, float(t))
            if sel.done:
                break
        self.decoded = sel.seen
        return picks

    def _first_frame(self, t0: float) -> np.ndarray:
        """PyAV's luma of the file's first frame (at ``t0`` s), and the rotation it reads.

        Decoded on this thread without frame threads: a frame-threaded decoder would decode
        a frame per thread before handing out the first.
        """
        with _open(self.path) as container:
            st = container.streams.video[0]
            st.thread_type = "NONE"
            tb = st.time_base or Fraction(1, 1)
            for frame in container.decode(st):
                self.rotation = int(getattr(frame, "rotation", 0) or 0)
                t = float(frame.pts * tb) if frame.pts is not None else None
                if t != t0:
                    raise NvdecUnusable(f"the first frame is at {t} s for PyAV, {t0} s here")
                return _luma(frame)
        raise NvdecUnusable("PyAV decodes no frame")

    def __iter__(self) -> Iterator[tuple[int, float, Any]]:
        nvc, why = binding()
        if nvc is None:
            raise NvdecUnusable(why)
        with _unusable_on_error():
            times = packet_times(self.path)
            picks = self._plan(times)
            if not picks:
                return
            reference: np.ndarray | None = self._first_frame(float(times[0]))
            dec = open_decoder(nvc, self.path)
            if len(dec) != len(times):
                raise NvdecUnusable(f"the decoder counts {len(dec)} frames, PyAV {len(times)}")
        h, w, last = self.info.height, self.info.width, max(picks)
        k = 0
        while k <= last:
            kept = []
            with _unusable_on_error():
                batch = dec.get_batch_frames(min(BATCH_FRAMES, last - k + 1))
                if not batch:
                    raise NvdecUnusable(f"the decoder stopped at frame {k}")
                for frame in batch:
                    if k in picks or reference is not None:
                        luma = luma_plane(device_array(self.xp, frame), h, w).copy()
                        if reference is not None:  # frame 0, before anything is handed out
                            _check(luma, reference)
                            reference = None
                        if k in picks:
                            kept.append((*picks[k], luma))
                    k += 1
            yield from kept


@contextlib.contextmanager
def _unusable_on_error() -> Iterator[None]:
    """Any error of the binding, of PyAV's checks or of a frame's layout: NvdecUnusable."""
    try:
        yield
    except NvdecUnusable:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV decodes the video again, and says why
        raise NvdecUnusable(f"{type(exc).__name__}: {exc}") from None


def _check(luma: Any, reference: np.ndarray) -> None:
    """Raise :class:`NvdecUnusable` unless the device ``luma`` is ``reference`` to the bit."""
    host = host_array(luma)
    if host.shape != reference.shape:
        raise NvdecUnusable(f"the first frame is {host.shape}, PyAV's {reference.shape}")
    if not np.array_equal(host, reference):
        diff = int(np.abs(host.astype(int) - reference.astype(int)).max())
        raise NvdecUnusable(f"the first frame differs from PyAV's (largest difference {diff})")
