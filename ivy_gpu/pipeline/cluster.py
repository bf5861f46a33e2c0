"""Local Dask clusters for ``batch --workers N``: one worker per GPU on a machine with several.

On a machine with one GPU or none, ``--workers N`` starts N single-threaded CPU workers
(:class:`distributed.LocalCluster`). When the batch runs on the GPU (``cupy``) and the
machine has several, each worker is pinned to one device by ``CUDA_VISIBLE_DEVICES`` (the
device ids of an outer ``CUDA_VISIBLE_DEVICES`` kept), so its engine sees that device alone
and sizes its chunks from that device's memory: dask-cuda's ``LocalCUDACluster`` when it is
installed, else one :class:`distributed.Nanny` per worker with that variable in its
environment. More workers than devices share them round-robin; ``IVY_GPU_WORKERS_PER_DEVICE``
tells each how many share its device (its part of the chunk budget,
:func:`ivy_gpu.config.gpu_chunk_bytes`).
"""

from __future__ import annotations

import os
from typing import Any

#: The environment variable that tells a worker how many workers share its GPU.
SHARE_ENV = "IVY_GPU_WORKERS_PER_DEVICE"


def visible_devices(count: int) -> list[str]:
    """The device ids this process may use: an outer ``CUDA_VISIBLE_DEVICES``, else 0..count-1."""
    outer = os.environ.get("CUDA_VISIBLE_DEVICES")
    if outer is not None and outer.strip():
        return [d.strip() for d in outer.split(",") if d.strip()]
    return [str(i) for i in range(count)]


def worker_devices(workers: int, devices: list[str]) -> list[tuple[str, int]]:
    """``(device id, workers sharing it)`` for each of ``workers`` workers, round-robin."""
    if workers < 1 or not devices:
        raise ValueError("--workers: at least one worker and one device")
    ids = [devices[k % len(devices)] for k in range(workers)]
    return [(d, ids.count(d)) for d in ids]


def local_client(workers: int, backend: str, devices: list[str] | None = None) -> Any:
    """A client of a local cluster of ``workers`` single-threaded workers.

    Pinned to GPUs (see the module docstring) when ``devices`` is given, or when
    ``backend`` is ``cupy`` and this machine has more than one CUDA device.
    """
    from distributed import Client, LocalCluster

    if devices is None and backend == "cupy":
        from ivy_gpu.engines.backends import gpu_device_count

        count = gpu_device_count()
        devices = visible_devices(count) if count > 1 else None
    if not devices:
        return Client(LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None))
    plan = worker_devices(workers, list(devices))
    try:  # dask-cuda when installed: its cluster pins one worker per device
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None
    if LocalCUDACluster is not None and workers <= len(devices):
        cluster = LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=",".join(d for d, _ in plan), threads_per_worker=1,
            dashboard_address=None,
        )  # fmt: skip
        return Client(cluster)
    return Client(_pinned_cluster(plan))


def _pinned_cluster(plan: list[tuple[str, int]]) -> Any:
    """One Nanny per ``(device, sharing)`` with ``CUDA_VISIBLE_DEVICES`` set to its device."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        f"gpu{device}-{k}": {
            "cls": Nanny,
            "options": {
                "nthreads": 1,
                "env": {"CUDA_VISIBLE_DEVICES": device, SHARE_ENV: str(share)},
            },
        }
        for k, (device, share) in enumerate(plan)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    return SpecCluster(workers=workers, scheduler=scheduler)
