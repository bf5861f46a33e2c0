"""A station: clips processed as they arrive in a folder, the record kept current.

:class:`Station` polls an incoming folder. A clip is taken once it is complete: its last
change is ``settle_s`` old (or a sidecar ``<clip>.done`` says so) **and** its container is
whole (an MP4/MOV's boxes all end inside the file and it has its index, ``moov``; other
containers must open and hold a video stream). A copy that stalls halfway stays waiting,
however long it sits there. Each clip's time comes from a ``YYYYMMDD-HHMMSS`` stamp in its
name (e.g. ``cam1_20260501-101500.mp4``, the USGS camera convention), else the container's
``creation_time``; its WSE from the gauge's stage at that time plus the datum, or a fixed
WSE. Every cycle with new clips runs the batch path over all clips seen (those already done
kept as they are), so ``batch_summary.csv``, ``record.nc`` and ``report.html`` always hold
the whole record. The output folder is locked for the station's life; after a restart the
fingerprint resume (:func:`ivy_gpu.pipeline.batch.BatchOrchestrator`) keeps what is done.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ivy_gpu.log import log
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.batch import BatchOrchestrator
from ivy_gpu.pipeline.batch_csv import BatchRow
from ivy_gpu.pipeline.lock import FolderLock
from ivy_gpu.results import BatchResult, ProcessingResult

#: Containers checked box by box (ISO base media: MP4, MOV, M4V, 3GP).
ISO_SUFFIXES = (".mp4", ".mov", ".m4v", ".3gp")
#: The suffix of a sidecar that says a clip is complete (``clip.mp4.done``).
SIDECAR = ".done"


def iso_box_problem(path: Path) -> str | None:
    """Why an ISO base-media file (MP4/MOV) is not whole, None when it is.

    Walks the top-level boxes: each must end inside the file, and the file must hold its
    index (``moov``, or the fragments' ``moof``) and media (``mdat``).
    """
    try:
        size = path.stat().st_size
        seen = set()
        with path.open("rb") as fh:
            pos = 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    return f"a box header is cut at byte {pos}"
                length, kind = struct.unpack(">I4s", head[:8])
                if length == 1:
                    if len(head) < 16:
                        return f"a box header is cut at byte {pos}"
                    length = struct.unpack(">Q", head[8:16])[0]
                elif length == 0:  # the box runs to the end of the file
                    length = size - pos
                if length < 8:
                    return f"box {kind!r} at byte {pos} has an impossible size {length}"
                if pos + length > size:
                    name = kind.decode("latin-1")
                    return f"box '{name}' ends at byte {pos + length}, past the end ({size})"
                seen.add(kind)
                pos += length
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if b"moov" not in seen and b"moof" not in seen:
        return "no 'moov' box (the index is written last: the copy is not finished)"
    if b"mdat" not in seen:
        return "no 'mdat' box (no media)"
    return None


def container_problem(path: Path) -> str | None:
    """Why a clip cannot be taken yet (an incomplete container), None when it can."""
    if path.suffix.lower() in ISO_SUFFIXES:
        return iso_box_problem(path)
    try:
        import av

        with av.open(str(path)) as c:
            if not c.streams.video:
                return "no video stream"
    except Exception as exc:  # noqa: BLE001 - any decoder complaint means "not yet"
        return f"does not open ({type(exc).__name__})"
    return None


def container_time(path: Path) -> str | None:
    """The container's ``creation_time`` (ISO 8601), None when it has none."""
    try:
        import av

        with av.open(str(path)) as c:
            text = c.metadata.get("creation_time") or ""
    except Exception:  # noqa: BLE001
        return None
    return text.strip() or None


class DoneClip(NamedTuple):
    """A processed clip: the file as it was then, the row it was processed with, its result.

    The row keeps the clip's time and WSE, so a long record's cycles do not look them up
    again (nor open the container).
    """

    size: int
    mtime_ns: int
    row: BatchRow
    result: ProcessingResult


@dataclass
class StationState:
    """What the station knows between cycles."""

    done: dict[Path, DoneClip] = field(default_factory=dict)
    waiting: dict[Path, str] = field(default_factory=dict)
    cycles: int = 0


class Station:
    """Watch ``incoming`` and process each complete clip once into ``output``.

    Parameters
    ----------
    scaffold : ScaffoldConfig
    incoming, output : path
    pattern : str
        Glob of the clips in ``incoming`` (``*.mp4``).
    wse_lookup : callable, optional
        ``(row, video_path) -> (wse_m, why)``: the WSE of a clip at its time
        (:func:`ivy_gpu.report.record.stage_lookup`).
    wse_m : float, optional
        A fixed WSE (m) for every clip, when there is no gauge stage.
    settle_s : float
        A clip is complete once unchanged this long (and its container whole).
    sidecar : bool
        Take a clip only once ``<clip>.done`` exists (and its container is whole).
    orchestrator : dict
        Keyword arguments of :class:`~ivy_gpu.pipeline.batch.BatchOrchestrator` (backend,
        gauge, tz, figures, client, ...).
    progress : callable, optional
        ``progress(result)`` after each clip processed.
    """

    def __init__(
        self,
        scaffold: Any,
        incoming: str | Path,
        output: str | Path,
        *,
        pattern: str = "*.mp4",
        wse_lookup: Callable[[Any, Path], tuple[float | None, str]] | None = None,
        wse_m: float | None = None,
        settle_s: float = 10.0,
        sidecar: bool = False,
        orchestrator: dict | None = None,
        progress: Callable[[ProcessingResult], None] | None = None,
    ) -> None:
        if wse_lookup is None and wse_m is None:
            raise ValueError("a station needs the WSE: a gauge with --stage-datum, or --wse")
        self.incoming, self.out = Path(incoming), Path(output)
        if not self.incoming.is_dir():
            raise ValueError(f"{self.incoming}: not a folder")
        self.pattern, self.settle_s, self.sidecar = pattern, float(settle_s), sidecar
        self.wse_lookup, self.wse_m = wse_lookup, wse_m
        self.on_result = progress
        self.batch = BatchOrchestrator(
            scaffold, self.out, resume=True, progress=self._progress, **(orchestrator or {})
        )
        self.state = StationState()
        self.last: BatchResult | None = None

    def _progress(self, k: int, total: int, result: ProcessingResult) -> None:
        if self.on_result is not None and not result.reused:
            self.on_result(result)

    # ------------------------------------------------------------------ finding clips
    def ready(self, now: float | None = None) -> list[Path]:
        """The clips complete now and not yet processed (in name order)."""
        now = time.time() if now is None else now
        out = []
        for path in sorted(self.incoming.glob(self.pattern)):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            known = self.state.done.get(path)
            if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue  # done, and unchanged since
            why = self._not_complete(path, st, now)
            if why is None:
                self.state.waiting.pop(path, None)
                out.append(path)
            elif self.state.waiting.get(path) != why:
                self.state.waiting[path] = why
                log.info("station: waiting for %s: %s", path.name, why)
        return out

    def _not_complete(self, path: Path, st: Any, now: float) -> str | None:
        if self.sidecar:
            if not path.with_name(path.name + SIDECAR).is_file():
                return f"no {path.name + SIDECAR} yet"
        elif now - st.st_mtime < self.settle_s:
            return f"changed {now - st.st_mtime:.0f} s ago (settles after {self.settle_s:g} s)"
        return container_problem(path)

    def row(self, path: Path, line: int) -> BatchRow:
        """The batch row of a clip: its time (name stamp or container) and WSE."""
        from ivy_gpu.report.record import name_stamp

        date = clock = None
        if name_stamp(path) is None:
            stamp = container_time(path)
            if stamp:
                date, _, clock = stamp.replace(" ", "T").partition("T")
        cfg_time = {"measurement_date": date, "measurement_time": clock or None}
        wse, why = self.wse_m, ""
        if self.wse_lookup is not None:
            from types import SimpleNamespace

            wse, why = self.wse_lookup(SimpleNamespace(**cfg_time), path)
        if wse is None:
            error = f"{path}: water_surface_elevation: {why}"
            return BatchRow(line, path, "", None, error, wse_source="gauge")
        source = "gauge" if self.wse_lookup is not None else "fixed"
        cfg = VideoConfig(path, float(wse), **cfg_time)
        return BatchRow(line, path, f"{wse:.6g}", cfg, wse_source=source)

    # ------------------------------------------------------------------ processing
    def cycle(self, now: float | None = None) -> BatchResult | None:
        """Process the clips that became ready; None when there were none."""
        new = self.ready(now)
        if not new:
            return None
        self.state.cycles += 1
        paths = sorted({*self.state.done, *new}, key=self._when)
        kept = {k: self.state.done[p] for k, p in enumerate(paths) if p not in new}
        rows = [
            dataclasses.replace(kept[k].row, line=k + 2) if k in kept else self.row(p, k + 2)
            for k, p in enumerate(paths)
        ]
        done = {k: clip.result for k, clip in kept.items()}
        result = self.batch.run(rows, done=done, locked=True)
        for path, row, r in zip(paths, rows, result.video_results, strict=True):
            try:
                st = path.stat()
            except OSError:
                continue
            self.state.done[path] = DoneClip(st.st_size, st.st_mtime_ns, row, r)
        self.last = result
        return result

    def _when(self, path: Path) -> tuple:
        from ivy_gpu.report.record import name_stamp

        return (name_stamp(path) or "", path.name)

    def run(
        self,
        poll_s: float = 5.0,
        stop: Callable[[], bool] | None = None,
        once: bool = False,
    ) -> BatchResult | None:
        """Poll until ``stop()`` (or once), holding the output folder's lock throughout."""
        self.out.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.out):
            while True:
                self.cycle()
                if once or (stop is not None and stop()):
                    return self.last
                deadline = time.monotonic() + poll_s
                while time.monotonic() < deadline:
                    if stop is not None and stop():
                        return self.last
                    time.sleep(min(0.2, poll_s))
