"""Shared test set-up.

Without a real GPU, Numba's CUDA simulator is switched on before Numba is
imported, so the CUDA kernels run (slowly, on tiny inputs) in CI.
"""

from __future__ import annotations

import os
from pathlib import Path


def _real_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _real_gpu():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def small_chunks(monkeypatch):
    """Shrink chunk budgets and CUDA launches so chunk and grid-stride edges are crossed."""
    from ivy_gpu import config

    monkeypatch.setattr(config, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(config, "GPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(config, "MAX_CHUNK_PAIRS", 7)
    monkeypatch.setattr(config, "CUDA_BLOCK", 32)
    monkeypatch.setattr(config, "CUDA_MAX_BLOCKS", 4)


def pytest_collection_modifyitems(config, items):
    if _real_gpu():
        return
    skip = pytest.mark.skip(reason="needs a real CUDA GPU with CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rng_seed() -> int:
    return 20261125


@pytest.fixture
def texture_factory():
    from ivy_gpu.synthetic.scenes import advected_texture

    def make(shape, speed_px, direction_geo, seed=7, **kw):
        return advected_texture(
            shape, speed_px=speed_px, direction_geo=direction_geo, seed=seed, **kw
        )

    return make


__all__ = ["np"]


@pytest.fixture(scope="session")
def video_site(tmp_path_factory):
    """A 1280x720, 3 s synthetic site with its scaffold, video and truth (built once)."""
    from ivy_gpu.synthetic.sites import SiteSpec, make_site

    d = tmp_path_factory.mktemp("video_site")
    spec = SiteSpec(width_px=1280, height_px=720, duration_s=3.0, flow_angle_deg=8.0, seed=12)
    truth = make_site(d, spec)
    return d, truth
