"""NVDEC decoding (ivy_gpu.frames.nvdec) against PyAV, through a stand-in for PyNvVideoCodec.

The real binding needs an NVIDIA driver. The stand-in has its API (``SimpleDecoder``,
``seek_to_index``, ``get_batch_frames``, frames handed out as NV12 surfaces with a padded
pitch through DLPack) and decodes with PyAV, so NumPy stands in for CuPy. The tests check
the frames the reader selects and hands out, and that whatever goes wrong (a frame off by
one, a decoder that fails mid-way, fewer frames than packets, no binding) ends with PyAV's
stack and one warning, never with other frames.
"""

from __future__ import annotations

import re
import types
import warnings

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.frames import nvdec
from ivy_gpu.frames.stack import load_stack
from ivy_gpu.frames.video import FrameReader, _luma
from ivy_gpu.log import IvyGpuWarning
from ivy_gpu.results import StageError, VideoConfig
from ivy_gpu.scaffold.ivyfile import load_scaffold
from ivy_gpu.synthetic.sites import write_video

PITCH_PAD = 32  # the stand-in's surfaces are wider than the frame, as NVDEC's pitch is


class _Surface:
    """A decoded NV12 frame handed out through DLPack (as a CUDA buffer would be)."""

    def __init__(self, nv12: np.ndarray) -> None:
        self._a = nv12

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def fake_binding(shift: int = 0, fail_at: int | None = None, missing: int = 0):
    """A PyNvVideoCodec stand-in decoding with PyAV.

    ``shift`` hands out frame k + shift for frame k; ``fail_at`` raises when frame
    ``fail_at`` is asked for; ``missing`` counts that many frames fewer than there are.
    """
    calls = {"opened": 0, "frames": 0}

    class SimpleDecoder:
        def __init__(self, path, gpu_id=0, use_device_memory=True, output_color_type=0):
            assert use_device_memory and output_color_type == "NATIVE"
            calls["opened"] += 1
            self.surfaces = []
            with av.open(path) as c:
                for f in c.decode(c.streams.video[0]):
                    y = _luma(f)  # the raw Y plane, as NVDEC decodes it
                    h, w = y.shape
                    nv12 = np.full((h * 3 // 2, w + PITCH_PAD), 128, np.uint8)
                    nv12[:h, :w] = y
                    self.surfaces.append(nv12)
            self.k = 0

        def __len__(self):
            return len(self.surfaces) - missing

        def get_batch_frames(self, n):
            out = []
            for _ in range(n):
                if fail_at is not None and self.k >= fail_at:
                    raise RuntimeError("CUDA_ERROR_LAUNCH_FAILED")
                j = self.k + shift
                if j >= len(self):
                    break
                out.append(_Surface(self.surfaces[j].copy()))  # a surface the decoder reuses
                self.k += 1
                calls["frames"] += 1
            return out

    mod = types.ModuleType("PyNvVideoCodec")
    mod.SimpleDecoder = SimpleDecoder
    mod.OutputColorType = types.SimpleNamespace(NATIVE="NATIVE")
    return mod, calls


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """40 frames at 10 fps of a texture drifting 1.5 px a frame (each frame differs)."""
    rng = np.random.default_rng(3)
    base = (rng.random((48, 64 + 80)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("nvdec") / "drift.mp4"
    frames = (np.ascontiguousarray(base[:, int(1.5 * k) : int(1.5 * k) + 64]) for k in range(40))
    write_video(path, frames, 10, 64, 48)
    return path


def _use(monkeypatch, mod):
    monkeypatch.setattr(nvdec, "binding", lambda: (mod, None))
    monkeypatch.setattr(nvdec, "on_gpu", lambda engine: True)


def _frames(reader):
    return [(i, t, np.asarray(luma)) for i, t, luma in reader]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.one_of(st.none(), st.floats(0.0, 3.0)),
    length=st.one_of(st.none(), st.floats(0.2, 4.0)),
    step=st.integers(1, 4),
    cap=st.one_of(st.none(), st.integers(2, 12)),
)
def test_the_reader_keeps_pyavs_frames_and_times(clip, monkeypatch, start, length, step, cap):
    """Any start, end, step and cap: the same indices, times and luma as FrameReader."""
    mod, _ = fake_binding()
    monkeypatch.setattr(nvdec, "binding", lambda: (mod, None))
    end = None if length is None else (start or 0.0) + length
    want_reader = FrameReader(clip, start, end, step, cap)
    want = _frames(want_reader)
    got_reader = nvdec.NvdecReader(clip, start, end, step, cap, xp=np)
    got = _frames(got_reader)
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in want]
    for (_, _, a), (_, _, b) in zip(got, want, strict=True):
        assert a.shape == (48, 64) and np.array_equal(a, b)
    assert got_reader.decoded == want_reader.decoded
    assert got_reader.rotation == want_reader.rotation


def test_each_luma_is_a_copy_of_its_own(clip, monkeypatch):
    """The decoder reuses its surfaces: a handed-out frame must not change afterwards."""
    mod, _ = fake_binding()
    monkeypatch.setattr(nvdec, "binding", lambda: (mod, None))
    frames = [luma for _, _, luma in nvdec.NvdecReader(clip, xp=np)]
    assert all(f.flags.c_contiguous and f.base is None for f in frames)
    assert not any(np.shares_memory(a, b) for a, b in zip(frames, frames[1:], strict=False))


@pytest.mark.parametrize(
    "kind, said",
    [
        (dict(shift=1), "the first frame differs from PyAV's"),
        (dict(missing=3), "the decoder counts 37 frames, PyAV 40"),
        (dict(fail_at=1), "RuntimeError: CUDA_ERROR_LAUNCH_FAILED"),
    ],
)
def test_a_disagreeing_decoder_hands_out_nothing(clip, monkeypatch, kind, said):
    mod, _ = fake_binding(**kind)
    monkeypatch.setattr(nvdec, "binding", lambda: (mod, None))
    reader = nvdec.NvdecReader(clip, xp=np)
    with pytest.raises(nvdec.NvdecUnusable, match=said):
        next(iter(reader))


def test_without_the_binding_the_reader_says_why(clip, monkeypatch):
    monkeypatch.setattr(nvdec, "binding", lambda: (None, "PyNvVideoCodec unavailable (x)"))
    with pytest.raises(nvdec.NvdecUnusable, match="PyNvVideoCodec unavailable"):
        next(iter(nvdec.NvdecReader(clip, xp=np)))


def test_who_decodes(monkeypatch):
    """NVDEC only for a CuPy engine with the binding, and not under IVY_GPU_DECODER=pyav."""
    assert not nvdec.on_gpu(XpEngine(np, use_cuda_kernels=False))
    assert not nvdec.on_gpu(object())
    cupy_like = types.SimpleNamespace(xp=types.ModuleType("cupy"))
    assert nvdec.on_gpu(cupy_like)
    monkeypatch.setattr(nvdec, "binding", lambda: (object(), None))
    assert nvdec.wanted(cupy_like) == (True, None)
    assert nvdec.wanted(XpEngine(np, use_cuda_kernels=False)) == (False, None)
    monkeypatch.setenv("IVY_GPU_DECODER", "pyav")
    assert nvdec.wanted(cupy_like) == (False, None)
    monkeypatch.delenv("IVY_GPU_DECODER")
    # not installed: PyAV, nothing to say; installed but it cannot load: PyAV, and why
    missing = "PyNvVideoCodec unavailable (ModuleNotFoundError: No module named 'x')"
    monkeypatch.setattr(nvdec, "binding", lambda: (None, missing))
    assert nvdec.wanted(cupy_like) == (False, None)
    broken = "PyNvVideoCodec unavailable (RuntimeError: libnvidia-encode.so.1 not found)"
    monkeypatch.setattr(nvdec, "binding", lambda: (None, broken))
    assert nvdec.wanted(cupy_like) == (False, broken)
    # here, the real binding: it cannot load without an NVIDIA driver, and says why
    mod, why = nvdec._import()
    assert mod is None and why.startswith("PyNvVideoCodec unavailable (")


# ---------------------------------------------------------------------- load_stack


@pytest.fixture(scope="module")
def site(video_site):
    d, truth = video_site
    return load_scaffold(d / "site.ivy"), VideoConfig(d / truth["video"], truth["wse_m"])


def _load(site, engine, **kw):
    scaffold, video = site
    return load_stack(scaffold, video, engine, stabilize="auto", **kw)


@pytest.fixture(scope="module")
def pyav_loaded(site):
    return _load(site, XpEngine(np, use_cuda_kernels=False))


def test_the_gpu_engine_stacks_nvdecs_frames(site, pyav_loaded, monkeypatch):
    """Device frames: rectified where they are (no upload), the host tracker gets copies."""
    mod, calls = fake_binding()
    _use(monkeypatch, mod)
    engine = XpEngine(np, use_cuda_kernels=False)
    uploads, hosts = [], []
    engine_remap, engine_host = engine.remap, engine.to_host
    monkeypatch.setattr(
        engine,
        "remap",
        lambda f, t, o, on_device=False: (
            uploads.append(on_device),
            engine_remap(f, t, o, on_device),
        ),
    )
    monkeypatch.setattr(engine, "to_host", lambda a: (hosts.append(a.shape), engine_host(a))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", IvyGpuWarning)  # no fallback, so no warning
        got = _load(site, engine)
    assert got.decoder == "nvdec" and calls["frames"] == got.stack.shape[0]
    assert all(uploads) and len(uploads) == got.stack.shape[0]
    assert len(hosts) >= got.stack.shape[0] // 8  # the sampled frames went to the tracker
    assert np.array_equal(got.stack, pyav_loaded.stack)
    assert np.array_equal(got.times, pyav_loaded.times) and got.dt == pyav_loaded.dt
    assert np.array_equal(got.first_frame, pyav_loaded.first_frame)
    assert got.motion.corrected_frames == pyav_loaded.motion.corrected_frames
    assert got.warnings == pyav_loaded.warnings


@pytest.mark.parametrize(
    "kind, said", [(dict(shift=1), "first frame differs"), (dict(fail_at=50), "RuntimeError")]
)
def test_any_disagreement_ends_in_pyavs_stack_and_one_warning(
    site, pyav_loaded, monkeypatch, kind, said
):
    """Off by one frame, or a decoder failing after 50 frames were stacked: PyAV again."""
    mod, _ = fake_binding(**kind)
    _use(monkeypatch, mod)
    monkeypatch.setattr(nvdec, "_SAID", set())
    with pytest.warns(IvyGpuWarning, match=f"NVDEC not used .*{said}.*decoding with PyAV"):
        got = _load(site, XpEngine(np, use_cuda_kernels=False))
    assert got.decoder.startswith("pyav (NVDEC not used: ") and said in got.decoder
    assert np.array_equal(got.stack, pyav_loaded.stack)
    assert np.array_equal(got.times, pyav_loaded.times)
    assert got.motion.corrected_frames == pyav_loaded.motion.corrected_frames
    with warnings.catch_warnings():
        warnings.simplefilter("error", IvyGpuWarning)  # said once per reason
        assert _load(site, XpEngine(np, use_cuda_kernels=False)).decoder == got.decoder


def test_the_decoder_setting_is_checked_before_decoding(site, monkeypatch):
    monkeypatch.setenv("IVY_GPU_DECODER", "nvdec-please")
    with pytest.raises(StageError, match="IVY_GPU_DECODER: one of auto, pyav, not 'nvdec-pl"):
        _load(site, XpEngine(np, use_cuda_kernels=False))


def test_the_remap_of_a_device_frame_skips_the_upload():
    class Ring:
        def __init__(self):
            self.calls = []

        def upload(self, frame):
            self.calls.append("upload")
            return frame

        def release(self):
            self.calls.append("release")

    ring = Ring()
    engine = XpEngine(np, False, uploaders=lambda: ring)
    rect = types.SimpleNamespace(interpolation="linear")
    coords = np.stack(np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij"))
    engine._tables = lambda tables: coords
    frame = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = np.empty((4, 5), np.uint8)
    engine.remap(frame, rect, out, on_device=True)
    assert ring.calls == [] and np.array_equal(out, frame)
    engine.remap(frame, rect, out)
    assert ring.calls == ["upload", "release"]


def test_an_installed_binding_that_cannot_load_is_named_once(site, pyav_loaded, monkeypatch):
    broken = "PyNvVideoCodec unavailable (RuntimeError: libnvidia-encode.so.1 not found)"
    monkeypatch.setattr(nvdec, "binding", lambda: (None, broken))
    monkeypatch.setattr(nvdec, "on_gpu", lambda engine: True)
    monkeypatch.setattr(nvdec, "_SAID", set())
    with pytest.warns(IvyGpuWarning, match="NVDEC not used .*libnvidia-encode"):
        got = _load(site, XpEngine(np, use_cuda_kernels=False))
    assert got.decoder == f"pyav (NVDEC not used: {broken})"
    assert np.array_equal(got.stack, pyav_loaded.stack)


@pytest.mark.parametrize("keep", [0.05, 0.6, 0.97])
def test_a_truncated_file_reads_as_pyav_reads_it(clip, tmp_path, monkeypatch, keep):
    """A clip cut short: NVDEC's reader fails as PyAV's does, gives up, or gives PyAV's frames."""
    fast = tmp_path / "fast.mp4"  # the index first (faststart), so a cut file still opens
    with (
        av.open(str(clip)) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = fast.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    mod, _ = fake_binding()
    monkeypatch.setattr(nvdec, "binding", lambda: (mod, None))
    try:
        want = _frames(FrameReader(cut))
    except ValueError as exc:  # PyAV's own error, in one line naming the file
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            _frames(nvdec.NvdecReader(cut, xp=np))
        return
    try:
        got = _frames(nvdec.NvdecReader(cut, xp=np))
    except nvdec.NvdecUnusable:
        return  # load_stack then reads it with PyAV
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in want]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(got, want, strict=True))


def test_a_device_frame_the_pipeline_cannot_use_ends_in_pyavs_stack(site, pyav_loaded, monkeypatch):
    """Not the reader's fault (here the engine refuses device frames): PyAV again, and why."""
    mod, _ = fake_binding()
    _use(monkeypatch, mod)
    monkeypatch.setattr(nvdec, "_SAID", set())
    engine = XpEngine(np, use_cuda_kernels=False)
    remap = engine.remap

    def refuse(frame, tables, out, on_device=False):
        if on_device:
            raise TypeError("device frames are not supported")
        remap(frame, tables, out, on_device)

    monkeypatch.setattr(engine, "remap", refuse)
    with pytest.warns(IvyGpuWarning, match="NVDEC not used .TypeError: device frames"):
        got = _load(site, engine)
    assert got.decoder == "pyav (NVDEC not used: TypeError: device frames are not supported)"
    assert np.array_equal(got.stack, pyav_loaded.stack)


class _Dev:
    """A device array stand-in that is no ndarray: the host reads it only through ``get()``."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)

    def __getitem__(self, key):
        return _Dev(self._a[key])

    def copy(self):
        return _Dev(self._a.copy())

    def get(self) -> np.ndarray:
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("a device array read on the host")


def test_device_frames_reach_the_host_only_through_copies(site, pyav_loaded, monkeypatch):
    """Frames that only the engine can read: the tracker, the figures' first frame and the
    check against PyAV each get a host copy, and nothing else touches them on the host."""
    mod, _ = fake_binding()
    _use(monkeypatch, mod)
    monkeypatch.setattr(nvdec, "device_array", lambda xp, frame: _Dev(np.from_dlpack(frame)))
    engine = XpEngine(np, use_cuda_kernels=False)
    remap = engine.remap

    def device_remap(frame, tables, out, on_device=False):
        assert on_device == isinstance(frame, _Dev)
        remap(frame._a if on_device else frame, tables, out)

    monkeypatch.setattr(engine, "remap", device_remap)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IvyGpuWarning)  # a fallback would warn
        got = _load(site, engine)
    assert got.decoder == "nvdec"
    assert np.array_equal(got.stack, pyav_loaded.stack)
    assert np.array_equal(got.first_frame, pyav_loaded.first_frame)
    assert got.motion.corrected_frames == pyav_loaded.motion.corrected_frames
