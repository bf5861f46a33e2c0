"""The one backend seam: the registry of engines.

``numpy`` is the readable reference and always available; ``numba`` is the
parallel CPU engine; ``cupy`` runs on a CUDA GPU (CuPy arrays, cuFFT, cuBLAS and
Numba-CUDA kernels). ``auto`` picks ``cupy`` when a GPU is usable, else ``numba``.
Every engine implements :class:`ivy_gpu.engines.base.Engine`; a new backend is one module
and one line in :data:`ENGINES`. Importing this module never imports CuPy or
initializes CUDA.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ivy_gpu.engines.base import Engine


def _numpy() -> Engine:
    from ivy_gpu.engines.numpy_engine import NumpyEngine

    return NumpyEngine()


def _numba() -> Engine:
    from ivy_gpu.engines.numba_engine import NumbaEngine

    return NumbaEngine()


def _cupy() -> Engine:
    import cupy

    from ivy_gpu.engines.xp_engine import XpEngine

    return XpEngine(cupy)


def _always() -> tuple[bool, str]:
    return True, "always available"


#: name -> (factory, availability check). ``auto`` takes the first usable of AUTO_ORDER.
ENGINES: dict[str, tuple[Callable[[], Engine], Callable[[], tuple[bool, str]]]] = {
    "numpy": (_numpy, _always),
    "numba": (_numba, _always),
    "cupy": (_cupy, lambda: gpu_status()),
}
AUTO_ORDER: tuple[str, ...] = ("cupy", "numba")
BACKENDS: tuple[str, ...] = tuple(ENGINES)


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """Return ``(usable, reason)`` for the CuPy GPU backend (cached)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no CUDA device"
    return True, f"{count} CUDA device(s)"


def resolve_backend(name: str) -> str:
    """Check a backend name and resolve ``auto``.

    Raises
    ------
    ValueError
        Unknown name, or a backend that is not usable here (``cupy`` without a GPU).
    """
    if name == "auto":
        return next(n for n in AUTO_ORDER if ENGINES[n][1]()[0])
    if name not in ENGINES:
        raise ValueError(
            f"backend: unknown backend {name!r}; choose one of auto, {', '.join(ENGINES)}"
        )
    usable, why = ENGINES[name][1]()
    if not usable:
        raise ValueError(f"backend: {name!r} is not usable here: {why}")
    return name


@functools.lru_cache(maxsize=8)
def _engine(name: str) -> Engine:
    return ENGINES[name][0]()


def get_engine(name: str) -> Engine:
    """The engine of a backend name (``auto`` resolved); one instance per name and process."""
    return _engine(resolve_backend(name))
