"""The station: clips written into a folder while it runs, a stalled copy, restarts, the CLI."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from ivy_gpu.cli.main import app
from ivy_gpu.pipeline.lock import FolderLock
from ivy_gpu.pipeline.station import Station, container_problem, iso_box_problem
from ivy_gpu.scaffold.ivyfile import load_scaffold

runner = CliRunner()


def test_whole_and_cut_mp4s(video_site, tmp_path):
    d, truth = video_site
    video = d / truth["video"]
    assert iso_box_problem(video) is None and container_problem(video) is None
    data = video.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 100):
        part = tmp_path / f"cut{cut}.mp4"
        part.write_bytes(data[:cut])
        assert iso_box_problem(part) is not None, cut
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x1a\x45\xdf\xa3 not a real matroska file")
    assert container_problem(junk) is not None


def _summary(out):
    path = out / "batch_summary.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else None


def _wait_for(check, timeout=180.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_clips_arriving_while_it_runs_and_a_stalled_copy(video_site, tmp_path):
    d, truth = video_site
    data = (d / truth["video"]).read_bytes()
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    first = incoming / "cam_20260501-100000.mp4"
    shutil.copyfile(d / truth["video"], first)
    station = Station(
        load_scaffold(d / "site.ivy"), incoming, out, wse_m=truth["wse_m"], settle_s=0.5,
        orchestrator={"backend": "numba", "figures": False, "tz": "CAT"},
    )  # fmt: skip
    stop = threading.Event()
    failure = []

    def run():
        try:
            station.run(poll_s=0.2, stop=stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert _wait_for(lambda: (s := _summary(out)) is not None and len(s) == 1), failure
        # a second writer is refused while the station holds the folder
        with pytest.raises(ValueError, match="another ivy-gpu run writes into this folder"):
            with FolderLock(out):
                pass
        # a copy that stalls halfway: old enough to have settled, never taken
        stalled = incoming / "cam_20260501-101500.mp4"
        stalled.write_bytes(data[: len(data) // 2])
        os.utime(stalled, (time.time() - 3600, time.time() - 3600))
        # a clip written slowly, in pieces, while the station looks
        slow = incoming / "cam_20260501-103000.mp4"
        with slow.open("wb") as fh:
            for k in range(0, len(data), len(data) // 4):
                fh.write(data[k : k + len(data) // 4])
                fh.flush()
                time.sleep(0.3)
        assert _wait_for(lambda: len(_summary(out)) == 2), failure
        time.sleep(1.0)  # more cycles: the stalled copy stays out
        s = _summary(out)
        assert list(s["video_path"].map(lambda p: p.rsplit("/", 1)[-1])) == [
            first.name, slow.name
        ]  # fmt: skip
        assert set(s["status"]) == {"completed"}
        why = station.state.waiting[stalled]
        assert "past the end" in why or "no 'moov' box" in why, why
        # the copy finishes: taken, and placed in time order between the others
        with stalled.open("ab") as fh:
            fh.write(data[len(data) // 2 :])
        assert _wait_for(lambda: len(_summary(out)) == 3), failure
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not failure, failure
    s = _summary(out)
    names = [p.rsplit("/", 1)[-1] for p in s["video_path"]]
    assert names == [first.name, "cam_20260501-101500.mp4", slow.name]
    assert set(s["status"]) == {"completed"} and set(s["wse_source"]) == {"fixed"}
    q = s["discharge_m3s"].astype(float)
    assert q.tolist() == pytest.approx([q[0]] * 3, rel=1e-9)  # the same clip three times
    with xr.open_dataset(out / "record.nc") as rec:
        times = [str(t)[:19] for t in rec["time"].values]
    assert times == ["2026-05-01T08:00:00", "2026-05-01T08:15:00", "2026-05-01T08:30:00"]
    page = (out / "report.html").read_text()
    assert all(n in page for n in names)
    # a restart keeps what is done: nothing processed again
    again = Station(
        load_scaffold(d / "site.ivy"), incoming, out, wse_m=truth["wse_m"], settle_s=0.5,
        orchestrator={"backend": "numba", "figures": False, "tz": "CAT"},
    )  # fmt: skip
    b = again.run(once=True)
    assert [r.reused for r in b.video_results] == [True, True, True]
    assert _summary(out)["reused"].tolist() == ["yes"] * 3


def test_watch_cli_takes_the_wse_from_the_gauge_and_waits_for_a_sidecar(video_site, tmp_path):
    d, truth = video_site
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    shutil.copyfile(d / truth["video"], incoming / "site_20260501-100000.mp4")
    stage = tmp_path / "stage.csv"
    stage.write_text(
        "time,stage_m\n"
        f"2026-05-01T09:00:00+02:00,{truth['wse_m'] - 100:.4f}\n"
        f"2026-05-01T11:00:00+02:00,{truth['wse_m'] - 100:.4f}\n"
    )
    args = ["watch", str(d / "site.ivy"), str(incoming), "-o", str(out), "--once",
            "--settle", "0", "--no-figures", "--backend", "numba", "--gauge", str(stage),
            "--tz", "CAT"]  # fmt: skip
    res = runner.invoke(app, [*args, "--sidecar", "--stage-datum", "100"])
    assert res.exit_code == 0, res.output
    assert "no complete clip" in res.output and "no site_20260501-100000.mp4.done yet" in res.output
    (incoming / "site_20260501-100000.mp4.done").write_text("")
    res = runner.invoke(app, [*args, "--sidecar", "--stage-datum", "100"])
    assert res.exit_code == 0, res.output
    assert "1 of 1 clips completed" in res.output
    s = _summary(out)
    assert s["wse_source"].tolist() == ["gauge"]
    assert float(s["water_surface_elevation_m"][0]) == pytest.approx(truth["wse_m"])
    # no way to know the WSE: refused before anything runs
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "a station needs the WSE" in res.output


def test_a_station_on_a_dask_cluster(video_site, tmp_path):
    """`watch --workers N`: the clips run on the cluster's workers, the record as before."""
    from ivy_gpu.pipeline.cluster import local_client

    d, truth = video_site
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    shutil.copyfile(d / truth["video"], incoming / "cam_20260501-100000.mp4")
    client = local_client(1, "numba")
    try:
        station = Station(
            load_scaffold(d / "site.ivy"), incoming, out, wse_m=truth["wse_m"], settle_s=0.0,
            orchestrator={"backend": "numba", "figures": False, "client": client},
        )  # fmt: skip
        b = station.run(once=True)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert b.successful == 1 and not b.video_results[0].reused
    assert _summary(out)["status"].tolist() == ["completed"]
    with xr.open_dataset(out / "record.nc") as rec:
        assert rec.sizes["time"] == 1


def test_a_done_clip_is_not_looked_up_again(video_site, tmp_path, monkeypatch):
    """Each cycle rebuilds the record's rows; a done clip's time and WSE come from memory."""
    d, truth = video_site
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    shutil.copyfile(d / truth["video"], incoming / "cam_20260501-100000.mp4")
    calls = []

    def lookup(row, path):
        calls.append(path.name)
        return truth["wse_m"], ""

    station = Station(
        load_scaffold(d / "site.ivy"), incoming, out, wse_lookup=lookup, settle_s=0.0,
        orchestrator={"backend": "numba", "figures": False},
    )  # fmt: skip
    with FolderLock(out):
        assert station.cycle().successful == 1
        shutil.copyfile(d / truth["video"], incoming / "cam_20260501-101500.mp4")
        b = station.cycle()
        assert station.cycle() is None  # nothing new: no cycle
    assert b.successful == 2 and [r.reused for r in b.video_results] == [True, False]
    assert calls == ["cam_20260501-100000.mp4", "cam_20260501-101500.mp4"]
    assert _summary(out)["wse_source"].tolist() == ["gauge", "gauge"]
