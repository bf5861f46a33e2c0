"""Overrides without reprocessing: the arithmetic node by node, the files, resume, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ivy_gpu import process_batch, recompute
from ivy_gpu.cli.main import app
from ivy_gpu.params import VideoConfig
from ivy_gpu.pipeline.overrides import Override, parse_overrides, read_overrides
from ivy_gpu.report.page import build_report


@pytest.fixture(scope="module")
def measured(video_site, tmp_path_factory):
    """One processed video folder (copied per test, so each starts from the measurement)."""
    d, truth = video_site
    out = tmp_path_factory.mktemp("measured")
    video = VideoConfig(d / truth["video"], truth["wse_m"], max_frames=90)
    b = process_batch(d / "site.ivy", [video], out, backend="numba")
    assert b.successful == 1, b.video_results[0].error_message
    return out, b.video_results[0]


@pytest.fixture
def folder(measured, tmp_path):
    out, r = measured
    copy = tmp_path / "batch"
    shutil.copytree(out, copy)
    return copy / r.output_directory.name, r


def _table(folder):
    return pd.read_csv(folder / "discharge_table.csv", encoding="utf-8-sig")


def test_without_overrides_the_measured_result_comes_back(folder):
    path, r = folder
    again = recompute(path)
    assert again.total_discharge == pytest.approx(r.total_discharge, rel=1e-8)
    for key in ("iso_u95", "time_u95", "u95"):  # the time windows come back from the table
        assert again.discharge_uncertainty[key] == pytest.approx(
            r.discharge_uncertainty[key], rel=1e-6
        ), key
    assert again.discharge_uncertainty["window_discharges"] == pytest.approx(
        r.discharge_uncertainty["window_discharges"], rel=1e-7
    )
    assert (again.quality_rating, again.quality_reasons) == (r.quality_rating, r.quality_reasons)
    assert list(_table(path)["Source"]) == list(r.discharge_dataframe["Source"])


def test_a_redraw_from_the_saved_inputs_shows_what_the_first_drawing_showed(folder):
    """The STIs are saved as the figures drew them, so ``stis.png`` and every node's image
    in ``review.html`` come back byte for byte (the backdrop alone goes through a JPEG)."""
    path, _ = folder
    first = {name: (path / name).read_bytes() for name in ("stis.png", "review.html")}
    assert first["review.html"].count(b"data:image/jpeg;base64,") > 5
    recompute(path)
    for name, data in first.items():
        assert (path / name).read_bytes() == data, name


def test_a_set_node_holds_its_value_in_every_time_window(folder):
    path, r = folder
    src = list(r.discharge_dataframe["Source"])[1:-1]
    k = next(i for i in range(2, len(src) - 2) if src[i - 2 : i + 3] == ["measured"] * 5)
    res = recompute(path, [Override(k, "set", 0.0)])
    # each window's discharge loses that node's panel as the clip's does
    table = r.discharge_dataframe
    w, d, a = table.loc[k + 1, ["Width", "Depth", "α (alpha)"]]
    windows = pd.read_csv(path / "stiv_results.csv")[[f"window_{i}_ms" for i in (1, 2, 3, 4)]]
    drop = a * w * d * windows.loc[k].to_numpy()
    before = np.array(r.discharge_uncertainty["window_discharges"])
    after = np.array(res.discharge_uncertainty["window_discharges"])
    assert after == pytest.approx(before - drop, rel=1e-6)


def test_set_exclude_keep_node_by_node(folder):
    path, r = folder
    before = _table(path)
    src = list(before["Source"])
    # a measured node whose neighbours are measured: set and exclude touch its row only
    k = next(i for i in range(2, len(src) - 3) if src[i - 1 : i + 2] == ["measured"] * 3) - 1
    row = k + 1  # the table's first row is the water edge
    exact = r.discharge_dataframe  # full precision (the CSV has 7 digits)
    w, d, a = exact.loc[row, ["Width", "Depth", "α (alpha)"]]
    v_old = exact.loc[row, "Surface Velocity"]
    res = recompute(path, [Override(k, "set", 0.0, "still water, seen on the video")])
    after = _table(path)
    assert res.total_discharge == pytest.approx(r.total_discharge - a * v_old * w * d, rel=1e-9)
    assert after.loc[row, "Surface Velocity"] == 0.0 and after.loc[row, "Source"] == "override"
    others = [i for i in range(len(after)) if i != row]
    assert np.allclose(
        after.loc[others, "Surface Velocity"], before.loc[others, "Surface Velocity"]
    )
    assert list(after.loc[others, "Source"]) == [src[i] for i in others]
    # exclude: filled from its two neighbours, by station
    recompute(path, [Override(k, "exclude")])
    after = _table(path)
    s = before["Station Distance"].to_numpy()
    v = before["Surface Velocity"].to_numpy()
    want = np.interp(s[row], [s[row - 1], s[row + 1]], [v[row - 1], v[row + 1]])
    assert after.loc[row, "Surface Velocity"] == pytest.approx(want, rel=1e-6)
    assert after.loc[row, "Source"] == "excluded"
    # keep: a node a flag left out counts with its measured value
    nodes = pd.read_csv(path / "stiv_results.csv", keep_default_na=False)
    nodes.loc[k, "flags"] = "outlier"
    nodes.to_csv(path / "stiv_results.csv", index=False)
    assert _table(path).loc[row, "Source"] == "excluded"  # (the table of the exclude above)
    flagged = recompute(path)
    assert _table(path).loc[row, "Source"] == "excluded"
    kept = recompute(path, [Override(k, "keep")])
    assert _table(path).loc[row, "Source"] == "override"
    assert _table(path).loc[row, "Surface Velocity"] == pytest.approx(v_old, rel=1e-6)
    assert kept.total_discharge == pytest.approx(r.total_discharge, rel=1e-8)
    assert flagged.total_discharge != pytest.approx(kept.total_discharge, rel=1e-9)


def test_the_files_say_what_was_overridden_and_resume_keeps_it(folder, video_site):
    path, r = folder
    d, truth = video_site
    (path.parent / "ov.csv").write_text("node,action,velocity_ms,note\n3,set,-0.05,eddy\n")
    res = CliRunner().invoke(
        app, ["recompute", str(path), "--overrides", str(path.parent / "ov.csv")]
    )
    assert res.exit_code == 0, res.output
    assert "overrides applied: node 3 set -0.05 m/s" in res.output
    data = json.loads((path / "results.json").read_text())
    assert data["overrides"] == [{"node": 3, "action": "set", "velocity_ms": -0.05, "note": "eddy"}]
    q = data["discharge_m3s"]
    summary = pd.read_csv(path.parent / "batch_summary.csv", dtype=str, keep_default_na=False)
    assert float(summary.loc[0, "discharge_m3s"]) == pytest.approx(q, rel=1e-4)
    assert summary.loc[0, "overrides"] == "1"
    assert "1 overridden by hand" in build_report(path.parent).read_text()
    for png in ("rectified_vectors.png", "section.png", "stis.png"):
        assert (path / png).stat().st_size > 1000  # redrawn from figure_data.npz
    video = VideoConfig(d / truth["video"], truth["wse_m"], max_frames=90)
    again = process_batch(d / "site.ivy", [video], path.parent, backend="numba", resume=True)
    assert again.video_results[0].reused
    assert again.video_results[0].total_discharge == pytest.approx(q, rel=1e-12)
    summary = pd.read_csv(path.parent / "batch_summary.csv", dtype=str, keep_default_na=False)
    assert summary.loc[0, "overrides"] == "1"


def test_recompute_refuses_what_it_cannot_stand_behind(folder, tmp_path, video_site):
    path, _ = folder
    with pytest.raises(ValueError, match="node 0 has no measured velocity to keep"):
        nodes = pd.read_csv(path / "stiv_results.csv", keep_default_na=False)
        nodes.loc[0, "normal_velocity_ms"] = ""
        nodes.to_csv(path / "stiv_results.csv", index=False)
        recompute(path, [Override(0, "keep")])
    other = tmp_path / "other.ivy"
    d, _ = video_site
    shutil.copy(d / "site.ivy", other)
    with other.open("ab") as fh:
        fh.write(b"\0")  # another file: not the scaffold the video was measured with
    with pytest.raises(ValueError, match="not the scaffold this video was measured with"):
        recompute(path, scaffold=other)
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "results.json").write_text('{"status": "failed"}')
    with pytest.raises(ValueError, match="not a completed result"):
        recompute(failed)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty overrides file"),
        ("node,velocity_ms\n1,0.2\n", "row 1: no 'action' column"),
        ("node,action,speed\n1,set,0.2\n", "row 1: unknown column 'speed'"),
        ("node,action\nx,keep\n", "row 2, column node: 'x' is not a node number"),
        ("node,action\n25,keep\n", "row 2, column node: 25 is not a node"),
        ("node,action\n-1,keep\n", "row 2, column node: -1 is not a node"),
        (
            "node,action\n1,keep\n\n1,exclude\n",
            "row 4, column node: node 1 is already set on row 2",
        ),
        ("node,action\n1,delete\n", "row 2, column action: 'delete' is not one of"),
        ("node,action,velocity_ms\n1,set,\n", "row 2, column velocity_ms: '' is not a velocity"),
        ("node,action,velocity_ms\n1,set,nan\n", "row 2, column velocity_ms: 'nan' is not a river"),
        ("node,action,velocity_ms\n1,set,1e400\n", "column velocity_ms: '1e400' is not a river"),
        ("node,action,velocity_ms\n1,keep,0.3\n", "only a 'set' row takes a velocity"),
        ("node,action\n1,keep,extra\n", "row 2: more cells than columns"),
    ],
)
def test_bad_override_files_get_one_line_naming_row_and_column(tmp_path, text, match):
    f = tmp_path / "ov.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as exc:
        read_overrides(f, 25)
    assert str(exc.value).startswith(str(f)) and "\n" not in str(exc.value)


def test_unreadable_override_files(tmp_path):
    for name, data, match in (
        ("bin.csv", b"node,action\n\xff\xfe1,keep\n", "not UTF-8"),
        ("nul.csv", b"node,action\n1\x00,keep\n", "NUL"),
        ("big.csv", b"node,action\n" + b"1,keep\n" * 200_000, "over 1024 KiB"),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=match):
            read_overrides(tmp_path / name, 25)
    with pytest.raises(ValueError, match="cannot read the overrides file"):
        read_overrides(tmp_path / "missing.csv", 25)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_any_text_gives_overrides_or_one_value_error(text):
    try:
        rows = parse_overrides(text, "ov.csv", 25)
    except ValueError as exc:
        assert str(exc).startswith("ov.csv") and "\n" not in str(exc)
    else:
        assert all(0 <= o.node < 25 and o.action in ("exclude", "keep", "set") for o in rows)
        assert len({o.node for o in rows}) == len(rows)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.integers(-3, 30),
            st.sampled_from(["exclude", "keep", "set", "SET", "", "x"]),
            st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=4)),
        ),
        max_size=8,
    )
)
def test_any_table_of_overrides_gives_overrides_or_one_value_error(cells):
    lines = ["node,action,velocity_ms,note"]
    lines += [f"{n},{a},{'' if v is None else v},n" for n, a, v in cells]
    try:
        parse_overrides("\n".join(lines) + "\n", "ov.csv", 25)
    except ValueError as exc:
        assert str(exc).startswith("ov.csv: row ") and "\n" not in str(exc)
