"""Hostile scaffolds: every malformed key, corrupt member or bomb is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
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
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **kw):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zipfile.ZipFile, "open", spy)
        with pytest.raises(ValueError, match="declares 3221225472 bytes"):
            load_scaffold(bomb)
    assert "2-orthorectification/huge.bin" not in opened  # refused on its header alone
    # and the memory it takes, measured in a fresh process (this one's peak is earlier tests')
    code = (
        "import resource, sys\n"
        "from ivy_gpu.scaffold.ivyfile import load_scaffold\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_scaffold(sys.argv[1])\nexcept ValueError:\n    pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True
    )
    assert int(out.stdout.strip()) < 200, out.stdout  # MB over the import's peak


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


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (1.6 KiB of real data
    would decode to the same 900 MB)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _with_image(src, dst, image: bytes, **changes):
    from ivy_gpu.scaffold.ivyfile import CALIBRATION_IMAGE

    _edit(src, dst.with_suffix(".tmp.ivy"), **changes)
    with zipfile.ZipFile(dst.with_suffix(".tmp.ivy")) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            project = json.loads(zin.read(name)) if name == PROJECT_JSON else None
            if project is not None:
                project.pop("video_metadata", None)
                zout.writestr(name, json.dumps(project))
            else:
                zout.writestr(name, image if name == CALIBRATION_IMAGE else zin.read(name))
    return dst


def test_a_calibration_image_of_900_mpx_is_refused_on_its_header(good, tmp_path):
    bomb = _with_image(good, tmp_path / "png.ivy", _png_header(30000, 30000))
    assert bomb.stat().st_size < 20_000
    with pytest.raises(ValueError, match=r"declares 30000 x 30000 pixels, more than 100 Mpx"):
        load_scaffold(bomb)
    result = runner.invoke(app, ["validate", str(bomb)])
    assert result.exit_code == 2 and "30000 x 30000" in result.output
    assert "calibration_image" in result.output  # names the member


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"width": 30000, "height": 30000}, "30000 x 30000 pixels is more than 100 Mpx"),
        ({"width": 1e400, "height": 720}, "'video_metadata.width' must be a size in pixels"),
        ({"width": 640.5, "height": 360}, "width and height must be whole pixels"),
        ({"width": "wide", "height": 360}, "'video_metadata.width' must be a size in pixels"),
    ],
)
def test_video_metadata_sizes_are_checked(good, tmp_path, meta, match):
    bad = _edit(good, tmp_path / "meta.ivy", video_metadata=meta)
    with pytest.raises(ValueError, match=match):
        load_scaffold(bad)


def test_a_site_frame_image_is_refused_on_its_header(tmp_path):
    from ivy_gpu.site.builder import read_frame

    path = tmp_path / "frame.png"
    path.write_bytes(_png_header(20000, 20000))
    with pytest.raises(ValueError, match=r"frame.png: the image declares 20000 x 20000"):
        read_frame(path)
    path.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"frame.png: not a readable image"):
        read_frame(path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"camera_matrix": [[0, 0, 0, 0]] * 3}, r"camera_matrix: not a camera .*singular"),
        ({"pixel_coords": [[1, 2], [3, 4]]}, r"pixel_coords has 2 points and world_coords 10"),
        ({"pixel_coords": [[1, 2, 3]] * 10}, r"pixel_coords must be \(x, y\) pairs"),
        ({"extent": [30, 20, 40, 30]}, r"extent must be \[x_min, x_max, y_min, y_max\] with"),
        ({"extent": [20, 20, 30, 30]}, r"extent must be .* got \[20.0, 20.0, 30.0, 30.0\]"),
        ({"extent": [float("nan"), 27, 28, 32]}, r"extent must be .* got \[nan, 27.0"),
        ({"cell_size_m": float("nan")}, r"cell_size_m must be a cell size in metres"),
        ({"cell_size_m": 1e-9}, r"cell_size_m must be a cell size in metres .* got 1e-09"),
    ],
)
def test_geometry_that_cannot_be_a_site_is_named(good, tmp_path, changes, match):
    bad = _edit_rect(good, tmp_path / "geom.ivy", **changes)
    with pytest.raises(ValueError, match=match) as info:
        load_scaffold(bad)
    assert str(info.value).startswith(str(bad)) and str(info.value).count(str(bad)) == 1
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "rectification_parameters" in result.output


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"number_grid_points_along_xs_line": 2.5},
            r"'number_grid_points_along_xs_line' must be a whole",
        ),
        (
            {"mask_polygons": [[[0, 0], [10, 0], [1e400, 10]]]},
            r"'mask_polygons' holds a NaN or inf",
        ),
        ({"stabilization_polygon": "x"}, r"'stabilization_polygon' must be a list of \(x, y\)"),
        ({"stabilization_polygon": [[1, 2]]}, r"'stabilization_polygon' must hold polygons of 3"),
    ],
)
def test_values_validate_called_ok_are_refused(good, tmp_path, changes, match):
    bad = _edit(good, tmp_path / "v.ivy", **changes)
    with pytest.raises(ValueError, match=match):
        load_scaffold(bad)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "ok" not in result.output.split()


def test_suspicious_gcps_are_a_warning_naming_the_key(good, tmp_path):
    with zipfile.ZipFile(good) as z:
        rp = json.loads(z.read(PROJECT_JSON))["rectification_parameters"]
    one = _edit_rect(good, tmp_path / "one.ivy", pixel_coords=rp["pixel_coords"][:1],
                     world_coords=rp["world_coords"][:1])  # fmt: skip
    same = _edit_rect(good, tmp_path / "same.ivy", pixel_coords=[rp["pixel_coords"][0]] * 10,
                      world_coords=[rp["world_coords"][0]] * 10)  # fmt: skip
    for path, said in (
        (one, "world_coords: 1 GCP(s); at least 6 are needed"),
        (same, "world_coords: only 1 of the 10 GCPs are distinct"),
    ):
        result = runner.invoke(app, ["validate", str(path)])
        assert (
            result.exit_code == 0 and f"warning: {path}: rectification_parameters." in result.output
        )
        assert said in result.output
        data = json.loads(runner.invoke(app, ["validate", str(path), "--json"]).output)
        assert any(said in w for w in data["warnings"])
    clean = runner.invoke(app, ["validate", str(good)])
    assert clean.exit_code == 0 and "warning" not in clean.output


@pytest.mark.parametrize("bad_x", [float("nan"), 1e300, float("inf")])
def test_a_section_line_that_is_no_point_is_named(good, tmp_path, bad_x):
    from ivy_gpu.scaffold.ivyfile import encode_array

    line = np.array([[[bad_x, 184.0], [525.0, 184.0]]])
    bad = _edit(good, tmp_path / "line.ivy", cross_section_line=encode_array(line))
    with pytest.raises(
        ValueError, match=r"line.ivy: cross_section_line must be two finite \(x, y\)"
    ):
        load_scaffold(bad)
