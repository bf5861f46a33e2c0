"""Batches: CSV semantics, statuses and files, stop on error, kill and resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ivy_gpu import process_batch, process_batch_csv
from ivy_gpu.cli.main import app
from ivy_gpu.fileio import our_temporary
from ivy_gpu.pipeline.batch_csv import BATCH_FILES, RUN_COLUMNS, SUMMARY_COLUMNS, read_batch_csv
from ivy_gpu.pipeline.outputs import VIDEO_FILES
from ivy_gpu.results import VideoConfig

runner = CliRunner()


@pytest.fixture
def batch_dir(video_site, tmp_path):
    d, truth = video_site
    shutil.copy(d / truth["video"], tmp_path / "good.mp4")
    (tmp_path / "corrupt.mp4").write_bytes((d / truth["video"]).read_bytes()[:4000])
    wse = truth["wse_m"]
    (tmp_path / "batch.csv").write_text(
        "video_path,water_surface_elevation,start_time,end_time,alpha,comments,gage_height\n"
        f"good.mp4,{wse},,,0.85,whole clip,1.0\n"
        f"corrupt.mp4,{wse},,,0.85,truncated,\n"
        f"missing.mp4,{wse},,,0.85,absent,\n"
        f"good.mp4,{wse},00:00:00.5,00:00:02.5,0.9,HH:MM:SS row,\n"
    )
    return tmp_path, d / "site.ivy", truth


def test_batch_statuses_messages_and_files(batch_dir):
    folder, scaffold, truth = batch_dir
    b = process_batch_csv(scaffold, folder / "batch.csv", folder / "out", backend="numba")
    assert (b.total_videos, b.successful, b.failed) == (4, 2, 2)
    good, corrupt, missing, window = b.video_results
    assert good.success and window.success
    assert good.total_discharge == pytest.approx(truth["discharge_m3s"], rel=0.03)
    assert window.num_frames == 60 and window.alpha == 0.9
    assert (
        corrupt.error_stage == "read" and "corrupt.mp4: cannot open video" in corrupt.error_message
    )
    assert (
        missing.error_stage == "read"
        and "missing.mp4: video file not found" in missing.error_message
    )
    summary = pd.read_csv(folder / "out" / "batch_summary.csv", keep_default_na=False)
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["status"]) == ["completed", "failed", "failed", "completed"]
    assert list(summary["error_stage"]) == ["", "read", "read", ""]
    s = b.get_discharge_summary()
    assert s["count"] == 2 and s["min"] <= s["mean"] <= s["max"]
    # one folder per row, a repeated stem named by what differs (here its time window)
    assert (folder / "out" / "good" / "results.json").exists()
    assert (folder / "out" / "good_0.5-2.5s" / "results.json").exists()
    assert (folder / "out" / "corrupt" / "results.json").exists()


def test_cli_batch_exit_code_and_missing_columns(batch_dir):
    folder, scaffold, _ = batch_dir
    res = runner.invoke(
        app,
        [
            "batch",
            str(scaffold),
            str(folder / "batch.csv"),
            "-o",
            str(folder / "cli"),
            "-q",
            "--backend",
            "numba",
        ],
    )
    assert res.exit_code == 1, res.output  # some videos failed
    assert "2 of 4 videos completed, 2 failed" in res.output
    (folder / "nocol.csv").write_text("video,wse\na.mp4,1\n")
    res = runner.invoke(app, ["batch", str(scaffold), str(folder / "nocol.csv"), "-q"])
    assert res.exit_code == 2
    assert "nocol.csv: missing required columns: video_path, water_surface_elevation" in res.output


def test_csv_rows_units_and_bad_rows(tmp_path):
    (tmp_path / "b.csv").write_text(
        "video_path,water_surface_elevation,alpha,start_time,measurement_number,extra\n"
        "a.mp4,328.1,0.9,01:05,3,x\n"
        "/abs/b.mp4,abc,,,,\n"
        "c.mp4,10,1.5,,,\n"
        ",,,,,\n"
        "d.mp4,10,,99:99:99:9,,\n"
    )
    rows = read_batch_csv(tmp_path / "b.csv", "English")
    assert len(rows) == 4  # the empty row is dropped
    a = rows[0].config
    assert a.video_path == tmp_path / "a.mp4"  # relative to the CSV's folder
    assert a.water_surface_elevation == pytest.approx(328.1 * 0.3048)  # feet -> metres
    assert a.alpha == 0.9 and a.start_time == 65.0 and a.measurement_number == 3
    assert rows[1].video_path == Path("/abs/b.mp4")
    assert "row 3: water_surface_elevation: 'abc' is not a number" in rows[1].error
    assert "row 4: alpha: must be in (0, 1]" in rows[2].error
    assert "row 6: start_time: '99:99:99:9' is not seconds" in rows[3].error
    (tmp_path / "empty.csv").write_text("video_path,water_surface_elevation\n")
    with pytest.raises(ValueError, match="empty.csv: batch CSV has no data rows"):
        read_batch_csv(tmp_path / "empty.csv")


def test_stop_on_error_and_api_batch(batch_dir):
    folder, scaffold, truth = batch_dir
    videos = [
        VideoConfig(folder / "missing.mp4", truth["wse_m"]),
        VideoConfig(folder / "good.mp4", truth["wse_m"], max_frames=30),
    ]
    b = process_batch(scaffold, videos, folder / "stop", backend="numba", stop_on_error=True)
    assert [r.success for r in b.video_results] == [False, False]
    assert "not processed" in b.video_results[1].error_message
    b = process_batch(scaffold, videos, folder / "go", backend="numba")
    assert [r.success for r in b.video_results] == [False, True]


def test_kill_mid_batch_then_resume_gives_the_same_summary(batch_dir):
    folder, scaffold, truth = batch_dir
    wse = truth["wse_m"]
    lines = ["video_path,water_surface_elevation"]
    for i in range(4):
        shutil.copy(folder / "good.mp4", folder / f"v{i}.mp4")
        lines.append(f"v{i}.mp4,{wse}")
    lines.insert(3, f"missing.mp4,{wse}")
    (folder / "kill.csv").write_text("\n".join(lines) + "\n")
    exe = shutil.which("ivy-gpu", path=str(Path(sys.executable).parent))
    assert exe, "ivy-gpu console script is not installed"
    args = [exe, "batch", str(scaffold), str(folder / "kill.csv"), "-q", "--backend", "numba"]
    ref = subprocess.run(
        [*args, "-o", str(folder / "ref")], capture_output=True, text=True, timeout=600
    )
    assert ref.returncode == 1, ref.stderr  # the missing video fails
    out = folder / "killed"
    proc = subprocess.Popen(
        [*args, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    summary = out / "batch_summary.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if summary.exists() and len(summary.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = pd.read_csv(summary, keep_default_na=False)
    assert 1 <= len(partial) < 5  # killed mid-batch, finished rows kept
    # nothing half-written: a write the kill cut short is only ever one of our temporaries
    # (the figure thread may be drawing the next video when the kill comes); every file
    # under its own name is whole
    for tmp in out.rglob(".*.tmp"):
        assert our_temporary(tmp.name, VIDEO_FILES + BATCH_FILES), tmp
    for res in out.glob("*/results.json"):
        json.loads(res.read_text())
    done = subprocess.run(
        [*args, "-o", str(out), "--resume"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr
    assert not list(out.rglob(".*.tmp"))  # the next run in the folder removed them
    a = pd.read_csv(folder / "ref" / "batch_summary.csv", keep_default_na=False)
    b = pd.read_csv(summary, keep_default_na=False)
    cols = [c for c in SUMMARY_COLUMNS if c not in RUN_COLUMNS]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert "yes" in set(b["reused"])  # the rows finished before the kill were reused


def test_unexpected_errors_fail_one_video_not_the_batch(batch_dir, monkeypatch):
    import ivy_gpu.pipeline.analysis as pipeline_mod
    import ivy_gpu.pipeline.executors as executors_mod

    folder, scaffold, truth = batch_dir
    real = pipeline_mod.run_stiv
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("out of memory in the test")
        return real(*args, **kw)

    monkeypatch.setattr(pipeline_mod, "run_stiv", flaky)
    real_load = executors_mod.load_stack

    def flaky_load(scaffold_cfg, cfg, engine, **kw):
        if cfg.video_path.name == "v2.mp4":
            raise OSError(5, "disk went away")
        return real_load(scaffold_cfg, cfg, engine, **kw)

    monkeypatch.setattr(executors_mod, "load_stack", flaky_load)
    videos = [VideoConfig(folder / "good.mp4", truth["wse_m"], max_frames=30)]
    for name in ("v1.mp4", "v2.mp4"):
        shutil.copy(folder / "good.mp4", folder / name)
        videos.append(VideoConfig(folder / name, truth["wse_m"], max_frames=30))
    b = process_batch(scaffold, videos, folder / "flaky", backend="numba")
    first, second, third = b.video_results
    assert not first.success and first.error_stage == "stiv"
    assert "unexpected MemoryError in the stiv stage" in first.error_message
    assert second.success
    assert not third.success and third.error_stage == "read"
    assert "v2.mp4: disk went away (in the read stage)" in third.error_message


def test_the_stack_is_freed_before_the_figures(batch_dir, monkeypatch):
    """The outputs need only the first frame: each video's stack (held by the prefetch in a
    batch) is released before its figures are drawn, so at most the next video's stack is
    in memory while they are."""
    import gc
    import weakref

    import ivy_gpu.pipeline.executors as executors_mod
    import ivy_gpu.pipeline.outputs as outputs_mod
    import ivy_gpu.pipeline.process as pipeline_mod

    folder, scaffold, truth = batch_dir
    stacks: dict[str, weakref.ref] = {}
    alive_at_save: dict[str, bool] = {}

    def tracked(real):
        def load(scaffold_cfg, cfg, engine, *args, **kw):
            loaded = real(scaffold_cfg, cfg, engine, *args, **kw)
            base = loaded.stack
            while base.base is not None:
                base = base.base
            stacks[cfg.video_path.name] = weakref.ref(base)
            return loaded

        return load

    monkeypatch.setattr(executors_mod, "load_stack", tracked(executors_mod.load_stack))
    monkeypatch.setattr(pipeline_mod, "load_stack", tracked(pipeline_mod.load_stack))
    real_writers = list(outputs_mod.WRITERS)

    def look(ctx):
        gc.collect()
        alive_at_save[ctx.result.video_path.name] = stacks[ctx.result.video_path.name]() is not None

    monkeypatch.setattr(outputs_mod, "WRITERS", [look, *real_writers])
    videos = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(folder / "good.mp4", folder / name)
        videos.append(VideoConfig(folder / name, truth["wse_m"], max_frames=40))
    b = process_batch(scaffold, videos, folder / "freed", backend="numba")
    assert all(r.success for r in b.video_results)
    assert alive_at_save == {"a.mp4": False, "b.mp4": False, "c.mp4": False}
    assert set(stacks) == {"a.mp4", "b.mp4", "c.mp4"}  # b and c were prefetched

    from ivy_gpu.pipeline.process import process_video

    r = process_video(scaffold, folder / "a.mp4", truth["wse_m"], folder / "one", backend="numba")
    assert r.success and alive_at_save["a.mp4"] is False


def test_several_decoders_at_once_give_what_one_gives(batch_dir, monkeypatch):
    """``IVY_GPU_PREFETCH=2``: the next two videos load at once, each on its own thread (two
    decoders); the results are one decoder's, file for file, in the CSV's order."""
    import threading

    import ivy_gpu.pipeline.executors as executors_mod

    folder, scaffold, truth = batch_dir
    videos = []
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        shutil.copy(folder / "good.mp4", folder / name)
        videos.append(VideoConfig(folder / name, truth["wse_m"], max_frames=40))
    one = process_batch(scaffold, videos, folder / "one", backend="numba")
    lock, loading, most = threading.Lock(), [0], [0]
    real = executors_mod.load_stack

    def load(*args, **kwargs):  # counts the loads running at once
        with lock:
            loading[0] += 1
            most[0] = max(most[0], loading[0])
        try:
            time.sleep(0.3)  # both prefetches start before either ends
            return real(*args, **kwargs)
        finally:
            with lock:
                loading[0] -= 1

    monkeypatch.setattr(executors_mod, "load_stack", load)
    monkeypatch.setenv("IVY_GPU_PREFETCH", "2")
    two = process_batch(scaffold, videos, folder / "two", backend="numba")
    assert most[0] == 2
    assert [r.video_path.name for r in two.video_results] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    for a, b in zip(one.video_results, two.video_results, strict=True):
        assert a.success and b.success and a.total_discharge == b.total_discharge
        stem = a.video_path.stem
        for name in ("stiv_results.csv", "discharge_table.csv"):
            assert (folder / "one" / stem / name).read_bytes() == (
                folder / "two" / stem / name
            ).read_bytes()


# (variable, bad value, its message, a good value, the reader, what the good value reads as)
SETTINGS = [
    ("IVY_GPU_PREFETCH", "two", "IVY_GPU_PREFETCH: a whole number of videos", "0",
     "prefetch_videos", 0),
    ("IVY_GPU_MOTION", "cupy", "IVY_GPU_MOTION: one of opencv, array, not 'cupy'", "array",
     "motion_tracker", "array"),
    ("IVY_GPU_FIGURE_WORKERS", "0", "IVY_GPU_FIGURE_WORKERS: a whole number of 1 or more", "2",
     "figure_workers", 2),
]  # fmt: skip


@pytest.mark.parametrize(("var", "bad", "message", "good", "reader", "value"), SETTINGS)
def test_a_bad_setting_is_named_before_anything_is_written(
    batch_dir, monkeypatch, var, bad, message, good, reader, value
):
    from ivy_gpu import config

    folder, scaffold, _ = batch_dir
    monkeypatch.setenv(var, bad)
    with pytest.raises(ValueError, match=message):
        getattr(config, reader)()
    args = ["batch", str(scaffold), str(folder / "batch.csv"), "-o", str(folder / "out"),
            "--backend", "numba"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and var in res.output
    assert not (folder / "out").exists()
    monkeypatch.setenv(var, good)
    assert getattr(config, reader)() == value


def test_figure_workers_asked_set_or_from_the_cores(batch_dir, monkeypatch):
    from ivy_gpu import config

    monkeypatch.delenv("IVY_GPU_FIGURE_WORKERS", raising=False)
    monkeypatch.setattr(config, "usable_cores", lambda: 16)
    assert (config.figure_workers(), config.figure_workers(3)) == (4, 3)
    monkeypatch.setenv("IVY_GPU_FIGURE_WORKERS", "1")
    assert (config.figure_workers(), config.figure_workers(2)) == (1, 2)
    folder, scaffold, _ = batch_dir
    args = ["batch", str(scaffold), str(folder / "batch.csv"), "-o", str(folder / "out"),
            "--backend", "numba", "--figure-workers", "-1"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--figure-workers: 0 (automatic) or a process count" in (
        res.output
    )
    assert not (folder / "out").exists()


def test_infinite_integers_in_a_batch_csv_fail_their_row_only(tmp_path):
    """``inf`` in an integer column was an OverflowError for the whole CSV (issue 24 item 7)."""
    (tmp_path / "b.csv").write_text(
        "video_path,water_surface_elevation,frame_step,max_frames,measurement_number\n"
        "a.mp4,1.0,inf,,\nb.mp4,1.0,,inf,\nc.mp4,1.0,,,-inf\nd.mp4,1.0,2,60,7\n"
    )
    rows = read_batch_csv(tmp_path / "b.csv")
    assert [r.config is None for r in rows] == [True, True, True, False]
    for r, col in zip(rows, ("frame_step", "max_frames", "measurement_number"), strict=False):
        assert f"row {r.line}: {col}: " in r.error and "is not an integer" in r.error
    assert rows[3].config.frame_step == 2 and rows[3].config.measurement_number == 7


def test_negative_workers_are_refused_at_once(tmp_path, video_site):
    d, truth = video_site
    (tmp_path / "b.csv").write_text(f"video_path,water_surface_elevation\na.mp4,{truth['wse_m']}\n")
    res = CliRunner().invoke(
        app, ["batch", str(d / "site.ivy"), str(tmp_path / "b.csv"), "--workers", "-1", "-q"]
    )
    assert res.exit_code == 2 and "--workers: 0 (no cluster) or a process count" in res.output


def test_the_real_ivytools_boneyard_batch_csv_is_read_row_by_row(data_dir):
    """IVyTools' own example batch (USGS, public domain): WSE in feet, HH:MM:SS times."""
    path = data_dir / "boneyard" / "batch_boneyard.csv"
    rows = read_batch_csv(path, display_units="English")
    assert [r.error for r in rows] == [None, None, None] and [r.line for r in rows] == [2, 3, 4]
    ft = 0.3048
    want = [  # video, WSE ft, date, number, comment, alpha
        ("03337000_bullet_20170630-115500.mp4", 318.211, "2017-06-30", 1, "Note 1", 0.88),
        ("03337000_bullet_20170630-120000.mp4", 318.211, "2025-04-05", 2, "Note 2", 0.88),
        ("03337000_bullet_20170711-103500.mp4", 318.6, "2025-04-06", 3, "Note 3", 0.93),
    ]
    for r, (video, wse_ft, date, number, note, alpha) in zip(rows, want, strict=True):
        c = r.config
        assert c.video_path == path.parent / video and r.wse_display == f"{wse_ft:g}"
        assert c.water_surface_elevation == pytest.approx(wse_ft * ft, rel=1e-12)
        assert (c.start_time, c.end_time) == (15.0, 20.0)
        assert (c.measurement_date, c.measurement_number, c.comments) == (date, number, note)
        assert c.alpha == alpha and c.gage_height == wse_ft and c.frame_step == 1
    # read as a metric site, the same numbers are metres
    metric = read_batch_csv(path)
    assert metric[2].config.water_surface_elevation == 318.6


def test_api_arguments_of_the_wrong_kind_are_named(batch_dir):
    from ivy_gpu import process_video

    d, scaffold, truth = batch_dir
    video, wse = d / "good.mp4", truth["wse_m"]
    for bad in ("acf", ["acf"], 3):
        with pytest.raises(ValueError, match=r"^stiv: expected a dict of STIV settings"):
            process_video(scaffold, video, wse, stiv=bad)
    with pytest.raises(ValueError, match=r"^videos\[1\]: expected a VideoConfig or a dict"):
        process_batch(scaffold, [VideoConfig(video, wse), str(video)], d / "out")
    with pytest.raises(ValueError, match=r"^videos\[0\]: .*unexpected keyword argument 'video'"):
        process_batch(scaffold, [{"video": str(video)}], d / "out")
    with pytest.raises(ValueError, match=r"^videos\[0\]: water_surface_elevation: expected a"):
        process_batch(scaffold, [{"video_path": video, "water_surface_elevation": "abc"}], d / "o")
    assert not (d / "out").exists() and not (d / "o").exists()  # refused before anything
    # a dict of VideoConfig's fields is a video
    b = process_batch(
        scaffold,
        [{"video_path": str(video), "water_surface_elevation": wse, "max_frames": 40}],
        d / "dicts",
        backend="numba",
        figures=False,
    )
    assert b.video_results[0].success, b.video_results[0].error_message


def test_repeated_videos_get_folders_that_say_what_differs(tmp_path):
    from ivy_gpu.pipeline.batch_csv import output_names

    (tmp_path / "b.csv").write_text(
        "video_path,water_surface_elevation,measurement_number,start_time,end_time\n"
        "river.mp4,1,,,\n"
        "river.mp4,1,7,,\n"
        "river.mp4,1,,0,3\n"
        "river.mp4,1,,2.5,\n"
        "River.MP4,1,,,\n"
        "river.mp4,1,,0,3\n"
    )
    names = output_names(read_batch_csv(tmp_path / "b.csv"))
    assert names == [
        "river", "river_m7", "river_0-3s", "river_from2.5s", "River_line6", "river_0-3s_line7",
    ]  # fmt: skip
    assert len({n.lower() for n in names}) == len(names)
