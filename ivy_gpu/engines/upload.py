"""Frames to the GPU through pinned, double-buffered staging on a non-blocking stream.

``cupy.asarray(frame)`` copies a pageable host frame on the current stream and blocks the
host until the copy has gone through a driver staging buffer: the decoder thread's next
frame waits for it, and the rectification kernel cannot overlap the copy. Here each frame
is written into one of two **pinned** host buffers, copied asynchronously on a separate
non-blocking stream into one of two device buffers, and the compute stream waits on that
copy's event only (never the host). Events keep the ring safe:

- a pinned buffer is rewritten only after its previous upload finished (``copied`` event);
- a device buffer is overwritten only after the kernel that read it finished (``used``).

So frame ``k + 1``'s host copy and upload run while frame ``k`` is rectified.
:class:`FrameUploader` takes the CUDA pieces from ``xp`` (CuPy) and the pinned allocator;
tests drive it with a stand-in that records the order of operations.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

#: Staging buffers in the ring (frame k's upload overlaps frame k - 1's rectification).
BUFFERS = 2


def pinned_empty(xp: ModuleType) -> Callable[[tuple[int, ...], Any], np.ndarray]:
    """CuPy's page-locked host allocator (``cupyx.empty_pinned``)."""
    import cupyx

    return cupyx.empty_pinned


class FrameUploader:
    """A ring of pinned host and device frame buffers fed on a non-blocking copy stream.

    Parameters
    ----------
    xp : module
        CuPy (or a stand-in with ``empty``, ``cuda.Stream``, ``cuda.Event`` and
        ``cuda.get_current_stream``).
    empty_pinned : callable, optional
        ``(shape, dtype) -> ndarray`` in page-locked memory (default ``cupyx.empty_pinned``).
    buffers : int
        Slots in the ring.
    """

    def __init__(
        self,
        xp: ModuleType,
        empty_pinned: Callable[[tuple[int, ...], Any], np.ndarray] | None = None,
        buffers: int = BUFFERS,
    ) -> None:
        self.xp = xp
        self._empty_pinned = empty_pinned or pinned_empty(xp)
        self.buffers = buffers
        self.stream = xp.cuda.Stream(non_blocking=True)
        self._shape: tuple[int, ...] | None = None
        self._next = 0
        #: Frames uploaded so far (tests and benchmarks read it).
        self.count = 0

    def _allocate(self, shape: tuple[int, ...], dtype: Any) -> None:
        xp = self.xp
        self._host = [self._empty_pinned(shape, dtype) for _ in range(self.buffers)]
        self._device = [xp.empty(shape, dtype=dtype) for _ in range(self.buffers)]
        self._copied = [None] * self.buffers  # event: this slot's upload has finished
        self._used = [None] * self.buffers  # event: the kernel reading this slot finished
        self._shape = (shape, np.dtype(dtype))
        self._next = 0

    def upload(self, frame: np.ndarray) -> Any:
        """Start copying ``frame`` to the device; return its device buffer.

        The current (compute) stream waits for the copy, so work queued on it next reads
        the frame; call :meth:`release` after that work is queued.
        """
        xp = self.xp
        frame = np.ascontiguousarray(frame)
        if self._shape != (frame.shape, frame.dtype):
            self._allocate(frame.shape, frame.dtype)
        i = self._next
        self._next = (i + 1) % self.buffers
        if self._copied[i] is not None:
            self._copied[i].synchronize()  # the pinned buffer's last upload has gone
        self._host[i][...] = frame
        if self._used[i] is not None:
            self.stream.wait_event(self._used[i])  # its device buffer is no longer read
        self._device[i].set(self._host[i], stream=self.stream)
        copied = xp.cuda.Event()
        copied.record(self.stream)
        self._copied[i] = copied
        xp.cuda.get_current_stream().wait_event(copied)
        self._slot = i
        self.count += 1
        return self._device[i]

    def release(self) -> None:
        """Mark the last uploaded buffer free once the work queued on it so far has run."""
        used = self.xp.cuda.Event()
        used.record(self.xp.cuda.get_current_stream())
        self._used[self._slot] = used
