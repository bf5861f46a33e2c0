"""What the benchmarks share: which backends to time and the device they run on."""

from __future__ import annotations

import numpy as np

from ivy_gpu.engines import backends


def usable(name: str) -> bool:
    """Whether the registered engine ``name`` can run here."""
    return backends.ENGINES[name][1]()[0]


def gpu_backends() -> list[str]:
    """The usable registered engines whose arrays are not NumPy's (the GPU ones)."""
    return [n for n in backends.ENGINES if usable(n) and backends.get_engine(n).xp is not np]


def device_name() -> str:
    """Name of the GPU the cupy engine runs on."""
    engine = backends.get_engine("auto")
    try:
        return engine.xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except AttributeError:
        return "none"
