"""process_video end to end on a generated 720p site, and its failure stages."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from ivy_gpu import ProcessingResult, process_video
from ivy_gpu.hydraulics.discharge import TABLE_COLUMNS
from ivy_gpu.stiv.quality import EXCLUDING
from ivy_gpu.synthetic.sites import Site, SiteSpec


def test_720p_clip_gives_discharge_within_3_percent(video_site, tmp_path):
    d, truth = video_site
    stages = []
    r = process_video(
        d / "site.ivy",
        d / truth["video"],
        truth["wse_m"],
        tmp_path,
        backend="numba",
        progress=lambda s, f, m: stages.append(s),
    )
    assert isinstance(r, ProcessingResult) and r.success, r.error_message
    assert r.total_discharge == pytest.approx(truth["discharge_m3s"], rel=0.03)
    assert r.total_area == pytest.approx(truth["area_m2"], rel=0.01)
    assert r.num_frames == 90 and r.timestep_seconds == pytest.approx(1 / 30)
    assert r.mean_velocity == pytest.approx(r.total_discharge / r.total_area)
    assert 0 < r.discharge_uncertainty["iso_u95"] < 0.3
    assert {"read", "stiv", "discharge", "done"} <= set(stages)
    out = tmp_path / "river"
    data = json.loads((out / "results.json").read_text())  # strict JSON (no NaN)
    assert data["status"] == "completed" and data["discharge_m3s"] == r.total_discharge
    assert data["display_units"] == "Metric" and "discharge_cfs" not in data
    # which engine path ran: numba's formulation; no GPU here, so nothing about one
    assert data["provenance"]["numba_path"] == "fused" and data["provenance"]["gpu_path"] is None
    assert data["provenance"]["decoder"] == "pyav"  # the CPU engines always decode with PyAV
    table = pd.read_csv(out / "discharge_table.csv")
    assert tuple(table.columns) == (*TABLE_COLUMNS, "Source")
    assert table["Unit Discharge"].sum() == pytest.approx(r.total_discharge)
    stiv = pd.read_csv(out / "stiv_results.csv", keep_default_na=False)
    assert list(stiv.columns) == [
        "node",
        "x_px",
        "y_px",
        "station_m",
        "speed_ms",
        "direction_deg",
        "normal_velocity_ms",
        "theta_deg",
        "score",
        "stride",
        "sigma_v_ms",
        "window_median_ms",
        "window_spread_ms",
        *(f"window_{k}_ms" for k in range(1, r.quality_windows + 1)),
        "flags",
    ]
    assert len(stiv) == 25 and list(stiv["node"]) == list(range(25))
    # Source, node by node: measured exactly where a node kept its own value, the edges edge
    source = list(table["Source"])
    assert source[0] == source[-1] == "edge"
    for k, (flags, vn) in enumerate(zip(stiv["flags"], stiv["normal_velocity_ms"], strict=True)):
        kept = not any(f in EXCLUDING for f in flags.split(";") if f)
        want = "filled" if vn == "" else ("measured" if kept else "excluded")
        assert source[k + 1] == want, (k, flags, vn)
    assert source.count("measured") == r.valid_nodes
    assert source.count("filled") + source.count("excluded") == r.filled_nodes
    # node by node against the site's own velocity: the first node sits on the left water
    # edge, where its lines leave the camera's view (invalid, filled with the edge's 0); the
    # last on the right edge, at zero depth (it reads the flow beside it and carries no Q)
    site = Site(SiteSpec(**truth["spec"]))
    true_vn = site.surface_speed(r.node_stations) * np.cos(np.deg2rad(site.spec.flow_angle_deg))
    assert r.node_flags[0] == "invalid" and source[1] == "filled"
    assert all(f == "" for f in r.node_flags[1:]), r.node_flags
    assert r.valid_nodes == 24 and r.filled_nodes == 1
    err = np.abs(r.stiv_normal_velocities[1:-1] - true_vn[1:-1])
    assert np.all(err <= 0.035), err  # measured at most 0.029 m/s (u_max 0.8)
    assert table["Unit Discharge"].iloc[-2] == 0.0 and table["Depth"].iloc[-2] == 0.0
    for png in ("rectified_vectors.png", "stis.png", "section.png"):
        assert (out / png).stat().st_size > 1000
    assert not list(out.glob(".*tmp"))  # no half-written files left


def test_time_window_and_keep_frames(video_site, tmp_path):
    d, truth = video_site
    r = process_video(
        d / "site.ivy",
        d / truth["video"],
        truth["wse_m"],
        tmp_path,
        start_time="00:00:01",
        end_time=2.5,
        frame_step=2,
        backend="numba",
        keep_frames=True,
    )
    assert r.success and r.num_frames == 23 and r.timestep_seconds == pytest.approx(2 / 30)
    assert len(list((tmp_path / "river" / "frames").glob("t*.png"))) == 23


@pytest.mark.parametrize(
    "case,stage,match",
    [
        ("short", "read", "only 3 frames in the selected time range"),
        ("missing", "read", "video file not found"),
        ("wse_high", "grid", "is above a bank"),
        ("size", "rectify", "frame size 640x360 differs from the calibration image size 1280x720"),
    ],
)
def test_failures_are_recorded_with_their_stage(video_site, tmp_path, case, stage, match):
    d, truth = video_site
    video, wse, kw = d / truth["video"], truth["wse_m"], {}
    if case == "short":
        kw = dict(max_frames=3)
    elif case == "missing":
        video = tmp_path / "gone.mp4"
    elif case == "wse_high":
        wse = 105.0
    elif case == "size":
        from ivy_gpu.synthetic.sites import SiteSpec, make_site

        other = make_site(tmp_path / "small", SiteSpec(duration_s=0.5), video=True)
        video = tmp_path / "small" / other["video"]
    if case == "short":
        with pytest.raises(ValueError, match="max_frames: must be an integer >= 4"):
            process_video(d / "site.ivy", video, wse, tmp_path, max_frames=1)
        kw = dict(start_time=2.9)
        match = "only 3 frames"
    r = process_video(d / "site.ivy", video, wse, tmp_path / "out", backend="numba", **kw)
    assert not r.success and r.error_stage == stage
    assert match in r.error_message and "\n" not in r.error_message
    data = json.loads((tmp_path / "out" / video.stem / "results.json").read_text())
    assert data["status"] == "failed" and data["error_stage"] == stage


def test_all_backends_agree_end_to_end(video_site):
    d, truth = video_site
    a = process_video(
        d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba", max_frames=40
    )
    b = process_video(
        d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numpy", max_frames=40
    )
    assert a.success and b.success
    assert np.allclose(a.stiv_magnitudes, b.stiv_magnitudes, rtol=2e-4, equal_nan=True)
    assert a.total_discharge == pytest.approx(b.total_discharge, rel=1e-4)


@pytest.mark.gpu
def test_gpu_pipeline_decodes_with_nvdec_as_pyav_does(video_site, tmp_path, monkeypatch):
    """With PyNvVideoCodec, the GPU engine's frames come from NVDEC, and so do the same results."""
    from ivy_gpu.frames import nvdec

    if nvdec.binding()[0] is None:
        pytest.skip(nvdec.binding()[1])
    d, truth = video_site
    run = functools.partial(process_video, d / "site.ivy", d / truth["video"], truth["wse_m"])
    a = run(tmp_path / "nvdec", backend="cupy")
    monkeypatch.setenv("IVY_GPU_DECODER", "pyav")
    b = run(tmp_path / "pyav", backend="cupy")
    assert a.success and b.success, (a.error_message, b.error_message)
    assert a.provenance["decoder"] == "nvdec", a.provenance["decoder"]  # no fallback passes
    assert b.provenance["decoder"] == "pyav"
    assert np.array_equal(a.stiv_magnitudes, b.stiv_magnitudes, equal_nan=True)
    assert a.total_discharge == b.total_discharge


@pytest.mark.gpu
def test_gpu_pipeline_matches_cpu(video_site, tmp_path):
    """Device stack (GPU rectification) through the cupy STIV engine."""
    d, truth = video_site
    a = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba")
    b = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], tmp_path, backend="cupy")
    assert b.success and b.backend == "cupy", b.error_message
    assert b.provenance["gpu_path"] == "kernels"  # a fallback to array code cannot pass
    # GPU rectification uses exact bilinear weights, OpenCV 1/32-pixel ones: small differences
    assert b.total_discharge == pytest.approx(a.total_discharge, rel=0.01)


def test_rectifying_only_the_band_gives_the_same_numbers(video_site, monkeypatch):
    """STIV reads a band of the plan view: rectifying only that band changes nothing."""
    import ivy_gpu.engines.backends as backends
    from ivy_gpu import config
    from ivy_gpu.frames.stack import load_stack
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    d, truth = video_site
    kw = dict(backend="numba", max_frames=60)
    band = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], **kw)
    monkeypatch.setattr(config, "RECTIFY_BAND", False)
    full = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], **kw)
    assert band.success and full.success
    assert np.array_equal(band.stiv_magnitudes, full.stiv_magnitudes, equal_nan=True)
    assert np.array_equal(band.stiv_directions, full.stiv_directions, equal_nan=True)
    assert band.total_discharge == full.total_discharge
    monkeypatch.setattr(config, "RECTIFY_BAND", True)
    from ivy_gpu.params import VideoConfig

    sc = load_scaffold(d / "site.ivy")
    loaded = load_stack(
        sc,
        VideoConfig(d / truth["video"], truth["wse_m"], max_frames=8),
        backends.get_engine("numba"),
        params=sc.stiv,
    )
    rows, cols = loaded.rectifier.output_shape
    assert loaded.stack.shape[1] * loaded.stack.shape[2] < 0.6 * rows * cols
    assert loaded.first_frame.shape == (rows, cols)  # the figures' frame is whole


def test_short_repr_and_dataframes(video_site):
    from ivy_gpu.results import BatchResult

    d, truth = video_site
    r = process_video(
        d / "site.ivy", d / truth["video"], truth["wse_m"], backend="numba", max_frames=40
    )
    assert len(repr(r)) < 200 and "Q=" in repr(r)
    frame = r.to_dataframe()
    assert len(frame) == 25 and {"speed_ms", "flags", "stride"} <= set(frame.columns)
    b = BatchResult([r])
    assert repr(b) == "BatchResult(1 videos: 1 completed, 0 failed)"
    assert b.to_dataframe()["discharge_m3s"].iloc[0] == r.total_discharge
