"""batch --workers N on several GPUs: one worker pinned per device (tested on the CPU).

The pinning is the same code path with or without GPUs: each worker process gets its
``CUDA_VISIBLE_DEVICES`` and its share of the chunk budget; here the workers run numba.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from ivy_gpu import config, process_batch
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.cluster import SHARE_ENV, local_client, visible_devices, worker_devices

distributed = pytest.importorskip("distributed")


def test_workers_share_devices_round_robin(monkeypatch):
    assert worker_devices(2, ["0", "1"]) == [("0", 1), ("1", 1)]
    assert worker_devices(3, ["0", "1"]) == [("0", 2), ("1", 1), ("0", 2)]
    with pytest.raises(ValueError, match="--workers"):
        worker_devices(0, ["0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_devices(8) == ["2", "5"]  # an outer selection is kept
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_devices(3) == ["0", "1", "2"]
    monkeypatch.setenv(SHARE_ENV, "2")
    assert config.gpu_chunk_bytes() == config.GPU_CHUNK_BYTES // 2
    monkeypatch.setenv(SHARE_ENV, "junk")
    assert config.gpu_chunk_bytes() == config.GPU_CHUNK_BYTES


def _env():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), config.gpu_chunk_bytes()


@contextlib.contextmanager
def cluster(*args, **kw):
    """A client of :func:`local_client`, closed with its cluster afterwards."""
    client = local_client(*args, **kw)
    try:
        yield client
    finally:
        started = client.cluster
        client.close()
        started.close()


def test_each_worker_is_pinned_to_its_device_and_the_batch_runs(video_site, tmp_path):
    d, truth = video_site
    with cluster(3, "numba", devices=["0", "1"]) as client:
        seen = sorted(client.run(_env).values())
        full = config.GPU_CHUNK_BYTES
        assert seen == [("0", full // 2), ("0", full // 2), ("1", full)]
        videos = [VideoConfig(d / truth["video"], truth["wse_m"], start_time=0.5 * k,
                              max_frames=30) for k in range(3)]  # fmt: skip
        b = process_batch(d / "site.ivy", videos, tmp_path, backend="numba", client=client,
                          figures=False)  # fmt: skip
        assert [r.success for r in b.video_results] == [True, True, True]


def test_without_devices_the_cluster_is_plain(monkeypatch):
    """numba, or cupy on a machine with one GPU or none: unpinned CPU workers."""
    import ivy_gpu.engines.backends as backends

    monkeypatch.setattr(backends, "gpu_device_count", lambda: 1)
    with cluster(1, "cupy") as client:
        assert list(client.run(_env).values()) == [
            (os.environ.get("CUDA_VISIBLE_DEVICES"), config.GPU_CHUNK_BYTES)
        ]


def test_cupy_on_a_machine_with_two_gpus_pins_the_workers(monkeypatch):
    """What `batch --workers 2 --backend cupy` starts on a 2-GPU machine."""
    import ivy_gpu.engines.backends as backends

    monkeypatch.setattr(backends, "gpu_device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with cluster(2, "cupy") as client:
        full = config.GPU_CHUNK_BYTES
        assert sorted(client.run(_env).values()) == [("0", full), ("1", full)]


def test_the_gpu_chunk_budget_follows_free_memory_and_sharing(monkeypatch):
    """issue 22 item 4: at most half the free memory (device + pool), split between sharers."""
    from types import SimpleNamespace

    from ivy_gpu.engines.xp_engine import gpu_budget

    def fake(free, pool=0):
        return SimpleNamespace(
            cuda=SimpleNamespace(runtime=SimpleNamespace(memGetInfo=lambda: (free, 80 << 30))),
            get_default_memory_pool=lambda: SimpleNamespace(free_bytes=lambda: pool),
        )

    monkeypatch.delenv(SHARE_ENV, raising=False)
    big = config.GPU_CHUNK_BYTES
    assert gpu_budget(fake(60 << 30)) == big  # plenty free: the configured budget
    assert gpu_budget(fake(1 << 30)) == int(config.GPU_FREE_FRACTION * (1 << 30))
    assert gpu_budget(fake(1 << 30, pool=1 << 30)) == int(config.GPU_FREE_FRACTION * (2 << 30))
    monkeypatch.setenv(SHARE_ENV, "4")
    assert gpu_budget(fake(60 << 30)) == big // 4
    assert gpu_budget(fake(1 << 30)) == int(config.GPU_FREE_FRACTION * (1 << 30)) // 4
    assert gpu_budget(SimpleNamespace()) == big // 4  # no memory query: the budget
