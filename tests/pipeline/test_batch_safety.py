"""Batches that never lie: resume by fingerprint, one writer per folder, honest summaries."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

import ivy_gpu.pipeline.batch as batch_mod
from ivy_gpu import process_batch, process_video
from ivy_gpu.cli.main import app
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.lock import FolderLock
from ivy_gpu.scaffold.ivyfile import load_scaffold, save_scaffold

runner = CliRunner()


@pytest.fixture
def clips(video_site, tmp_path):
    d, truth = video_site
    shutil.copy(d / truth["video"], tmp_path / "a.mp4")
    return tmp_path, d / "site.ivy", truth


def _run(scaffold, videos, out, **kw):
    return process_batch(scaffold, videos, out, backend="numba", resume=True, **kw)


def test_resume_reuses_only_results_with_the_same_fingerprint(clips, video_site):
    folder, scaffold, truth = clips
    wse = truth["wse_m"]
    first = _run(scaffold, [VideoConfig(folder / "a.mp4", wse, max_frames=40)], folder / "out")
    assert first.video_results[0].success and not first.video_results[0].reused
    data = json.loads((folder / "out" / "a" / "results.json").read_text())
    assert len(data["fingerprint"]) == 64 and data["error_stage"] is None
    assert data["processing_time_s"] > 0
    prov = data["provenance"]
    assert (
        prov["video_sha256"] and prov["scaffold_sha256"] and prov["started_utc"].endswith("+00:00")
    )
    assert data["inputs"]["stiv"]["search_line"] == "unit"

    same = _run(scaffold, [VideoConfig(folder / "a.mp4", wse, max_frames=40)], folder / "out")
    assert same.video_results[0].reused
    assert same.video_results[0].total_discharge == first.video_results[0].total_discharge
    summary = pd.read_csv(folder / "out" / "batch_summary.csv", keep_default_na=False)
    assert list(summary["reused"]) == ["yes"]

    changes = {
        "the start time": dict(
            video=VideoConfig(folder / "a.mp4", wse, start_time=0.2, max_frames=40)
        ),
        "1 mm of WSE": dict(video=VideoConfig(folder / "a.mp4", wse + 0.001, max_frames=40)),
        "the STIV settings": dict(
            video=VideoConfig(folder / "a.mp4", wse, max_frames=40), stiv={"refine": False}
        ),
    }
    for what, change in changes.items():
        b = _run(scaffold, [change.pop("video")], folder / "out", **change)
        assert not b.video_results[0].reused, what
    # another video under the same file name
    other = video_site[0] / "other.mp4"
    if not other.exists():
        from ivy_gpu.synthetic.sites import SiteSpec, make_site

        t2 = make_site(
            video_site[0] / "other_site",
            SiteSpec(width_px=1280, height_px=720, duration_s=1.5, seed=99),
        )
        shutil.copy(video_site[0] / "other_site" / t2["video"], other)
    shutil.copy(other, folder / "a.mp4")
    b = _run(scaffold, [VideoConfig(folder / "a.mp4", wse, max_frames=40)], folder / "out")
    assert not b.video_results[0].reused


def test_resume_never_reuses_numbers_edited_since(clips):
    """results.json is sealed over its values and its tables: an edit makes the row run again."""
    folder, scaffold, truth = clips
    video = VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=40)
    q = _run(scaffold, [video], folder / "out", figures=False).video_results[0].total_discharge
    res = folder / "out" / "a" / "results.json"
    table = folder / "out" / "a" / "discharge_table.csv"
    assert len(json.loads(res.read_text())["result_sha256"]) == 64
    assert _run(scaffold, [video], folder / "out", figures=False).video_results[0].reused
    edits = {
        "the discharge in results.json": lambda: res.write_text(
            res.read_text().replace(f'"discharge_m3s": {q!r}', '"discharge_m3s": 9.99')
        ),
        "a velocity in the table": lambda: table.write_text(
            table.read_text().replace("Used", "Used ", 1)
        ),
    }
    for what, edit in edits.items():
        before = res.read_text()
        edit()
        assert res.read_text() != before or what.endswith("table"), what
        again = _run(scaffold, [video], folder / "out", figures=False).video_results[0]
        assert not again.reused and again.total_discharge == q, what
        assert _run(scaffold, [video], folder / "out", figures=False).video_results[0].reused


def test_resume_recomputes_after_a_scaffold_change(clips):
    folder, scaffold, truth = clips
    videos = [VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=40)]
    _run(scaffold, videos, folder / "out")
    cfg = load_scaffold(scaffold)
    changed = folder / "changed.ivy"
    save_scaffold(cfg.__class__(**{**cfg.__dict__, "num_grid_points": 21}), changed)
    b = _run(changed, videos, folder / "out")
    assert not b.video_results[0].reused


FIGURE_FILES = ("rectified_vectors.png", "stis.png", "section.png")


def test_no_figures_same_numbers_no_pngs_and_resume_draws_them(clips):
    folder, scaffold, truth = clips
    out = folder / "out"
    a = folder / "a.mp4"
    wse = truth["wse_m"]
    drawn = process_video(scaffold, a, wse, out, max_frames=40, backend="numba")
    assert all((out / "a" / f).is_file() for f in FIGURE_FILES)
    bare = process_video(scaffold, a, wse, out, max_frames=40, backend="numba", figures=False)
    assert bare.success and bare.total_discharge == drawn.total_discharge
    # the earlier run's figures went with it: they would show another result
    assert not any((out / "a" / f).exists() for f in FIGURE_FILES)
    assert (out / "a" / "results.json").is_file() and (out / "a" / "discharge_table.csv").is_file()

    videos = [VideoConfig(a, wse, max_frames=40)]
    b = _run(scaffold, videos, folder / "batch", figures=False)
    assert not b.video_results[0].reused
    assert not (folder / "batch" / "a" / FIGURE_FILES[0]).exists()
    again = _run(scaffold, videos, folder / "batch", figures=False)
    assert again.video_results[0].reused  # figures were not asked for: the result is complete
    drawn_now = _run(scaffold, videos, folder / "batch")
    assert not drawn_now.video_results[0].reused  # figures asked for: recomputed, and drawn
    assert all((folder / "batch" / "a" / f).is_file() for f in FIGURE_FILES)
    assert drawn_now.video_results[0].total_discharge == b.video_results[0].total_discharge
    assert _run(scaffold, videos, folder / "batch").video_results[0].reused

    r = runner.invoke(
        app,
        ["process", str(scaffold), str(a), "--wse", str(wse), "-o", str(folder / "cli"),
         "--max-frames", "40", "--backend", "numba", "--no-figures", "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (folder / "cli" / "a" / "results.json").is_file()
    assert not (folder / "cli" / "a" / FIGURE_FILES[0]).exists()


def test_a_second_writer_is_refused_at_once(clips):
    folder, scaffold, truth = clips
    out = folder / "out"
    videos = [VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=40)]
    with FolderLock(out):
        # the lock file's name is shared with every version that may write this folder
        assert (out / ".ivy_gpu.lock").read_text().startswith("pid ")
        with pytest.raises(ValueError, match="another ivy-gpu run writes into this folder"):
            _run(scaffold, videos, out)
        with pytest.raises(ValueError, match=r"\(pid \d+ on "):
            process_video(scaffold, folder / "a.mp4", truth["wse_m"], out, max_frames=40)
        (folder / "b.csv").write_text(
            f"video_path,water_surface_elevation\na.mp4,{truth['wse_m']}\n"
        )
        res = runner.invoke(
            app, ["batch", str(scaffold), str(folder / "b.csv"), "-o", str(out), "-q"]
        )
        assert res.exit_code == 2 and "another ivy-gpu run" in res.output
    # released: the next run goes ahead, and removes the temporaries a killed run left...
    (out / "a").mkdir(parents=True, exist_ok=True)
    (out / "a" / ".results.json.k3v9x_2a.tmp").write_text("half")
    (out / ".batch_summary.csv.0qz8m1ab.tmp").write_text("half")
    # ...and nothing else: not a user's temporary, not one in a folder it did not make
    user = [
        out / "notes" / ".draft.tmp",
        out / ".draft.tmp",
        out / "notes" / ".results.json.k3v9x_2a.tmp",
    ]
    for f in user:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("mine")
    b = _run(scaffold, videos, out)
    assert b.video_results[0].success
    assert sorted(out.rglob(".*.tmp")) == sorted(user)
    assert all(f.read_text() == "mine" for f in user)


def test_a_failed_summary_write_is_reported_and_retried(clips, monkeypatch):
    folder, scaffold, truth = clips
    real = batch_mod.write_summary
    calls = {"n": 0}

    def flaky(path, rows, units):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(28, "No space left on device")
        return real(path, rows, units)

    monkeypatch.setattr(batch_mod, "write_summary", flaky)
    videos = [VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=40)] * 2
    b = process_batch(scaffold, videos, folder / "out", backend="numba")
    assert [r.success for r in b.video_results] == [True, True]  # the batch went on
    assert b.summary_error is None  # the retry at the end wrote it
    assert len(pd.read_csv(folder / "out" / "batch_summary.csv")) == 2

    def broken(path, rows, units):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch_mod, "write_summary", broken)
    b = process_batch(scaffold, videos[:1], folder / "out2", backend="numba")
    assert b.video_results[0].success
    assert "cannot write the summary (No space left on device)" in b.summary_error


def test_markup_in_a_video_path_is_printed_as_is(clips):
    folder, scaffold, truth = clips
    weird = folder / "clip[old][bold].mp4"
    shutil.copy(folder / "a.mp4", weird)
    res = runner.invoke(
        app,
        [
            "process",
            str(scaffold),
            str(weird),
            "--wse",
            str(truth["wse_m"]),
            "-q",
            "--max-frames",
            "40",
            "--backend",
            "numba",
            "-o",
            str(folder / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "clip[old][bold].mp4" in res.output


def test_validate_is_a_dry_run_that_catches_what_process_would_fail_on(clips):
    folder, scaffold, truth = clips
    import numpy as np

    cfg = load_scaffold(scaffold)
    (folder / "v.csv").write_text(f"video_path,water_surface_elevation\na.mp4,{truth['wse_m']}\n")
    ok = runner.invoke(app, ["validate", str(scaffold), str(folder / "v.csv")])
    assert ok.exit_code == 0, ok.output
    away = cfg.__class__(
        **{**cfg.__dict__, "cross_section_line": np.array([[-900.0, -900.0], [-800.0, -900.0]])}
    )
    save_scaffold(away, folder / "away.ivy")
    res = runner.invoke(app, ["validate", str(folder / "away.ivy"), str(folder / "v.csv")])
    # the scaffold itself fails at its calibration WSE: a bad input, exit 2, naming the key
    assert res.exit_code == 2 and "cross_section_line: 100 % of the line" in res.output, res.output
    rect = cfg.rectification.__class__(
        **{**cfg.rectification.__dict__, "camera_matrix": np.full((3, 4), np.nan)}
    )
    save_scaffold(cfg.__class__(**{**cfg.__dict__, "rectification": rect}), folder / "nan.ivy")
    res = runner.invoke(app, ["validate", str(folder / "nan.ivy"), str(folder / "v.csv")])
    assert res.exit_code == 2 and "NaN" in res.output, res.output


def test_debug_keeps_the_exit_code_and_semicolons_get_a_hint(clips):
    folder, scaffold, truth = clips
    (folder / "semi.csv").write_text(
        f"video_path;water_surface_elevation\na.mp4;{truth['wse_m']}\n"
    )
    for extra in ([], ["--debug"]):
        res = runner.invoke(app, ["batch", str(scaffold), str(folder / "semi.csv"), "-q", *extra])
        assert res.exit_code == 2
        assert "separated by ';'" in res.output


def test_degenerate_calibrations_fail_at_rectify_naming_the_scaffold(clips):
    import numpy as np

    folder, scaffold, truth = clips
    cfg = load_scaffold(scaffold)
    extent = np.array([np.nan, 10.0, 0.0, 10.0])
    rect = cfg.rectification.__class__(**{**cfg.rectification.__dict__, "extent": extent})
    bad = folder / "nan_extent.ivy"
    degenerate = cfg.__class__(**{**cfg.__dict__, "rectification": rect, "path": bad})
    save_scaffold(degenerate, bad)
    # read from the file, the extent is refused at once, naming the key
    with pytest.raises(ValueError, match=r"nan_extent.ivy: rectification_parameters.extent must"):
        load_scaffold(bad)
    # built in Python past the loader, the rectify stage still fails naming the scaffold
    r = process_video(degenerate, folder / "a.mp4", truth["wse_m"], backend="numba", max_frames=20)
    assert not r.success and r.error_stage == "rectify"
    assert r.error_message.startswith(f"{bad}: cannot build the remap tables at WSE")


def test_an_output_path_that_is_a_file_is_one_line_exit_2(clips):
    folder, scaffold, truth = clips
    (folder / "taken").write_text("not a folder")
    videos = [VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=20)]
    with pytest.raises(ValueError, match="taken: cannot create the output folder"):
        process_batch(scaffold, videos, folder / "taken", backend="numba")
    res = runner.invoke(
        app,
        [
            "process",
            str(scaffold),
            str(folder / "a.mp4"),
            "--wse",
            str(truth["wse_m"]),
            "-q",
            "-o",
            str(folder / "taken"),
        ],
    )
    assert res.exit_code == 2 and "taken" in res.output and "Traceback" not in res.output


def test_a_full_disk_at_the_lock_is_no_traceback(clips, monkeypatch):
    """ENOSPC while the lock file is written: the lock still holds, the run goes on."""
    import errno

    import ivy_gpu.pipeline.lock as lock_module

    folder, _, _ = clips

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def write(self, _text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._fh, name)

    real_open = open
    monkeypatch.setattr(
        lock_module, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False
    )
    with FolderLock(folder / "out"):
        with pytest.raises(lock_module.FolderLockedError):
            FolderLock(folder / "out").__enter__()


def test_a_full_temporary_disk_while_unpacking_the_section_is_one_line(clips, monkeypatch):
    import errno
    from pathlib import Path

    _, scaffold, _ = clips
    real = Path.write_bytes

    def too_big(self, data):
        if self.suffix == ".mat":
            raise OSError(errno.EFBIG, "File too large")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", too_big)
    with pytest.raises(
        ValueError, match=r"site.ivy: .*\.mat: cannot unpack to a temporary file \(File too large\)"
    ):
        load_scaffold(scaffold)


def test_the_fingerprint_covers_every_input_and_the_video_bytes(clips, monkeypatch):
    """Each input a result depends on moves the fingerprint; the video's name does not."""
    import dataclasses
    import os

    import ivy_gpu.pipeline.provenance as prov
    from ivy_gpu.stiv.quality import QualityRules, quality_rules

    folder, scaffold_path, truth = clips
    scaffold = load_scaffold(scaffold_path)
    wse = truth["wse_m"]
    video = VideoConfig(folder / "a.mp4", wse)
    stiv, rules = scaffold.stiv, QualityRules()

    def fp(v=video, s=stiv, r=rules, stab=None, sc=scaffold):
        return prov.fingerprint(sc, v, s, r, stab)

    base = fp()
    changed = {
        "WSE": fp(v=dataclasses.replace(video, water_surface_elevation=wse + 1e-6)),
        "alpha": fp(v=dataclasses.replace(video, alpha=0.86)),
        "start": fp(v=dataclasses.replace(video, start_time=0.5)),
        "end": fp(v=dataclasses.replace(video, end_time=2.0)),
        "frame step": fp(v=dataclasses.replace(video, frame_step=2)),
        "max frames": fp(v=dataclasses.replace(video, max_frames=50)),
        "stabilization": fp(stab="on"),
        "min valid fraction": fp(r=quality_rules(0.6)),
        "compat mode": fp(s=stiv.with_compat("ivytools")),
        "a STIV setting": fp(s=stiv.replace(d_theta=0.25)),
        "the stride": fp(s=stiv.replace(stride=not stiv.stride)),
        "a quality rule": fp(r=dataclasses.replace(rules, still_ratio=0.81)),
    }
    other = folder / "other.ivy"  # the same site saved with another display unit
    save_scaffold(dataclasses.replace(scaffold, display_units="English"), other)
    changed["the scaffold's content"] = fp(sc=load_scaffold(other))
    monkeypatch.setattr(prov, "ALGORITHM_VERSION", "next")
    changed["the algorithm version"] = fp()
    monkeypatch.undo()
    for what, value in changed.items():
        assert value != base, what
    assert len(set(changed.values())) == len(changed)
    # a copy under another name is the same video; the same size with other bytes is not
    shutil.copy(folder / "a.mp4", folder / "b.mp4")
    assert fp(v=dataclasses.replace(video, video_path=folder / "b.mp4")) == base
    data = bytearray((folder / "b.mp4").read_bytes())
    data[len(data) // 2] ^= 0xFF
    st = os.stat(folder / "b.mp4")
    (folder / "b.mp4").write_bytes(bytes(data))
    os.utime(folder / "b.mp4", ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before
    assert os.stat(folder / "b.mp4").st_size == st.st_size
    assert fp(v=dataclasses.replace(video, video_path=folder / "b.mp4")) != base
