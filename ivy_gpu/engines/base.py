"""What every compute backend provides: the :class:`Engine` protocol.

An engine owns everything that depends on where arrays live and which kernels run:
device transfers, the frame stack's allocation, rectification of one frame, the crop
and blur of the stack that STIV reads, the STI gather and one scoring call per STIV
method. Modules outside the engines and the registry (:mod:`ivy_gpu.engines.backends`) never
ask which backend they hold; they call these methods.

Adding a backend is one module implementing this protocol plus one line in
:data:`ivy_gpu.engines.backends.ENGINES` (see ``docs/architecture.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ivy_gpu.kernels.sti import bilinear_taps

if TYPE_CHECKING:  # pragma: no cover
    from ivy_gpu.kernels.rays import AcfPlan, PlanGroups
    from ivy_gpu.scaffold.rectify import Rectifier

#: Bilinear taps of a batch of search lines: ``(x0, y0, fx, fy)``, each (n, P).
Taps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: The crop of the stack that STIV reads: ``(y_lo, y_hi, x_lo, x_hi)``, inclusive.
Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class PairLines:
    """A batch of ``unit`` search lines as geometry: the engine computes their taps.

    An engine with ``device_lines = True`` receives this instead of :data:`Taps`: a few
    bytes per line and the fan's offsets once, instead of four ``(pairs, P)`` tap arrays
    (9 MB for 17,825 lines of 32 px). :meth:`taps` gives the same taps on the host.

    Attributes
    ----------
    node_x, node_y : ndarray (pairs,) float64
        Each line's node, stack pixels.
    angle : ndarray (pairs,) int32
        Each line's row of ``offsets``.
    offsets : ndarray (k, P, 2) float64
        Sample offsets ``(dx, dy)`` of the lines' angles
        (:func:`ivy_gpu.stiv.lines.line_offsets`).
    window : Window
        The stack crop the engine prepared; taps are in its coordinates.
    interpolation : str
        ``"bilinear"`` or ``"nearest"``.
    start : ndarray (pairs,) int32, optional
        Each line's first frame within the handle it is scored on: several time windows of
        one clip scored as one batch (:meth:`in_windows`). None: every line starts at 0.
    """

    node_x: np.ndarray
    node_y: np.ndarray
    angle: np.ndarray
    offsets: np.ndarray
    window: Window
    interpolation: str
    start: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.node_x.shape[0])

    @property
    def num_pixels(self) -> int:
        """Samples per line (P)."""
        return int(self.offsets.shape[1])

    def chunk(self, lo: int, hi: int) -> PairLines:
        """Lines ``lo:hi`` (same offsets and window)."""
        start = None if self.start is None else self.start[lo:hi]
        return PairLines(
            self.node_x[lo:hi], self.node_y[lo:hi], self.angle[lo:hi], self.offsets,
            self.window, self.interpolation, start,
        )  # fmt: skip

    def in_windows(self, starts: list[int]) -> PairLines:
        """Every line once per time window starting at ``starts``: window-major, ``K * pairs``."""
        k, n = len(starts), len(self)
        return PairLines(
            np.tile(self.node_x, k), np.tile(self.node_y, k), np.tile(self.angle, k),
            self.offsets, self.window, self.interpolation,
            np.repeat(np.asarray(starts, np.int32), n),
        )  # fmt: skip

    def taps(self) -> Taps:
        """The bilinear taps on the host, exactly :func:`ivy_gpu.stiv.lines.line_taps`'.

        Lines in several time windows (``start``) have no host-taps form: refused.
        """
        if self.start is not None:
            raise ValueError("PairLines.taps: lines in time windows need device taps")
        y_lo, y_hi, x_lo, x_hi = self.window
        ox, oy = (np.ascontiguousarray(self.offsets[..., k]) for k in (0, 1))  # (k, P)
        sx = self.node_x[:, None] + np.take(ox, self.angle, axis=0)
        sy = self.node_y[:, None] + np.take(oy, self.angle, axis=0)
        w, h = x_hi - x_lo + 1, y_hi - y_lo + 1
        return bilinear_taps(sx - x_lo, sy - y_lo, w, h, self.interpolation)


#: What a scoring call reads: host taps, or line geometry for an engine with ``device_lines``.
Lines = Taps | PairLines


def chunk_of(lines: Lines, lo: int, hi: int) -> Lines:
    """Lines ``lo:hi`` of a batch, whichever form it has."""
    if isinstance(lines, PairLines):
        return lines.chunk(lo, hi)
    return tuple(a[lo:hi] for a in lines)  # type: ignore[return-value]


def len_of(lines: Lines) -> int:
    """Number of lines in a batch, whichever form it has."""
    return len(lines) if isinstance(lines, PairLines) else int(lines[0].shape[0])


def as_taps(lines: Lines) -> Taps:
    """Host taps of a batch (computed for :class:`PairLines`)."""
    return lines.taps() if isinstance(lines, PairLines) else lines


@runtime_checkable
class Engine(Protocol):
    """A compute backend.

    Attributes
    ----------
    name : str
        Registry name (``"numpy"``, ``"numba"``, ``"cupy"``).
    xp : module
        Array namespace of the engine's arrays (``numpy`` or ``cupy``).
    device_lines : bool
        The scoring calls take ``unit`` lines as :class:`PairLines` (the engine computes
        their taps) instead of host :data:`Taps`; IVyTools' lines always come as taps.
    """

    name: str
    xp: ModuleType
    device_lines: bool

    def to_device(self, a: Any) -> Any:
        """Return ``a`` as an array of the engine's namespace."""
        ...

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Allocate an uninitialized array in the engine's memory."""
        ...

    def remap(self, frame: Any, tables: Rectifier, out: Any, on_device: bool = False) -> None:
        """Rectify one grayscale uint8 frame into ``out`` (uint8, engine memory).

        The frame is a host array, or with ``on_device`` already in the engine's memory
        (decoded there: :mod:`ivy_gpu.frames.nvdec`).
        """
        ...

    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on the CPU)."""
        ...

    def chunk_pairs(self, p: int, t: int) -> int:
        """Number of (node, angle) pairs scored per chunk within the memory budget."""
        ...

    def prepare(self, stack: Any, window: Window, sigma: float, taps: Lines | None = None) -> Any:
        """Crop ``stack`` to ``window``, blur it spatially by ``sigma`` and lay it out.

        ``taps`` (window coordinates) are every line the handle will be read with;
        an engine may copy only the pixels they read. Returns the handle that
        :meth:`gather` and the scoring calls read.
        """
        ...

    def time_slice(self, handle: Any, start: int, stop: int) -> Any:
        """The prepared handle restricted to frames ``start:stop`` (a view, no copy)."""
        ...

    def gather(self, handle: Any, taps: Taps) -> np.ndarray:
        """Raw STIs on the host, shape (n, P, T) float32."""
        ...

    def acf_scores(
        self, handle: Any, taps: Lines, plan: AcfPlan | PlanGroups
    ) -> tuple[np.ndarray, ...]:
        """ACF ray-integral scores: host ``(idx, peak, before, after)``, each (n,).

        ``plan`` may be :class:`~ivy_gpu.kernels.rays.PlanGroups`: spans of lines, each with
        its own plan (the temporal stride's steps), scored in one call.
        """
        ...

    def gradient_scores(self, handle: Any, taps: Lines) -> tuple[np.ndarray, np.ndarray]:
        """Structure-tensor scores: host ``(slope px/frame, coherence)``, each (n,)."""
        ...


def host_array(a: Any) -> np.ndarray:
    """A NumPy copy (or view) of a NumPy or device array, without importing CuPy."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def crop_blur(stack: Any, window: Window, sigma: float, xp: ModuleType, ndimage: Any) -> Any:
    """Slice ``window`` out of a (T, H, W) stack and blur it spatially (float32 when blurred).

    ``stack`` must already live in ``xp``'s memory; ``ndimage`` is that namespace's
    ``scipy.ndimage`` (SciPy or ``cupyx.scipy.ndimage``). The blur reads the uint8 window and
    writes float32 once (no float32 copy of the window first: half the peak memory, the same
    values, since uint8 -> float32 is exact).
    """
    y_lo, y_hi, x_lo, x_hi = window
    region = stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1]
    if sigma > 0:
        return ndimage.gaussian_filter(
            region,
            sigma=(0.0, sigma, sigma),
            mode="reflect",
            output=xp.float32,
        )
    return xp.ascontiguousarray(region)


class HostMemory:
    """Memory half of the CPU engines: NumPy arrays, OpenCV rectification, SciPy blur."""

    name = "host"
    xp: ModuleType = np
    device_lines = False  # host taps

    def to_device(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array (device arrays are copied to the host)."""
        return host_array(a)

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array."""
        return host_array(a)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """``numpy.empty`` (pages are touched only when written)."""
        return np.empty(shape, dtype=dtype)

    def remap(
        self, frame: np.ndarray, tables: Rectifier, out: np.ndarray, on_device: bool = False
    ) -> None:
        """Rectify with OpenCV's multi-threaded ``remap``, straight into ``out``.

        The CPU's memory is the engine's: ``on_device`` changes nothing.
        """
        tables.rectify(frame, out)

    def synchronize(self) -> None:
        """Nothing to wait for on the CPU."""

    def time_slice(self, handle: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` of a (T, H, W) handle."""
        return handle[start:stop]

    def crop(self, stack: Any, window: Window, sigma: float) -> np.ndarray:
        """The cropped, blurred region on the host."""
        import scipy.ndimage

        y_lo, y_hi, x_lo, x_hi = window
        region = host_array(stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1])
        return crop_blur(region, (0, y_hi - y_lo, 0, x_hi - x_lo), sigma, np, scipy.ndimage)
