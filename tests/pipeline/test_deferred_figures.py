"""Figures off the critical path: drawn on the figure thread, results.json still last."""

from __future__ import annotations

import json
import threading

import ivy_gpu.pipeline.process as process_mod
from ivy_gpu import process_batch
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.executors import LocalExecutor


def _videos(d, truth, n=3):
    return [
        VideoConfig(d / truth["video"], truth["wse_m"], start_time=0.5 * k, max_frames=45)
        for k in range(n)
    ]


def _run(d, truth, out, defer: bool):
    from ivy_gpu.pipeline.batch import BatchOrchestrator, BatchRow
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    videos = _videos(d, truth)
    rows = [BatchRow(k + 2, v.video_path, str(v.water_surface_elevation), v)
            for k, v in enumerate(videos)]  # fmt: skip
    orch = BatchOrchestrator(load_scaffold(d / "site.ivy"), out, backend="numba")
    orch.executor = LocalExecutor(defer_figures=defer)
    return orch.run(rows)


def test_figures_are_drawn_on_the_figure_thread_and_change_nothing(video_site, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    d, truth = video_site
    threads = []
    real = process_mod.write_figures

    def spy(ctx):
        threads.append(threading.current_thread().name)
        return real(ctx)

    monkeypatch.setattr(process_mod, "write_figures", spy)
    later = _run(d, truth, tmp_path / "deferred", defer=True)
    assert len(threads) == 3 and all(t.startswith("ivy-figures") for t in threads), threads
    inline = _run(d, truth, tmp_path / "inline", defer=False)
    assert len(threads) == 3  # drawn inside the writers, not through the deferred path
    for a, b in zip(later.video_results, inline.video_results, strict=True):
        assert a.success and b.success
        assert a.total_discharge == b.total_discharge  # bit-identical
        assert a.output_directory.name == b.output_directory.name
        assert "figures" in a.stage_seconds and "figures" not in b.stage_seconds
        folder = a.output_directory
        data = json.loads((folder / "results.json").read_text())
        assert data["status"] == "completed" and data["stage_seconds"]["figures"] > 0
        # results.json is written last: after every figure
        last = (folder / "results.json").stat().st_mtime_ns
        for png in ("rectified_vectors.png", "stis.png", "section.png", "review.html"):
            assert (folder / png).stat().st_mtime_ns <= last, png
    # in CSV order
    assert [r.video_path for r in later.video_results] == [v.video_path for v in _videos(d, truth)]


def test_a_figure_that_fails_fails_its_video_only(video_site, tmp_path, monkeypatch):
    d, truth = video_site
    real = process_mod.write_figures
    calls = []

    def second_fails(ctx):
        calls.append(ctx.out.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(ctx)

    monkeypatch.setattr(process_mod, "write_figures", second_fails)
    b = _run(d, truth, tmp_path, defer=True)
    ok = [r.success for r in b.video_results]
    assert ok == [True, False, True]
    bad = b.video_results[1]
    assert bad.error_stage == "save" and "No space left on device" in bad.error_message
    data = json.loads((bad.output_directory / "results.json").read_text())
    assert data["status"] == "failed"
    # nothing left that reads as this video's result: the tables written before went
    assert not (bad.output_directory / "discharge_table.csv").exists()
    assert not (bad.output_directory / "velocities.nc").exists()


def test_process_batch_defers_by_default_and_process_video_does_not(video_site, tmp_path):
    d, truth = video_site
    b = process_batch(d / "site.ivy", _videos(d, truth, 1), tmp_path / "b", backend="numba")
    assert "figures" in b.video_results[0].stage_seconds
    from ivy_gpu import process_video

    r = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], tmp_path / "p",
                      max_frames=45, backend="numba")  # fmt: skip
    assert r.success and "figures" not in r.stage_seconds
    assert (r.output_directory / "stis.png").is_file()


def test_without_figures_nothing_is_deferred(video_site, tmp_path):
    d, truth = video_site
    b = process_batch(d / "site.ivy", _videos(d, truth, 2), tmp_path, backend="numba",
                      figures=False)  # fmt: skip
    assert all(r.success and "figures" not in r.stage_seconds for r in b.video_results)
    assert not list(tmp_path.glob("*/*.png"))
