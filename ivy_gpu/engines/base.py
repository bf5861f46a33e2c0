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

from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ivy_gpu.kernels.rays import AcfPlan
    from ivy_gpu.scaffold.rectify import Rectifier

#: Bilinear taps of a batch of search lines: ``(x0, y0, fx, fy)``, each (n, P).
Taps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: The crop of the stack that STIV reads: ``(y_lo, y_hi, x_lo, x_hi)``, inclusive.
Window = tuple[int, int, int, int]


@runtime_checkable
class Engine(Protocol):
    """A compute backend.

    Attributes
    ----------
    name : str
        Registry name (``"numpy"``, ``"numba"``, ``"cupy"``).
    xp : module
        Array namespace of the engine's arrays (``numpy`` or ``cupy``).
    """

    name: str
    xp: ModuleType

    def to_device(self, a: Any) -> Any:
        """Return ``a`` as an array of the engine's namespace."""
        ...

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Allocate an uninitialized array in the engine's memory."""
        ...

    def remap(self, frame: np.ndarray, tables: Rectifier, out: Any) -> None:
        """Rectify one grayscale uint8 host frame into ``out`` (uint8, engine memory)."""
        ...

    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on the CPU)."""
        ...

    def chunk_pairs(self, p: int, t: int) -> int:
        """Number of (node, angle) pairs scored per chunk within the memory budget."""
        ...

    def prepare(self, stack: Any, window: Window, sigma: float, taps: Taps | None = None) -> Any:
        """Crop ``stack`` to ``window``, blur it spatially by ``sigma`` and lay it out.

        ``taps`` (window coordinates) are every bilinear tap the handle will be read with;
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

    def acf_scores(self, handle: Any, taps: Taps, plan: AcfPlan) -> tuple[np.ndarray, ...]:
        """ACF ray-integral scores: host ``(idx, peak, before, after)``, each (n,)."""
        ...

    def gradient_scores(self, handle: Any, taps: Taps) -> tuple[np.ndarray, np.ndarray]:
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

    def to_device(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array (device arrays are copied to the host)."""
        return host_array(a)

    def to_host(self, a: Any) -> np.ndarray:
        """Return ``a`` as a NumPy array."""
        return host_array(a)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """``numpy.empty`` (pages are touched only when written)."""
        return np.empty(shape, dtype=dtype)

    def remap(self, frame: np.ndarray, tables: Rectifier, out: np.ndarray) -> None:
        """Rectify with OpenCV's multi-threaded ``remap``."""
        out[...] = tables.rectify(frame)

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
