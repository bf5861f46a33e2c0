"""The streaming frame reader and time parsing."""

import numpy as np
import pytest

from ivy_gpu.checks import parse_time
from ivy_gpu.frames.video import FrameReader, frame_interval, probe


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("12.5", 12.5),
        ("01:30", 90.0),
        ("00:00:15", 15.0),
        ("1:02:03.250", 3723.25),
        (" 7 ", 7.0),
        (4, 4.0),
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["1:2:3:4", "ten", "-3", "1h"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError, match="start_time"):
        parse_time(bad, "start_time")


def test_reader_selection_and_timestamps(video_site):
    d, truth = video_site
    path = d / truth["video"]
    info = probe(path)
    assert (info.width, info.height, info.fps) == (1280, 720, 30.0)
    frames = list(FrameReader(path))
    assert len(frames) == truth["num_frames"] == 90
    idx, t, img = frames[0]
    assert idx == 0 and t == 0.0 and img.shape == (720, 1280) and img.dtype == np.uint8
    sel = list(FrameReader(path, start=1.0, end=2.0, step=3))
    times = np.array([f[1] for f in sel])
    assert len(sel) == 10 and np.allclose(times, 1.0 + 0.1 * np.arange(10))
    assert frame_interval(times, 3, 30.0) == (pytest.approx(0.1), None)
    capped = list(FrameReader(path, step=2, max_frames=7))
    assert [f[0] for f in capped] == list(range(7)) and capped[-1][1] == pytest.approx(12 / 30)
    # the same frame decoded from the start and after a seek is identical
    assert np.array_equal(sel[0][2], frames[30][2])


def test_variable_frame_rate_is_detected():
    dt, warn = frame_interval(np.array([0.0, 0.05, 0.1, 0.15]), 1, 30.0)
    assert dt == pytest.approx(0.05) and "timestamps" in warn
    # gaps of 16 and 53 ms whose mean is the labelled 1/29.2 s: the mean alone passes
    gaps = np.tile([0.016, 0.0525], 30)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    dt, warn = frame_interval(times, 1, 1 / 0.03425)
    assert dt == pytest.approx(0.03425) and warn.startswith("variable frame rate: kept")
    assert "16 to 52 ms apart" in warn or "16 to 53 ms apart" in warn
    # milliseconds rounding of a constant 30 fps (33/34 ms) is not variable
    ms = np.round(np.arange(60) / 30.0, 3)
    assert frame_interval(ms, 1, 30.0) == (pytest.approx(1 / 30), None)


def test_a_variable_frame_rate_clip_warns_end_to_end(tmp_path, video_site):
    """A real VFR file (PyAV, millisecond timestamps 16 and 53 ms apart): one warning."""
    from fractions import Fraction

    import av

    from ivy_gpu import process_video

    d, truth = video_site
    frames = [f[2] for f in FrameReader(d / truth["video"], max_frames=60)]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for k, gray in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, 2), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 16 if k % 2 else 53
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    r = process_video(d / "site.ivy", path, truth["wse_m"], backend="numba")
    said = [w for w in r.warnings if "variable frame rate" in w]
    assert len(said) == 1 and "16 to 53 ms apart" in said[0], r.warnings


def test_bad_videos(tmp_path, video_site):
    d, truth = video_site
    with pytest.raises(ValueError, match="nothing.mp4: video file not found"):
        FrameReader(tmp_path / "nothing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((d / truth["video"]).read_bytes()[:5000])
    with pytest.raises(ValueError, match="broken.mp4: cannot open video"):
        list(FrameReader(broken))
    with pytest.raises(ValueError, match="end_time: 1.0 s is not after start_time 2.0 s"):
        FrameReader(d / truth["video"], start=2.0, end=1.0)
