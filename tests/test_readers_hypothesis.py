"""Every reader of a user file: any bytes, any value in any key -> a result or one line.

Property-based (Hypothesis, seeded with ``derandomize``): the scaffold reader with any JSON
value in any of its keys (and in any rectification key), the batch CSV reader, the GCP table
and survey readers with any bytes and with tables of any cells. Each gives back what it
reads, or one ``ValueError`` line that starts with the file's name, never another
exception. A longer run: ``HYPOTHESIS_PROFILE=long pytest tests/test_readers_hypothesis.py``
(5,000 examples per reader).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivy_gpu.pipeline.batch_csv import read_batch_csv
from ivy_gpu.scaffold.ivyfile import PROJECT_JSON, ScaffoldConfig, load_scaffold
from ivy_gpu.site.gcp import read_gcp_csv
from ivy_gpu.site.survey import read_survey
from ivy_gpu.synthetic.sites import SiteSpec, make_site

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=5000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Any JSON value (NaN and infinities included), a few levels deep.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
CELL = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "inf", "-inf", "nan", "1e400", "00:00:15", "=cmd()", "Yes", "No"]),
)


def _one_line(exc: ValueError, path: Path) -> None:
    said = str(exc)
    assert said.startswith(str(path)), said
    assert "\n" not in said, said


@pytest.fixture(scope="module")
def scaffold_parts():
    d = Path(tempfile.mkdtemp())
    make_site(d, SiteSpec(), video=False)
    with zipfile.ZipFile(d / "site.ivy") as z:
        members = {n: z.read(n) for n in z.namelist()}
    return d, json.loads(members.pop(PROJECT_JSON)), members


def _scaffold_with(parts, project: dict) -> Path:
    d, _, members = parts
    path = d / "h.ivy"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(PROJECT_JSON, json.dumps(project))
        for name, data in members.items():
            z.writestr(name, data)
    return path


@PROFILE
@given(data=st.data(), value=JSON)
def test_any_value_in_any_scaffold_key(scaffold_parts, data, value):
    _, project, _ = scaffold_parts
    key = data.draw(st.sampled_from(sorted(project)), label="key")
    path = _scaffold_with(scaffold_parts, {**project, key: value})
    try:
        assert isinstance(load_scaffold(path), ScaffoldConfig)
    except ValueError as exc:
        _one_line(exc, path)


@PROFILE
@given(data=st.data(), value=JSON)
def test_any_value_in_any_rectification_key(scaffold_parts, data, value):
    _, project, _ = scaffold_parts
    rp = project["rectification_parameters"]
    key = data.draw(st.sampled_from(sorted(rp) + ["lens_model", "cell_size_m", "world_extent"]))
    path = _scaffold_with(
        scaffold_parts, {**project, "rectification_parameters": {**rp, key: value}}
    )
    try:
        assert isinstance(load_scaffold(path), ScaffoldConfig)
    except ValueError as exc:
        _one_line(exc, path)


@PROFILE
@given(project=JSON)
def test_any_json_as_the_project(scaffold_parts, project):
    path = _scaffold_with(scaffold_parts, project)
    with pytest.raises(ValueError) as info:  # never a scaffold without its keys
        load_scaffold(path)
    _one_line(info.value, path)


def _check_batch(path: Path) -> None:
    try:
        rows = read_batch_csv(path)
    except ValueError as exc:
        _one_line(exc, path)
        return
    for row in rows:
        assert (row.config is None) != (row.error is None)
        if row.error is not None:
            assert row.error.startswith(f"{path}: row {row.line}: ") and "\n" not in row.error


@PROFILE
@given(raw=st.binary(max_size=600))
def test_any_bytes_as_a_batch_csv(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("b") / "batch.csv"
    path.write_bytes(raw)
    _check_batch(path)


BATCH_COLUMNS = (
    "video_path,water_surface_elevation,alpha,start_time,end_time,frame_step,max_frames,"
    "measurement_number,gage_height"
)


@PROFILE
@given(rows=st.lists(st.lists(CELL, min_size=9, max_size=9), min_size=1, max_size=5))
def test_any_cells_in_a_batch_csv(tmp_path_factory, rows):
    import csv

    path = tmp_path_factory.mktemp("b") / "batch.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(BATCH_COLUMNS.split(","))
        w.writerows(rows)
    _check_batch(path)


@PROFILE
@given(raw=st.binary(max_size=600))
def test_any_bytes_as_a_gcp_table_or_a_survey(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("g")
    for name, read in (("gcps.csv", read_gcp_csv), ("survey.csv", read_survey)):
        path = d / name
        path.write_bytes(raw)
        try:
            read(path)
        except ValueError as exc:
            _one_line(exc, path)


@PROFILE
@given(
    header=st.sampled_from(
        [
            "# ID,X,Y,Z,X (pixel),Y (pixel)",
            "ID,X (m),Y (m),Z (m),X (pixel),Y (pixel)",
            "ID,X,Y,X (pixel),Y (pixel)",
            "x (m),y (m),z (m)",
            "Station,Elevation",
        ]
    ),
    rows=st.lists(st.lists(CELL, min_size=1, max_size=7), max_size=8),
)
def test_any_cells_in_a_gcp_table_or_a_survey(tmp_path_factory, header, rows):
    import csv

    d = tmp_path_factory.mktemp("g")
    for name, read in (("gcps.csv", read_gcp_csv), ("survey.csv", read_survey)):
        path = d / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            fh.write(header + "\n")
            csv.writer(fh).writerows(rows)
        try:
            read(path)
        except ValueError as exc:
            _one_line(exc, path)
