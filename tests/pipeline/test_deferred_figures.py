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


def _run(d, truth, out, defer: bool, n: int = 3, figure_workers: int | None = None):
    from ivy_gpu.pipeline.batch import BatchOrchestrator, BatchRow
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    videos = _videos(d, truth, n)
    rows = [BatchRow(k + 2, v.video_path, str(v.water_surface_elevation), v)
            for k, v in enumerate(videos)]  # fmt: skip
    orch = BatchOrchestrator(load_scaffold(d / "site.ivy"), out, backend="numba")
    orch.executor = LocalExecutor(defer_figures=defer, figure_workers=figure_workers)
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


_DRAWN = ("rectified_vectors.png", "stis.png", "section.png", "review.html", "figure_data.npz")


def test_figure_processes_draw_the_same_files_and_carry_the_callers_settings(
    video_site, tmp_path, monkeypatch
):
    """Two spawned figure processes draw every figure (none in this process) of a batch
    whose caller changed a matplotlib setting: the files are the figure thread's byte for
    byte, with the setting (unlike the defaults' drawing)."""
    import matplotlib as mpl

    import ivy_gpu.pipeline.drawing as drawing

    d, truth = video_site
    here = []
    real = drawing.draw_figures
    monkeypatch.setattr(drawing, "draw_figures", lambda *a: here.append(a) or real(*a))
    default = _run(d, truth, tmp_path / "default", defer=True, n=2)
    with mpl.rc_context({"lines.linewidth": 4.0, "font.size": 7.0}):
        thread = _run(d, truth, tmp_path / "thread", defer=True, n=2)
        procs = _run(d, truth, tmp_path / "procs", defer=True, n=2, figure_workers=2)
    assert here == []  # no fallback: the processes drew
    for a, b, c in zip(thread.video_results, procs.video_results, default.video_results,
                       strict=True):  # fmt: skip
        assert a.success and b.success and c.success
        assert "figures" in b.stage_seconds
        for name in _DRAWN:
            assert (a.output_directory / name).read_bytes() == (
                b.output_directory / name
            ).read_bytes(), name
        section = (a.output_directory / "section.png").read_bytes()
        assert section != (c.output_directory / "section.png").read_bytes()
        last = (b.output_directory / "results.json").stat().st_mtime_ns
        assert all((b.output_directory / f).stat().st_mtime_ns <= last for f in _DRAWN)


def test_when_the_figure_processes_die_the_batch_draws_here_with_one_warning(
    video_site, tmp_path, monkeypatch
):
    import subprocess
    import sys
    import warnings

    import ivy_gpu.pipeline.drawing as drawing

    def dies_at_once(self):  # a process that ends before its first job (killed, or broken)
        self.proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)  # fmt: skip

    d, truth = video_site
    here = []
    real = drawing.draw_figures
    monkeypatch.setattr(drawing._Worker, "__init__", dies_at_once)
    monkeypatch.setattr(drawing, "draw_figures", lambda *a: here.append(a) or real(*a))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = process_batch(d / "site.ivy", _videos(d, truth), tmp_path, backend="numba",
                          figure_workers=2)  # fmt: skip
    assert [r.success for r in b.video_results] == [True, True, True]
    assert len(here) == 3  # every video drawn here
    said = [str(w.message) for w in caught if "figure processes stopped" in str(w.message)]
    assert len(said) == 1 and "a figure process ended" in said[0], said
    for r in b.video_results:
        assert all((r.output_directory / f).is_file() for f in _DRAWN)


def test_a_drawing_that_fails_in_a_process_fails_that_video_and_the_processes_go_on(
    video_site, tmp_path, monkeypatch
):
    import pytest

    import ivy_gpu.pipeline.outputs as outputs
    from ivy_gpu.pipeline.drawing import FigureProcesses

    d, truth = video_site
    calls = []
    real = outputs.draw_figures
    monkeypatch.setattr(outputs, "draw_figures", lambda *a: calls.append(a) or real(*a))
    b = _run(d, truth, tmp_path / "thread", defer=True, n=1)
    out, scaffold, result, data = calls[0]
    drawer = FigureProcesses(1)
    try:
        (tmp_path / "a_file").write_text("not a folder")
        with pytest.raises(OSError):  # the process's own error, raised here
            drawer(tmp_path / "a_file" / "video", scaffold, result, data)
        assert drawer.broken is None
        again = tmp_path / "again"
        again.mkdir()
        drawer(again, scaffold, result, data)
    finally:
        drawer.close()
    for name in ("stis.png", "section.png", "rectified_vectors.png"):  # (review.html links
        assert (again / name).read_bytes() == (out / name).read_bytes(), name  # its batch)
    assert b.video_results[0].success


def test_a_script_without_a_main_guard_batches_with_figure_processes(video_site, tmp_path):
    """The processes do not import the caller's script again (as ``spawn`` would, running
    its batch a second time in each)."""
    import subprocess
    import sys

    d, truth = video_site
    script = tmp_path / "batch_script.py"
    script.write_text(
        "import warnings\n"
        "warnings.simplefilter('error', UserWarning)\n"
        "from ivy_gpu import process_batch\n"
        "from ivy_gpu.params import VideoConfig\n"
        f"v = VideoConfig({str(d / truth['video'])!r}, {truth['wse_m']!r}, max_frames=30)\n"
        f"b = process_batch({str(d / 'site.ivy')!r}, [v, v], {str(tmp_path / 'out')!r},\n"
        "                  backend='numba', figure_workers=2)\n"
        "print('videos done:', b.successful)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=240, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("videos done: 2") == 1, r.stdout
    assert "figure processes stopped" not in r.stderr
    assert len(list((tmp_path / "out").glob("*/stis.png"))) == 2


def test_a_batch_of_one_video_draws_on_the_thread(video_site, tmp_path, monkeypatch):
    import ivy_gpu.pipeline.executors as executors

    started = []
    monkeypatch.setattr(executors, "FigureProcesses", lambda n: started.append(n))
    d, truth = video_site
    b = _run(d, truth, tmp_path / "one", defer=True, n=1, figure_workers=4)
    assert b.video_results[0].success and started == []


def test_figure_workers_setting_is_read_and_refused_in_one_line(monkeypatch):
    import pytest

    from ivy_gpu import config

    monkeypatch.setenv("IVY_GPU_FIGURE_WORKERS", "3")
    assert LocalExecutor().figure_workers == 3
    assert LocalExecutor(figure_workers=2).figure_workers == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("IVY_GPU_FIGURE_WORKERS", bad)
        with pytest.raises(ValueError, match="IVY_GPU_FIGURE_WORKERS"):
            LocalExecutor()
    with pytest.raises(ValueError, match="figure-workers: 0 .automatic. or a process count"):
        LocalExecutor(figure_workers=-2)
    monkeypatch.delenv("IVY_GPU_FIGURE_WORKERS")
    monkeypatch.setattr(config, "usable_cores", lambda: 32)
    assert LocalExecutor().figure_workers == 4  # the Python API's default: from the cores
    assert [config.figure_queue(k) for k in (0, 1, 2, 4)] == [2, 2, 3, 5]  # each drawer busy
    monkeypatch.undo()
    assert 1 <= config.usable_cores() <= (config.os.cpu_count() or 1)
    assert [config.figure_workers_for(c) for c in (None, 2, 4, 7, 8, 16, 64)] == [
        1, 1, 1, 1, 2, 4, 4
    ]  # fmt: skip


def test_a_figure_process_answers_every_job_with_something_the_batch_can_read(monkeypatch):
    """``_serve`` run here on pipes of bytes: a drawing, an error that pickles, one that does
    not (sent as its text, so the next answer is not garbled), then the end."""
    import io
    import pickle

    import ivy_gpu.pipeline.drawing as drawing

    class Unpicklable(Exception):  # a local class: pickle cannot find it again
        pass

    def fake(kind, *rest):
        if kind == "oserror":
            raise OSError(28, "No space left on device", "/out/stis.png")
        if kind == "local":
            raise Unpicklable("drawn wrong")

    monkeypatch.setattr(drawing, "draw_packed", fake)
    jobs = io.BytesIO(b"".join(pickle.dumps(j) for j in (("ok",), ("oserror",), ("local",), None)))
    answers = io.BytesIO()
    drawing._serve(jobs, answers)
    answers.seek(0)
    got = [pickle.load(answers) for _ in range(3)]
    assert got[0] == (True, None)
    assert got[1][0] is False and isinstance(got[1][1], OSError)
    assert got[1][1].strerror == "No space left on device"
    assert got[2][0] is False and type(got[2][1]) is RuntimeError
    assert str(got[2][1]) == "Unpicklable: drawn wrong"
    assert answers.read() == b""  # nothing else written


def test_a_figure_process_settles_once_after_its_first_answer(monkeypatch):
    """``_serve`` calls ``after_first`` (the process's ``gc.freeze``) once, after answering."""
    import io
    import pickle

    import ivy_gpu.pipeline.drawing as drawing

    seen = []
    answers = io.BytesIO()
    monkeypatch.setattr(drawing, "draw_packed", lambda kind: seen.append(("draw", kind)))
    jobs = io.BytesIO(b"".join(pickle.dumps(j) for j in (("a",), ("b",), ("c",), None)))
    drawing._serve(jobs, answers, lambda: seen.append(("settle", answers.tell() > 0)))
    assert seen == [("draw", "a"), ("settle", True), ("draw", "b"), ("draw", "c")]
