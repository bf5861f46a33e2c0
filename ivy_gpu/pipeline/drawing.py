"""A batch's figures drawn in worker processes, beside the videos still computing.

Matplotlib holds the interpreter lock while it lays out and draws, so threads would take
turns; on a machine with cores to spare a local batch draws each video's figures in one of
a few processes instead (:func:`ivy_gpu.config.figure_workers`). The figure thread of
:class:`~ivy_gpu.pipeline.executors.LocalExecutor` still saves the figure inputs and writes
``results.json`` last; it hands only the drawing to a process and waits for it.

Each process is a fresh interpreter running :func:`main`, started anew (never a fork of a
process that holds decoder threads or a GPU context, and, unlike ``multiprocessing``'s
``spawn``, without importing the caller's main script again, so a script needs no
``__main__`` guard). It reads pickled jobs on its standard input and answers each on its
standard output (its own prints go to standard error). A job holds the STIs as bytes
(:func:`~ivy_gpu.pipeline.outputs.pack_stis`, the values the thread would draw) and the
caller's changed matplotlib settings, so the PNGs are the same files whichever draws them.
If a process dies, every figure from then on is drawn in the batch's process, with one
warning.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import queue
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ivy_gpu.log import IvyGpuWarning
from ivy_gpu.pipeline.outputs import FigureInputs, draw_figures, unpack_stis
from ivy_gpu.results import ProcessingResult
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig

#: matplotlib settings never sent to a figure process (the backend is the canvas's: Agg).
_LOCAL_SETTINGS = ("backend", "backend_fallback", "interactive")


def changed_settings() -> dict[str, Any]:
    """The caller's matplotlib settings that differ from matplotlib's defaults.

    Empty when matplotlib has not been imported (nothing can have changed).
    """
    if "matplotlib" not in sys.modules:
        return {}
    import matplotlib as mpl

    changed = {}
    for key, value in mpl.rcParams.items():
        if key in _LOCAL_SETTINGS:
            continue
        try:
            same = bool(mpl.rcParamsDefault[key] == value)
        except (KeyError, ValueError, TypeError):
            same = False
        if not same:
            changed[key] = value
    return changed


def draw_packed(
    out: Path,
    scaffold: ScaffoldConfig,
    result: ProcessingResult,
    data: FigureInputs,
    stis: dict | None,
    settings: dict[str, Any],
) -> None:
    """:func:`draw_figures` in a figure process, the STIs unpacked, the settings applied."""
    import matplotlib as mpl

    data = dataclasses.replace(data, sti=None if stis is None else unpack_stis(stis))
    with mpl.rc_context(settings):
        draw_figures(out, scaffold, result, data)


class _Ended(Exception):
    """A figure process that cannot take or answer a job (it died, or never started)."""


class _Worker:
    """One figure process and its two pipes."""

    def __init__(self) -> None:
        env = dict(os.environ)
        here = Path(__file__).resolve().parents[2]  # the folder holding this ivy_gpu
        if here.name not in ("site-packages", "dist-packages"):  # a checkout on sys.path
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(here), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from ivy_gpu.pipeline.drawing import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def draw(self, job: bytes) -> None:
        """Send a pickled job, wait for its answer; raise what the drawing raised.

        Raises :class:`_Ended` when the process cannot take or answer it.
        """
        try:
            self.proc.stdin.write(job)
            self.proc.stdin.flush()
            ok, value = pickle.load(self.proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            raise _Ended(f"a figure process ended ({type(exc).__name__})") from exc
        if not ok:
            raise value

    def stop(self, wait: bool) -> None:
        try:
            if wait:
                pickle.dump(None, self.proc.stdin)
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class FigureProcesses:
    """Draws figures in ``processes`` worker processes (started by :meth:`start` or a drawing).

    Called with :func:`~ivy_gpu.pipeline.outputs.draw_figures`' arguments from any thread;
    returns when the figures are written, and raises what the drawing raised.
    """

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"figure processes: at least 1, not {processes}")
        self.processes = processes
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        #: Why the processes were given up (None while they draw).
        self.broken: str | None = None

    def start(self) -> None:
        """Start the processes now, without waiting for them.

        A batch calls it before its first video, so their start-up (an interpreter, NumPy,
        matplotlib: 1-3 s) overlaps the first decoding instead of delaying the first figures.
        """
        with self._lock:
            if self._all or self.broken is not None:
                return
            try:
                for _ in range(self.processes):
                    worker = _Worker()
                    self._all.append(worker)
                    self._idle.put(worker)
            except OSError as exc:
                self.broken = f"cannot start one: {exc}"
        if self.broken is not None:
            self._warn()

    def __call__(
        self, out: Path, scaffold: ScaffoldConfig, result: ProcessingResult, data: FigureInputs
    ) -> None:
        """Draw one video's figures in a process; here when the processes have stopped."""
        self.start()
        if self.broken is None:
            stis = data.packed_stis()
            bare = dataclasses.replace(data, sti=None, sti_packed=None)
            job = (out, scaffold, result, bare, stis, changed_settings())
            try:
                job = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError):  # drawn here instead
                return draw_figures(out, scaffold, result, data)
            worker = self._idle.get()
            try:
                worker.draw(job)  # the drawing's own error (a full disk) fails this video
                self._idle.put(worker)
                return
            except _Ended as exc:
                self._give_up(str(exc))
            except BaseException:
                self._idle.put(worker)
                raise
        draw_figures(out, scaffold, result, data)

    def _give_up(self, why: str) -> None:
        with self._lock:
            if self.broken is not None:
                return
            self.broken = why
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop(wait=False)
        while True:  # a thread waiting for an idle process gets one that reads EOF at once
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        for worker in workers:
            self._idle.put(worker)
        self._warn()

    def _warn(self) -> None:
        warnings.warn(
            f"figure processes stopped ({self.broken}); the figures are drawn in the batch's "
            "own process from now on",
            IvyGpuWarning,
            stacklevel=3,
        )

    def close(self) -> None:
        """Stop the processes (each after the drawing in progress)."""
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop(wait=True)


def _settle() -> None:
    """Keep what the first drawing left (matplotlib's caches, fonts) out of later collections.

    The collector then goes through a drawing's garbage only: measured, half the time a
    drawing spent in collections (0.05 -> 0.02-0.03 s per video).
    """
    gc.collect()
    gc.freeze()


def _serve(
    jobs: IO[bytes], answers: IO[bytes], after_first: Callable[[], None] | None = None
) -> None:
    """A figure process: draw each job read from ``jobs``, answer on ``answers``.

    ``after_first`` is called once, after the first answer is sent (:func:`_settle`).
    """
    import matplotlib.backends.backend_agg  # noqa: F401  (start-up, before the first job)

    import ivy_gpu.report.figures  # noqa: F401

    settled = False
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        if job is None:
            return
        try:
            draw_packed(*job)
            answer: tuple = (True, None)
        except Exception as exc:  # noqa: BLE001 - sent back, raised in the batch
            answer = (False, exc)
        try:  # sent only if it reads back: a half-read answer would garble the next
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            data = pickle.dumps((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))
        answers.write(data)
        answers.flush()
        if not settled and after_first is not None:
            after_first()
        settled = True


def main() -> None:
    """A figure process's entry (:class:`_Worker` starts it)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to standard error, not into the answers
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, answers, _settle)
