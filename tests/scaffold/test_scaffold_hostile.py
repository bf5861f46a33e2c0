"""Hostile scaffolds: every malformed key, corrupt member or bomb is one line, never a traceback."""

from __future__ import annotations

import json
import resource
import time
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from ivy_gpu.cli.main import app
from ivy_gpu.scaffold.ivyfile import PROJECT_JSON, load_scaffold
from ivy_gpu.synthetic.sites import SiteSpec, make_site

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    make_site(d, SiteSpec(), video=False)
    return d / "site.ivy"


def _edit(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == PROJECT_JSON:
                project = json.loads(data)
                project.update(changes)
                data = json.dumps(project).encode()
            zout.writestr(name, data)
    return dst


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("rectification_rmse_m", {"a": 1}, "key 'rectification_rmse_m' must be a number, got dict"),
        ("mask_polygons", 3, "key 'mask_polygons' must be a list, got int"),
        ("ffmpeg_parameters", "rotate=90", "key 'ffmpeg_parameters' must be an object, got str"),
        ("stiv_num_pixels", 1e9, "key 'stiv_num_pixels' must be a finite number in"),
        ("number_grid_points_along_xs_line", 1e9, "number_grid_points_along_xs_line' must be"),
        ("stiv_phi_range", "wide", "key 'stiv_phi_range' must be a number, got str"),
        ("mask_polygons", ["[1, 2, 3, 4, 5]"], "key .mask_polygons. must hold polygons"),
        ("mask_polygons", ["[[1, 2], [3, 4], [5]]"], "key .mask_polygons. is not a numeric array"),
        ("results_grid", "[[1, 2], [3]]", "key 'results_grid'"),
        ("video_metadata", {"width": "wide", "height": 720}, "video_metadata.width"),
    ],
)
def test_each_malformed_key_is_one_line_naming_the_key(good, tmp_path, key, value, match):
    bad = _edit(good, tmp_path / "bad.ivy", **{key: value})
    with pytest.raises(ValueError, match=match) as info:
        load_scaffold(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_infinite_number_is_refused(good, tmp_path):
    bad = tmp_path / "inf.ivy"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == PROJECT_JSON:
                text = data.decode().replace(
                    '"stiv_num_pixels": ', '"stiv_num_pixels": 1e400, "x": '
                )
                data = text.encode()
            zout.writestr(name, data)
    with pytest.raises(ValueError, match="stiv_num_pixels' must be a finite number"):
        load_scaffold(bad)


def test_corrupt_member_is_reported_as_corrupt(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo(PROJECT_JSON)
    # flip bytes inside the compressed JSON: the CRC (or the inflater) catches it
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    for k in range(start, start + 8):
        data[k] ^= 0xFF
    bad = tmp_path / "crc.ivy"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is corrupt|not valid JSON"):
        load_scaffold(bad)


def test_a_zip_bomb_member_is_refused_before_decompressing(good, tmp_path):
    bomb = tmp_path / "bomb.ivy"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        with zout.open("2-orthorectification/huge.bin", "w", force_zip64=True) as fh:
            block = b"\0" * (1 << 24)
            for _ in range(192):  # declares 3 GiB, compresses to a few MB
                fh.write(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="declares 3221225472 bytes"):
        load_scaffold(bomb)
    assert time.perf_counter() - t0 < 1.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def _edit_rect(src, dst, **changes):
    with zipfile.ZipFile(src) as zin:
        rp = dict(json.loads(zin.read(PROJECT_JSON))["rectification_parameters"])
    rp.update(changes)
    return _edit(src, dst, rectification_parameters=rp)


@pytest.mark.parametrize(
    "key, value",
    [("water_surface_elev", [1, 2]), ("pad_x", [0]), ("pad_y", {"a": 1}), ("cell_size_m", [2])],
)
def test_a_list_where_a_number_belongs_names_the_key(good, tmp_path, key, value):
    """Was a TypeError traceback (issue 24 item 7)."""
    bad = _edit_rect(good, tmp_path / "bad.ivy", **{key: value})
    with pytest.raises(ValueError, match=f"rectification_parameters: key '{key}' is not a number"):
        load_scaffold(bad)
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_deeply_nested_project_json_is_one_line(good, tmp_path):
    """JSON nested 100,000 deep was a RecursionError traceback (issue 24 item 7)."""
    bad = tmp_path / "deep.ivy"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == PROJECT_JSON:
                data = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            zout.writestr(name, data)
    with pytest.raises(ValueError, match="nests too deep to be a project"):
        load_scaffold(bad)


def test_an_encrypted_member_is_one_line(good, tmp_path):
    """A member flagged encrypted was a RuntimeError traceback (issue 24 item 7)."""
    bad = tmp_path / "locked.ivy"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
    raw = bytearray(bad.read_bytes())
    # set the "encrypted" bit (bit 0 of the flags) of every local and central header
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := raw.find(sig, start)) >= 0:
            raw[i + offset] |= 1
            start = i + 4
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="cannot be read .*encrypted") as info:
        load_scaffold(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_a_section_line_leaving_the_plan_view_is_refused_not_filled(video_site, tmp_path):
    """A line from x = -5000 to 9000 px gave Q -46 % with 'validate: ok' (issue 24 item 1)."""
    from ivy_gpu import process_video
    from ivy_gpu.hydraulics.grid import inside_fraction

    d, truth = video_site
    with zipfile.ZipFile(d / "site.ivy") as zf:
        line = json.loads(json.loads(zf.read(PROJECT_JSON))["cross_section_line"])
    (x0, y0), (x1, y1) = np.asarray(line, float).reshape(2, 2)  # IVyTools: [[[x, y], [x, y]]]
    wide = [[[x0 - 5000, y0], [x1 + 5000, y1]]]
    bad = _edit(d / "site.ivy", tmp_path / "wide.ivy", cross_section_line=json.dumps(wide))
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2 and "cross_section_line: " in res.output, res.output
    assert "outside the" in res.output and str(bad) in res.output.replace("\n", "")
    r = process_video(bad, d / truth["video"], truth["wse_m"], max_frames=40, backend="numba")
    assert not r.success and r.error_stage == "grid" and "cross_section_line" in r.error_message
    # the geometry of the rule itself, on a 100 x 50 image
    assert inside_fraction(np.array([[10.0, 10], [90, 40]]), 50, 100) == 1.0
    assert inside_fraction(np.array([[-100.0, 10], [99, 10]]), 50, 100) == pytest.approx(99 / 199)
    assert inside_fraction(np.array([[200.0, 10], [300, 10]]), 50, 100) == 0.0
    assert inside_fraction(np.array([[50.0, -10], [50, 110]]), 50, 100) == pytest.approx(49 / 120)
