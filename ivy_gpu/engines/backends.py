"""The one backend seam: the registry of engines.

``numpy`` is the readable reference and always available; ``numba`` is the
parallel CPU engine; ``cupy`` runs on a CUDA GPU (CuPy arrays, cuFFT, cuBLAS and
Numba-CUDA kernels) once its probe has run every step there. ``auto`` picks ``cupy`` when
a GPU is usable, else ``numba`` (saying once why, when a GPU was found but failed).
Every engine implements :class:`ivy_gpu.engines.base.Engine`; a new backend is one module
and one line in :data:`ENGINES`. Importing this module never imports CuPy or
initializes CUDA.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ivy_gpu.engines.base import Engine
from ivy_gpu.log import IvyGpuWarning, log


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


@dataclass(frozen=True)
class GpuCheck:
    """The GPU backend here: whether a device was found, whether it runs, and why.

    Attributes
    ----------
    found : bool
        CuPy imports and sees at least one CUDA device.
    usable : bool
        The probe ran every step (:func:`ivy_gpu.engines.xp_probe.probe`).
    reason : str
        One line: the devices and the path that will run, or what is missing or failed.
    path : str or None
        ``"kernels"`` or ``"array code"`` when usable.
    """

    found: bool
    usable: bool
    reason: str
    path: str | None = None


@functools.lru_cache(maxsize=1)
def gpu_check() -> GpuCheck:
    """Find a CUDA device and probe the GPU engine on it (cached; CuPy only imported here)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return GpuCheck(False, False, f"CuPy is not importable ({type(exc).__name__}: {exc})")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return GpuCheck(False, False, f"no CUDA device ({type(exc).__name__}: {exc})")
    if count < 1:
        return GpuCheck(False, False, "no CUDA device")
    from ivy_gpu.engines.xp_probe import probe

    found = probe(cupy)
    devices = f"{count} CUDA device(s)"
    if not found.usable:
        return GpuCheck(True, False, f"{devices}, but {found.detail}")
    return GpuCheck(True, True, f"{devices}; {found.path}: {found.detail}", found.path)


def gpu_device_count() -> int:
    """CUDA devices this process sees (0 without CuPy or a driver); nothing is probed."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return 0


def gpu_status() -> tuple[bool, str]:
    """Return ``(usable, reason)`` for the CuPy GPU backend (cached)."""
    check = gpu_check()
    return check.usable, check.reason


@functools.lru_cache(maxsize=1)
def _warn_gpu_fallback() -> None:
    """Say once per process why ``auto`` runs on the CPU although a GPU is there."""
    message = f"the GPU backend is unusable, running numba instead: {gpu_check().reason}"
    warnings.warn(message, IvyGpuWarning, stacklevel=3)
    log.warning(message)


def resolve_backend(name: str) -> str:
    """Check a backend name and resolve ``auto``.

    ``auto`` is the first usable backend of :data:`AUTO_ORDER`; when a GPU is found but its
    probe fails, it says so once (an :class:`~ivy_gpu.log.IvyGpuWarning` and a log line)
    and runs on the CPU.

    Raises
    ------
    ValueError
        Unknown name, or a backend that is not usable here (``cupy`` without a GPU, or
        with a GPU whose probe failed: the message names what failed).
    """
    if name == "auto":
        for candidate in AUTO_ORDER:
            if ENGINES[candidate][1]()[0]:
                return candidate
            if candidate == "cupy" and gpu_check().found:
                _warn_gpu_fallback()
        raise ValueError("backend: no usable backend")  # pragma: no cover - numba always is
    if name not in ENGINES:
        raise ValueError(
            f"backend: unknown backend {name!r}; choose one of auto, {', '.join(ENGINES)}"
        )
    usable, why = ENGINES[name][1]()
    if not usable:
        raise ValueError(f"backend: {name!r} is not usable here: {why}")
    return name


#: What ``gpu_path`` adds for a per-STI ACF kernel (``IVY_GPU_ACF``).
ACF_LABELS = {"direct": "direct ACF window", "shared": "shared-memory FFT ACF"}


def gpu_path(backend: str) -> str | None:
    """What a result records about the GPU (``provenance.gpu_path`` in ``results.json``).

    The path the ``cupy`` engine ran (``"kernels"``, ``"kernels, direct ACF window"`` with
    ``IVY_GPU_ACF=direct``, ``"kernels, shared-memory FFT ACF"`` with ``IVY_GPU_ACF=shared``,
    or ``"array code"``); ``"unusable: ..."`` naming the failure when
    a GPU was found but failed its probe; None without a GPU.
    """
    if backend == "cupy":
        engine = get_engine("cupy")
        path = getattr(engine, "path", None)
        acf = getattr(engine, "acf_kernel", "fft")
        return f"{path}, {ACF_LABELS[acf]}" if acf in ACF_LABELS else path
    check = gpu_check()
    return f"unusable: {check.reason}" if check.found and not check.usable else None


@functools.lru_cache(maxsize=8)
def _engine(name: str) -> Engine:
    return ENGINES[name][0]()


def get_engine(name: str) -> Engine:
    """The engine of a backend name (``auto`` resolved); one instance per name and process."""
    return _engine(resolve_backend(name))
