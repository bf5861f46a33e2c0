"""ivy_gpu: GPU-accelerated STIV and discharge from river videos.

Importing the package is cheap and never touches CUDA; heavy modules load on
first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "process_video": "ivy_gpu.pipeline.process",
    "process_batch": "ivy_gpu.pipeline.batch",
    "process_batch_csv": "ivy_gpu.pipeline.batch",
    "BatchOrchestrator": "ivy_gpu.pipeline.batch",
    "load_scaffold": "ivy_gpu.scaffold.ivyfile",
    "save_scaffold": "ivy_gpu.scaffold.ivyfile",
    "ScaffoldConfig": "ivy_gpu.scaffold.ivyfile",
    "VideoConfig": "ivy_gpu.params",
    "ProcessingResult": "ivy_gpu.results",
    "BatchResult": "ivy_gpu.results",
    "stiv_exhaustive": "ivy_gpu.stiv.driver",
    "run_stiv": "ivy_gpu.stiv.driver",
    "StivResult": "ivy_gpu.stiv.driver",
    "StivParams": "ivy_gpu.params",
    "Engine": "ivy_gpu.engines.base",
    "get_engine": "ivy_gpu.engines.backends",
    "resolve_backend": "ivy_gpu.engines.backends",
    "gpu_status": "ivy_gpu.engines.backends",
    "IvyGpuWarning": "ivy_gpu.log",
    "build_site": "ivy_gpu.site.builder",
    "build_report": "ivy_gpu.report.page",
    "recompute": "ivy_gpu.pipeline.recompute",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ivy_gpu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
