"""gpu-check's NVDEC probe and the slim wheel that carries PyNvVideoCodec to the device."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ivy_gpu.benchmarks import nvdec_probe, slim_wheel


@pytest.mark.parametrize(
    "shape, pitch",
    [((27, 16), 16), ((27, 24), 24), ((18, 20), 20), ((3, 18, 16), 16), ((3, 18, 32), 32)],
)
def test_the_luma_plane_is_read_from_each_native_layout(shape, pitch):
    """NV12 (1.5 H rows), luma alone, planar; rows padded to a pitch wider than the frame."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, shape, dtype=np.uint8)
    luma = nvdec_probe.luma_plane(frame, 18, 16)
    want = frame[0, :, :16] if len(shape) == 3 else frame[:18, :16]
    assert luma.shape == (18, 16) and np.array_equal(luma, want)
    assert np.shares_memory(luma, frame)  # a view: the stack copy is the only one


@pytest.mark.parametrize("shape", [(17, 16), (18, 15), (4, 18, 16), (18, 16, 3)])
def test_other_frame_layouts_are_refused(shape):
    with pytest.raises(ValueError, match="not a 18x16 luma layout"):
        nvdec_probe.luma_plane(np.zeros(shape, np.uint8), 18, 16)


def test_without_a_driver_the_probe_says_why_and_still_times_pyav():
    """Here (no NVIDIA driver) NVDEC is unavailable: the reason is recorded, PyAV measured."""
    got = nvdec_probe.rows(sim=True, timeout=60)
    assert got["available"] is False
    assert got["reason"].split(":")[0] in ("ModuleNotFoundError", "RuntimeError", "ImportError")
    assert got["frames"] == 60 and got["size"] == [320, 180] and got["pyav_ms_per_frame"] > 0


def test_the_probe_takes_only_the_time_its_step_has_left(monkeypatch):
    monkeypatch.setattr(nvdec_probe, "_IMPORTED", nvdec_probe.time.monotonic() - 18.5)
    got = nvdec_probe.rows(sim=True, within=20)  # 1.5 s left, less 2 to report: not run
    assert got == {"available": False, "reason": "not run: 0 s left"}
    calls = []
    monkeypatch.setattr(nvdec_probe.subprocess, "run", lambda *a, **k: calls.append(k) or 1 / 0)
    monkeypatch.setattr(nvdec_probe, "_IMPORTED", nvdec_probe.time.monotonic() - 10)
    with pytest.raises(ZeroDivisionError):
        nvdec_probe.rows(sim=True, within=20)
    assert 7.5 < calls[0]["timeout"] <= 8.0  # 20 - 10 - 2


def _wheel(path, files: dict[str, bytes]) -> None:
    record = "tiny-1.0.dist-info/RECORD"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(record, "stale,sha256=x,1\n")


def test_a_slim_wheel_drops_what_it_is_told_and_installs(tmp_path):
    meta = b"Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n"
    wheel_meta = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"
    files = {
        "tiny/__init__.py": b"VALUE = 7\n",
        "tiny/libx.so.1": b"\x7fELF soname copy",
        "tiny/libx.so": b"\x7fELF duplicate",
        "tiny/libx.so.1.2.3": b"\x7fELF duplicate",
        "samples/notebook.ipynb": b"{}" * 1000,
        "tiny-1.0.data/data/external/src.tar.xz": b"x" * 5000,
        "tiny-1.0.dist-info/METADATA": meta,
        "tiny-1.0.dist-info/WHEEL": wheel_meta,
    }
    wheel = tmp_path / "tiny-1.0-py3-none-any.whl"
    _wheel(wheel, files)
    drop = (r"^samples/", r"^[^/]+\.data/data/external/", r"^tiny/lib[^/]+\.so$",
            r"^tiny/lib[^/]+\.so\.\d+\.\d+\.\d+$")  # fmt: skip
    before, after = slim_wheel.slim(wheel, drop)
    assert after < before
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        record = z.read("tiny-1.0.dist-info/RECORD").decode().splitlines()
        kept = {"tiny/__init__.py", "tiny/libx.so.1", "tiny-1.0.dist-info/METADATA",
                "tiny-1.0.dist-info/WHEEL", "tiny-1.0.dist-info/RECORD"}  # fmt: skip
        assert names == kept
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = z.read(name)
            sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={sha}" and int(size) == len(data)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert (target / "tiny" / "libx.so.1").is_file() and not (target / "tiny" / "libx.so").exists()
    run = subprocess.run([sys.executable, "-c", "import tiny; print(tiny.VALUE)"],
                         cwd=target, capture_output=True, text=True, check=True)  # fmt: skip
    assert run.stdout.strip() == "7"


def test_the_pynvvideocodec_patterns_keep_the_sonames_its_modules_need():
    keep = ["PyNvVideoCodec/libavformat.so.63", "PyNvVideoCodec/libavutil.so.61",
            "PyNvVideoCodec/__init__.py", "PyNvVideoCodec/decoders/SimpleDecoder.py",
            "PyNvVideoCodec/PyNvVideoCodec_130.cpython-312-x86_64-linux-gnu.so",
            "pynvvideocodec./libcudart-c64a25f3.so.12.3.101"]  # fmt: skip
    drop = ["PyNvVideoCodec/libavformat.so", "PyNvVideoCodec/libavformat.so.63.1.101",
            "pynvvideocodec-2.2.4.data/data/external/ffmpeg/src/ffmpeg-9.0.1.tar.xz",
            "samples/jupyter/simple_decode_tutorial.ipynb",
            "benchmarks/decode_perf.py"]  # fmt: skip
    patterns = [re.compile(p) for p in slim_wheel.PYNVVIDEOCODEC_DROP]
    assert [n for n in keep + drop if any(p.search(n) for p in patterns)] == drop
