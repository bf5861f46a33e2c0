"""One writer per output folder: an OS lock held for a whole batch (or one ``process`` run).

The lock is ``fcntl.flock`` on ``<folder>/.ivy_gpu.lock``, which holds the PID and host
of the writer. The kernel drops the lock when its process dies, so a lock left by a
killed run never blocks the next one; a second live writer is refused at once with a
one-line message naming the holder.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

from ivy_gpu.fileio import our_temporary

LOCK_NAME = ".ivy_gpu.lock"


class FolderLockedError(ValueError):
    """Another live process writes into this output folder."""


class FolderLock:
    """Exclusive, non-blocking lock of an output folder (a context manager).

    On platforms without ``fcntl`` (Windows) the lock is a no-op.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fh = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")  # noqa: SIM115 - held until __exit__
        except OSError as exc:
            raise ValueError(
                f"{self.folder}: cannot use the output folder ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FolderLockedError(
                f"{self.folder}: another ivy-gpu run writes into this folder ({holder}); "
                "wait for it or choose another output folder"
            ) from None
        try:  # who holds it, for the message a second writer gets
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {platform.node()}\n")
            fh.flush()
        except OSError:
            pass  # a full disk: the lock holds without the note (writes fail later, per video)
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def remove_stale_temporaries(places: Iterable[tuple[Path, Iterable[str]]]) -> int:
    """Delete the temporaries a killed writer left (call with the folder locked).

    Only files whose names this package makes (``.<file>.<8 characters>.tmp``, for one of
    the ``targets`` of each ``(folder, targets)`` place) directly in those folders: a
    user's ``notes/.draft.tmp``, or any file in a folder the program did not make, stays.
    """
    n = 0
    for folder, targets in places:
        names = tuple(targets)
        try:
            found = [p for p in Path(folder).glob(".*.tmp") if our_temporary(p.name, names)]
        except OSError:
            continue
        for tmp in found:
            try:
                tmp.unlink()
                n += 1
            except OSError:
                pass
    return n
