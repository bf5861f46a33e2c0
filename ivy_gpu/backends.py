"""The one backend seam: names -> engines.

``numpy`` is the readable reference and always available; ``numba`` is the
parallel CPU engine; ``cupy`` runs on a CUDA GPU (CuPy arrays, cuFFT, cuBLAS and
Numba-CUDA kernels). ``auto`` picks ``cupy`` when a GPU is usable, else ``numba``.
Importing this module never imports CuPy or initializes CUDA.
"""

from __future__ import annotations

import functools
from typing import Any

BACKENDS: tuple[str, ...] = ("numpy", "numba", "cupy")


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
        Unknown name.
    RuntimeError
        ``cupy`` requested without a usable GPU.
    """
    if name == "auto":
        return "cupy" if gpu_status()[0] else "numba"
    if name not in BACKENDS:
        raise ValueError(
            f"backend: unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}"
        )
    if name == "cupy":
        usable, why = gpu_status()
        if not usable:
            raise RuntimeError(f"backend 'cupy' needs a usable CUDA GPU: {why}")
    return name


def get_engine(name: str) -> Any:
    """Return the STIV engine for a backend name (after :func:`resolve_backend`)."""
    name = resolve_backend(name)
    if name == "numpy":
        from ivy_gpu.engine_numpy import NumpyEngine

        return NumpyEngine()
    if name == "numba":
        from ivy_gpu.engine_numba import NumbaEngine

        return NumbaEngine()
    import cupy

    from ivy_gpu.engine_xp import XpEngine

    return XpEngine(cupy)
