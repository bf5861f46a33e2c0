"""What determines a result: its fingerprint (for a safe ``--resume``) and its provenance.

A stored result is reused only when the fingerprint of everything that determines it
matches exactly: the scaffold's content, the video's identity (size and a streamed
SHA-256 of its bytes), the WSE, alpha, the frame selection, the STIV settings (the
compatibility mode included), the quality rules and the algorithm version. The
fingerprint and the provenance (package version, UTC times, backend and device, the
scaffold and video paths and hashes) are written into ``results.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

#: Bumped whenever a change moves results (so old results are never reused for new code).
ALGORITHM_VERSION = "2026.12-still1"  # still water, clip U95, stride by line length

_CHUNK = 1 << 20
_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, streamed in 1 MiB blocks.

    Cached in this process by path, size, modification and change time: a rewrite changes
    the change time even when size and modification time are put back.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(_CHUNK):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def scaffold_sha256(scaffold: Any) -> str:
    """Hash of a scaffold: its file when it has one, else its project data and members."""
    if scaffold.path is not None and Path(scaffold.path).is_file():
        return file_sha256(scaffold.path)
    h = hashlib.sha256(json.dumps(scaffold.project, sort_keys=True, default=str).encode())
    for name in sorted(scaffold.members):
        h.update(name.encode())
        h.update(scaffold.members[name])
    return h.hexdigest()


def inputs_of(video: Any, stiv: Any, rules: Any, stabilize: str | None = None) -> dict[str, Any]:
    """Every input of one video run that can change its result (JSON-ready)."""
    return {
        "stabilize": stabilize,
        "water_surface_elevation_m": float(video.water_surface_elevation),
        "alpha": float(video.alpha),
        "start_time_s": video.start_time,
        "end_time_s": video.end_time,
        "frame_step": int(video.frame_step),
        "max_frames": video.max_frames,
        "stiv": dataclasses.asdict(stiv),
        "quality": dataclasses.asdict(rules),
    }


def fingerprint(
    scaffold: Any, video: Any, stiv: Any, rules: Any, stabilize: str | None = None
) -> str:
    """SHA-256 over the scaffold hash, the video's size and hash, the inputs and the version."""
    path = Path(video.video_path)
    identity = {
        "algorithm": ALGORITHM_VERSION,
        "scaffold_sha256": scaffold_sha256(scaffold),
        "video_size": path.stat().st_size,
        "video_sha256": file_sha256(path),
        "inputs": inputs_of(video, stiv, rules, stabilize),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def utc_now() -> str:
    """ISO 8601 UTC timestamp with its zone."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def device_of(backend: str) -> str:
    """The processor a backend ran on: the GPU's name, or the CPU's."""
    cpu = platform.processor() or platform.machine()
    try:
        from ivy_gpu.engines import backends

        xp = backends.get_engine(backend).xp
        if getattr(xp, "cuda", None) is not None:
            return xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"].decode()
    except Exception:  # an unusable backend name, or no device: the CPU ran it
        return f"{cpu}, {os.cpu_count()} cores"
    return f"{cpu}, {os.cpu_count()} cores"


def numba_path() -> str:
    """Which formulation the numba engine ran: ``"fused"`` (one pass per STI) or ``"chunked"``.

    The two agree to float32 rounding, not bit for bit (see ``docs/architecture.md``).
    """
    from ivy_gpu.engines.numba_engine import NumbaEngine

    return "fused" if NumbaEngine.fused else "chunked"


def gpu_path(backend: str) -> str | None:
    """The GPU path a result ran (``kernels`` | ``array code``), or why a GPU was not used.

    See :func:`ivy_gpu.engines.backends.gpu_path`; None on a machine without a GPU.
    """
    from ivy_gpu.engines import backends

    return backends.gpu_path(backend)


def provenance(
    scaffold: Any, video: Any, backend: str, started: str, decoder: str | None = None
) -> dict[str, Any]:
    """Where a result came from (written into ``results.json``).

    ``decoder``: who decoded the frames (:attr:`ivy_gpu.frames.stack.LoadedVideo.decoder`),
    None when no frame was decoded.
    """
    from ivy_gpu import __version__

    path = Path(video.video_path)
    out: dict[str, Any] = {
        "package_version": __version__,
        "algorithm_version": ALGORITHM_VERSION,
        "started_utc": started,
        "finished_utc": utc_now(),
        "host": platform.node(),
        "pid": os.getpid(),
        "backend": backend,
        "device": device_of(backend),
        "numba_path": numba_path() if backend == "numba" else None,
        "gpu_path": gpu_path(backend),
        "decoder": decoder,
        "scaffold_path": None if scaffold.path is None else str(scaffold.path),
        "scaffold_sha256": scaffold_sha256(scaffold),
        "video_path": str(path),
    }
    try:
        out["video_size"] = path.stat().st_size
        out["video_sha256"] = file_sha256(path)
    except OSError:
        out["video_size"] = out["video_sha256"] = None
    return out
