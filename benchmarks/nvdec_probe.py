"""NVDEC through PyNvVideoCodec beside PyAV: what a decoded frame is on the device.

Issue 25 item 5 asks for NVDEC as an option. Its Python binding (PyNvVideoCodec) cannot be
exercised without an NVIDIA driver: importing it loads the driver's video libraries
(``libnvidia-encode.so.1``, even to decode), and the layout of a decoded frame lives in the
compiled module, not in its Python sources. The pipeline's decoder
(:mod:`ivy_gpu.frames.nvdec`) checks its first frame against PyAV and falls back to PyAV
otherwise; ``make gpu-check`` (its ``rectify`` step) runs this probe and records, on the
device, what that decoder relies on:

- whether PyNvVideoCodec imports and opens a clip, or the first line of why not;
- what a decoded frame is: its type, its CUDA array interface (shape, strides, dtype) and the
  stream's metadata, so the luma plane can be read from it;
- whether that luma is **bit-identical** to PyAV's for every frame (H.264 decoding is exact,
  so it should be), and both decoders' milliseconds per frame on the same clip.

Each measurement runs in a child process with a time limit (a driver that hangs or a crash in
the binding loses this row only). ``python -m ivy_gpu.benchmarks.nvdec_probe [--sim]`` prints
the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ivy_gpu.frames.nvdec import device_array, luma_plane, open_decoder

#: Seconds the child process may take (clip, PyAV, NVDEC) before its row says it timed out.
TIMEOUT_S = 12.0

#: When this module was imported: in gpu-check, the start of the step's own process.
_IMPORTED = time.monotonic()


def make_clip(path: Path, width: int, height: int, frames: int = 60, fps: int = 30) -> None:
    """An H.264 clip of a smooth texture drifting 1.5 px per frame (PyAV, yuv420p)."""
    import cv2

    from ivy_gpu.synthetic.sites import write_video

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((height, width + 2 * frames)) * 255), (0, 0), 2.0)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)

    def shifted():
        for k in range(frames):
            x = int(1.5 * k)
            yield np.ascontiguousarray(base[:, x : x + width])

    write_video(path, shifted(), fps, width, height)


def pyav_luma(path: Path) -> tuple[np.ndarray, float]:
    """Every frame's luma as the pipeline's reader decodes it, and the seconds it took."""
    from ivy_gpu.frames.video import FrameReader

    t0 = time.perf_counter()
    frames = [luma for _, _, luma in FrameReader(path)]
    return np.stack(frames), time.perf_counter() - t0


def _public(obj: Any, limit: int = 40) -> dict[str, str]:
    """Public attributes of ``obj`` (non-callable values shown, methods named)."""
    out: dict[str, str] = {}
    for name in [n for n in dir(obj) if not n.startswith("_")][:limit]:
        try:
            value = getattr(obj, name)
        except Exception as exc:  # noqa: BLE001 - a probe records, never fails
            out[name] = f"<{type(exc).__name__}>"
            continue
        out[name] = "<method>" if callable(value) else repr(value)[:120]
    return out


def _describe(nvc: Any, clip: Path, out: dict) -> None:
    """Open ``clip`` and record the stream's metadata and what its first decoded frame is."""
    t0 = time.perf_counter()
    dec = open_decoder(nvc, clip)
    out["open_s"] = time.perf_counter() - t0
    out["length"] = len(dec)
    out["metadata"] = _public(dec.get_stream_metadata())
    first = dec[0]
    out["frame_type"] = type(first).__name__
    out["frame_attrs"] = _public(first)
    out["dlpack"] = hasattr(first, "__dlpack__")
    cai = getattr(first, "__cuda_array_interface__", None)
    out["cuda_array_interface"] = None if cai is None else {
        k: cai.get(k) for k in ("shape", "strides", "typestr", "version")
    }  # fmt: skip


def _decode(nvc: Any, cp: Any, clip: Path, h: int, w: int) -> tuple[np.ndarray, float]:
    """Every frame's luma into a device stack, as the pipeline would; (luma, ms per frame)."""
    dec = open_decoder(nvc, clip)
    stack = cp.empty((len(dec), h, w), cp.uint8)
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    n = 0
    while n < stack.shape[0]:
        batch = dec.get_batch_frames(min(32, stack.shape[0] - n))
        if not batch:
            break
        for frame in batch:
            stack[n] = luma_plane(device_array(cp, frame), h, w)
            n += 1
    cp.cuda.Device().synchronize()
    ms = (time.perf_counter() - t0) / max(n, 1) * 1e3
    return cp.asnumpy(stack[:n]), ms


def measure(sim: bool) -> dict:
    """The probe itself (in the child process): import, open, describe, decode, compare."""
    import importlib.metadata as md

    w, h = (320, 180) if sim else (1920, 1080)
    out: dict[str, Any] = {"available": False}
    try:
        out["pynvvideocodec"] = md.version("pynvvideocodec")
    except md.PackageNotFoundError:
        out["pynvvideocodec"] = None
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "drift.mp4"
        make_clip(clip, w, h)
        ref, seconds = pyav_luma(clip)
        out["frames"], out["size"] = int(ref.shape[0]), [w, h]
        out["pyav_ms_per_frame"] = seconds / ref.shape[0] * 1e3
        try:
            import PyNvVideoCodec as nvc  # noqa: N813 - the binding's own name
        except Exception as exc:  # noqa: BLE001 - ImportError, or the driver's RuntimeError
            out["reason"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            return out
        import cupy as cp

        try:
            _describe(nvc, clip, out)
            out["available"] = True
            got, out["nvdec_ms_per_frame"] = _decode(nvc, cp, clip, h, w)
        except Exception as exc:  # noqa: BLE001 - recorded beside what was learnt so far
            out["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            return out
        k = min(got.shape[0], ref.shape[0])
        diff = np.abs(got[:k].astype(int) - ref[:k].astype(int))
        out["decoded"] = int(got.shape[0])
        same = [np.array_equal(a, b) for a, b in zip(got[:k], ref[:k], strict=True)]
        out["identical_frames"] = int(sum(same))
        out["max_abs_diff"] = int(diff.max()) if diff.size else None
    return out


def rows(sim: bool, timeout: float = TIMEOUT_S, within: float | None = None) -> dict:
    """:func:`measure` in a child process with ``timeout``; its JSON, or what went wrong.

    ``within``: the seconds the calling step has in all, counted from this module's import;
    the probe takes only what is left of them (less 2 s to report), and is not run with under
    3 s left, so it never costs the step the rows it measured before.
    """
    if within is not None:
        left = within - (time.monotonic() - _IMPORTED) - 2.0
        if left < 3.0:
            return {"available": False, "reason": f"not run: {max(left, 0):.0f} s left"}
        timeout = min(timeout, left)
    cmd = [sys.executable, "-m", "ivy_gpu.benchmarks.nvdec_probe", *(["--sim"] if sim else [])]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"timed out after {timeout:g} s"}
    lines = run.stdout.strip().splitlines()
    if run.returncode == 0 and lines:
        return json.loads(lines[-1])
    last = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
    return {"available": False, "reason": f"the probe failed: {last[:300]}"}


if __name__ == "__main__":
    print(json.dumps(measure("--sim" in sys.argv[1:]), default=str))
