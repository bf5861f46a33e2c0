"""Nothing written outside its folder, nothing deleted that we did not make, no stale result.

Each case failed on the code before it (issue 24, items 2-5 and CSV injection).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ivy_gpu import process_batch, process_video
from ivy_gpu.fileio import csv_cell, csv_cell_text, folder_name, our_temporary
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.batch_csv import BATCH_FILES
from ivy_gpu.pipeline.outputs import VIDEO_FILES
from ivy_gpu.report.page import build_report


@pytest.fixture
def clip(video_site, tmp_path):
    d, truth = video_site
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(d / truth["video"], folder / "a.mp4")
    return folder, d / "site.ivy", truth


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_row_named_dot_dot_writes_inside_the_output_folder(clip, tmp_path):
    folder, scaffold, truth = clip
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    mine = tmp_path / "work" / "results.json"
    mine.write_text("a user's file beside the output folder")
    before = _files(tmp_path / "work") - _files(out)
    videos = [VideoConfig(Path(".."), truth["wse_m"]), VideoConfig(Path("."), truth["wse_m"])]
    b = process_batch(scaffold, videos, out, backend="numba")
    assert b.failed == 2
    assert mine.read_text() == "a user's file beside the output folder"
    assert _files(tmp_path / "work") - _files(out) == before  # nothing new outside -o
    for r in b.video_results:
        assert r.output_directory.resolve().parent == out.resolve()
        assert (r.output_directory / "results.json").is_file()


def test_a_video_named_like_our_own_files_is_processed(clip, tmp_path):
    folder, scaffold, truth = clip
    video = folder / "batch_summary.csv.mp4"
    shutil.copy(folder / "a.mp4", video)
    shutil.copy(folder / "a.mp4", folder / "A.mp4.mp4")
    videos = [VideoConfig(video, truth["wse_m"], max_frames=60),
              VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=60),
              VideoConfig(folder / "A.mp4.mp4", truth["wse_m"], max_frames=60)]  # fmt: skip
    b = process_batch(scaffold, videos, tmp_path / "out", backend="numba", figures=False)
    assert [r.success for r in b.video_results] == [True, True, True], [
        r.error_message for r in b.video_results
    ]
    names = [r.output_directory.name for r in b.video_results]
    assert names[0] == "batch_summary.csv_" and (tmp_path / "out" / "batch_summary.csv").is_file()
    assert len({n.lower() for n in names}) == 3  # distinct on a case-insensitive file system


def test_a_failed_rerun_leaves_only_the_failed_result(clip, tmp_path):
    folder, scaffold, truth = clip
    out = tmp_path / "out"
    ok = process_video(scaffold, folder / "a.mp4", truth["wse_m"], out, max_frames=60)
    assert ok.success and {p.name for p in (out / "a").iterdir()} == set(VIDEO_FILES)
    bad = process_video(scaffold, folder / "a.mp4", truth["wse_m"], out, start_time=2.9)
    assert not bad.success and bad.error_stage == "read"
    assert {p.name for p in (out / "a").iterdir()} == {"results.json"}
    assert '"status": "failed"' in (out / "a" / "results.json").read_text()


def test_the_summary_cannot_carry_a_formula(clip, tmp_path):
    folder, scaffold, truth = clip
    shutil.copy(folder / "a.mp4", folder / "-b.mp4")
    videos = [
        VideoConfig(folder / "a.mp4", truth["wse_m"], max_frames=60,
                    comments='=HYPERLINK("http://example.invalid","x")'),
        VideoConfig(folder / "-b.mp4", truth["wse_m"], max_frames=60, comments="@SUM(1,2)"),
    ]  # fmt: skip
    out = tmp_path / "out"
    b = process_batch(scaffold, videos, out, backend="numba", figures=False)
    assert b.successful == 2
    raw = pd.read_csv(out / "batch_summary.csv", dtype=str, keep_default_na=False)
    assert list(raw["comments"]) == ['\'=HYPERLINK("http://example.invalid","x")', "'@SUM(1,2)"]
    assert list(raw["output_folder"]) == ["a", "'-b"]
    assert not any(str(v).startswith(("=", "+", "@")) for v in raw.to_numpy().ravel())
    assert raw["discharge_m3s"].map(float).gt(0).all()  # numbers stay numbers
    page = build_report(out).read_text()
    assert "-b.mp4" in page and "'-b" not in page  # the report reads the text back


def test_names_and_temporaries_helpers():
    assert folder_name("..", "row2") == "row2" and folder_name(".", "row3") == "row3"
    assert folder_name(".hidden", "x") == "hidden"
    assert folder_name("a/b\\c\x01", "x") == "a_b_c_"
    assert folder_name("REPORT.HTML", "x", BATCH_FILES) == "REPORT.HTML_"
    assert our_temporary(".results.json.k3v9x_2a.tmp", VIDEO_FILES)
    assert not our_temporary(".draft.tmp", VIDEO_FILES)
    assert not our_temporary(".results.json.1234.tmp", VIDEO_FILES)
    assert not our_temporary(".notes.txt.k3v9x_2a.tmp", VIDEO_FILES)
    for text in ("=1+1", "+cmd", "-x", "@a", "\tz", "plain", "-0.05", "+3"):
        assert csv_cell_text(csv_cell(text)) == text
    assert csv_cell("-0.05") == "-0.05" and csv_cell("=1") == "'=1"
