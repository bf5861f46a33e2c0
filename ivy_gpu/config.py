"""Tunables in one place: chunk budgets, FFT threads, GPU launch shapes, queue and cache sizes.

Tests shrink these (monkeypatch) so chunk boundaries are exercised on tiny inputs.
"""

from __future__ import annotations

import os

#: Working-memory budget of one STI chunk on the CPU backends, bytes.
CPU_CHUNK_BYTES: int = 384 * 2**20

#: Working-memory budget of one STI chunk on the GPU backend, bytes: 8 GB scores `grid`
#: (575 nodes x 31 angles at P = 32, T = 300: 7.6 GB by the engine's conservative estimate,
#: about 3 GB used) in one chunk, one synchronization; :data:`GPU_FREE_FRACTION` keeps a
#: smaller or busier GPU to what it has free.
GPU_CHUNK_BYTES: int = 8 * 2**30

#: A STIV chunk on the GPU takes at most this fraction of the device memory free when it starts
#: (shared between the workers of one device): a smaller GPU, or one busy with other work,
#: gets smaller chunks instead of an out-of-memory error.
GPU_FREE_FRACTION: float = 0.5

#: Hard upper bound on (node, angle) pairs per chunk, whatever the budget.
MAX_CHUNK_PAIRS: int = 65536

#: Threads used by SciPy's FFT on the CPU backends.
FFT_WORKERS: int = os.cpu_count() or 1

#: Threads per block of the 1-D grid-stride CUDA kernels.
CUDA_BLOCK: int = 256

#: Most blocks in one CUDA launch; the kernels loop over the rest (no launch limit is hit).
CUDA_MAX_BLOCKS: int = 65535

#: The Numba-CUDA kernels on the GPU: "auto" or "on" (the GPU backend runs them, and is
#: unusable, with the failure named, when the probe cannot compile and run them) or "off"
#: (array-namespace code only). Environment: ``IVY_GPU_CUDA_KERNELS``.
CUDA_KERNELS: str = os.environ.get("IVY_GPU_CUDA_KERNELS", "auto")

#: How the GPU engine's kernels get each STI's autocorrelation window: "fft" (batched cuFFT,
#: the cross-spectra kernel, then the ray kernel), "direct" (one kernel per chunk sums the
#: window, the rays and the peak: :mod:`ivy_gpu.kernels.acf_direct_device`) or "shared" (one
#: kernel per chunk autocorrelates each STI by an FFT in shared memory, then its rays and
#: peak: :mod:`ivy_gpu.kernels.acf_shared_device`); lines a kernel does not fit keep the cuFFT
#: path. "fft" until ``make gpu-check`` has measured them on a GPU (docs/benchmarks.md).
#: Environment: ``IVY_GPU_ACF``.
GPU_ACF: str = os.environ.get("IVY_GPU_ACF", "fft")

#: Frames preallocated for the stack before it grows by doubling (never the whole clip up
#: front: a container without a duration would otherwise reserve hours of frames).
STACK_INITIAL_FRAMES: int = 512

#: Decoded frames queued between the decoder thread and the rectifier.
DECODE_QUEUE_FRAMES: int = 16

#: Remap tables kept in memory, one per (scaffold, WSE).
RECTIFIER_CACHE_SIZE: int = 8

#: Camera motion under ``auto``: frames estimated while the camera looks still (every k-th);
#: the first that moved more than the threshold switches to every frame, the held frames
#: since the last sample redone (frames/stack.py, _Tracker). 1 estimates every frame.
MOTION_SAMPLE_STEP: int = 8

#: Who tracks the stable region's corners for the camera-motion estimate: "opencv" (OpenCV's
#: pyramidal Lucas-Kanade on the CPU, the default) or "array" (the same algorithm as array
#: code on the engine's namespace: on the GPU engine, CuPy on the device;
#: :mod:`ivy_gpu.frames.track_xp`). Environment: ``IVY_GPU_MOTION`` (:func:`motion_tracker`).
MOTION_TRACKERS = ("opencv", "array")

#: Who decodes a video for the GPU engine: "auto" (NVDEC through PyNvVideoCodec when it
#: imports and gives PyAV's first frame, else PyAV; :mod:`ivy_gpu.frames.nvdec`) or "pyav"
#: (always PyAV). The CPU engines always use PyAV. Environment: ``IVY_GPU_DECODER``
#: (:func:`video_decoder`).
VIDEO_DECODERS = ("auto", "pyav")

#: Videos decoded ahead of the one being analysed in a local batch, each on its own thread: 2
#: or more run several decoders at once (a GPU box where one decoder cannot keep the engine
#: busy; each holds a stack in memory). Environment: ``IVY_GPU_PREFETCH``
#: (:func:`prefetch_videos`).
PREFETCH_VIDEOS: int = 1
#: The most processes that draw a local batch's figures by default
#: (:mod:`ivy_gpu.pipeline.drawing`; 1 draws them on the batch's figure thread): see
#: :func:`figure_workers_for`. Environment: ``IVY_GPU_FIGURE_WORKERS`` (:func:`figure_workers`);
#: ``ivy-gpu batch --figure-workers`` and ``process_batch(figure_workers=)`` before it.
FIGURE_WORKERS_MAX: int = 4
#: Videos whose figures may wait for the figure thread before the batch waits for them, one
#: more per figure process beyond the first (:func:`figure_queue`; each holds its figure
#: inputs: a frame and the STIs, 0.1-0.2 GB at 575 nodes with 138-pixel lines).
FIGURE_QUEUE: int = 2


def figure_queue(workers: int) -> int:
    """Videos whose figures may be pending before a batch with ``workers`` drawers waits.

    :data:`FIGURE_QUEUE` for the figure thread; each further drawer adds one, so every
    drawer can be busy while the next video computes.
    """
    return FIGURE_QUEUE + max(0, workers - 1)


#: Temporal stride of slow nodes (``StivParams.stride``): nodes slower than
#: STRIDE_BELOW_PX px/frame are re-measured with streaks over k frames per step, k =
#: ceil(STRIDE_TARGET_PX / speed), on every frame (the ACF read at frame lags k * m), with at
#: least STRIDE_MIN_FRAMES steps (T // k; at P = 32 the rays then keep their full length).
#: Measured on synthetic truth (P = 32, T = 300): unstrided the formulation reads -18 % at 0.1,
#: -3.2 % at 0.6, -1.2 % at 1.0 and -0.4 to -0.7 % from 1.5 to 3 px/frame. The target
#: displacement per step is STRIDE_TARGET_PX on lines of STRIDE_SHORT_LINE px and more and
#: STRIDE_TARGET_SHORT_PX on shorter ones (their short rays read steps of 1.5-1.8 px 1.1 to
#: 2.7 % low at P = 24 and 28).
#: Strided, the mean over nodes is within 1 % from 0.3 to 1.7 px/frame for P from 24 to 96
#: and T from 150 to 600 wherever the clip allows the stride (docs/benchmarks.md, "The
#: stride for every line length").
STRIDE_BELOW_PX: float = 1.8
STRIDE_TARGET_PX: float = 1.5
STRIDE_SHORT_LINE: int = 32
STRIDE_TARGET_SHORT_PX: float = 2.0
STRIDE_MIN_FRAMES: int = 32
STRIDE_MAX: int = 32

#: Rectify only the band of the plan view that the search lines read (plus margins), not
#: the whole plan view; the figures' frame is rectified in full once. Same numbers.
RECTIFY_BAND: bool = True


def gpu_share() -> int:
    """How many workers share this worker's GPU (``IVY_GPU_WORKERS_PER_DEVICE``; 1 without).

    :mod:`ivy_gpu.pipeline.cluster` sets it for each worker of a local cluster.
    """
    try:
        return max(1, int(os.environ.get("IVY_GPU_WORKERS_PER_DEVICE", "1")))
    except ValueError:
        return 1


def prefetch_videos() -> int:
    """Videos a local batch decodes ahead.

    ``IVY_GPU_PREFETCH`` if set, else :data:`PREFETCH_VIDEOS`.

    Raises
    ------
    ValueError
        ``IVY_GPU_PREFETCH`` is not a whole number of videos (0 or more).
    """
    count = _env_count("IVY_GPU_PREFETCH", 0, "a whole number of videos (0 or more)")
    return PREFETCH_VIDEOS if count is None else count


def _env_count(name: str, least: int, said: str) -> int | None:
    """The whole number of ``least`` or more in environment variable ``name`` (None if unset).

    Raises ``ValueError`` naming the variable, ``said`` (what it must be) and its text.
    """
    text = os.environ.get(name)
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < least:
        raise ValueError(f"{name}: {said}, not {text!r}")
    return int(text)


def figure_workers(asked: int | None = None) -> int:
    """Figure drawers of a local batch: ``asked``, ``IVY_GPU_FIGURE_WORKERS``, or automatic.

    ``asked`` when given and not 0 (``--figure-workers``, ``process_batch``), else
    ``IVY_GPU_FIGURE_WORKERS`` if set, else :func:`figure_workers_for` this machine.

    Raises
    ------
    ValueError
        ``asked`` is negative, or ``IVY_GPU_FIGURE_WORKERS`` is not a whole number of 1 or
        more.
    """
    if asked is not None and asked < 0:
        raise ValueError(f"--figure-workers: 0 (automatic) or a process count, not {asked}")
    if asked:
        return asked
    count = _env_count("IVY_GPU_FIGURE_WORKERS", 1, "a whole number of 1 or more")
    return figure_workers_for(usable_cores()) if count is None else count


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def figure_workers_for(cores: int | None) -> int:
    """Figure processes for a machine of ``cores`` cores: below 8, 1 (the thread).

    From 8 cores, a quarter of them, at most :data:`FIGURE_WORKERS_MAX`. A 1080p video's
    three figures and review page take 0.6 s (25 nodes) to 1.1 s (575 nodes) of one core; a
    GPU box finishes a video every 0.4-0.8 s, so one drawer would set the pace.
    """
    cores = cores or 1
    return 1 if cores < 8 else min(FIGURE_WORKERS_MAX, cores // 4)


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    """Environment variable ``name`` if set (one of ``choices``), else the first choice."""
    text = os.environ.get(name, choices[0])
    if text not in choices:
        raise ValueError(f"{name}: one of {', '.join(choices)}, not {text!r}")
    return text


def motion_tracker() -> str:
    """Who tracks camera motion: ``IVY_GPU_MOTION`` if set, else ``"opencv"``.

    Raises
    ------
    ValueError
        ``IVY_GPU_MOTION`` is not one of :data:`MOTION_TRACKERS`.
    """
    return _env_choice("IVY_GPU_MOTION", MOTION_TRACKERS)


def video_decoder() -> str:
    """Who decodes for the GPU engine: ``IVY_GPU_DECODER`` if set, else ``"auto"``.

    Raises
    ------
    ValueError
        ``IVY_GPU_DECODER`` is not one of :data:`VIDEO_DECODERS`.
    """
    return _env_choice("IVY_GPU_DECODER", VIDEO_DECODERS)


def gpu_chunk_bytes() -> int:
    """A worker's share of :data:`GPU_CHUNK_BYTES`: workers sharing one GPU split it."""
    return GPU_CHUNK_BYTES // gpu_share()
