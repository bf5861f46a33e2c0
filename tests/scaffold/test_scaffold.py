"""Scaffold .ivy files: reading, both array encodings, round trip and bad inputs."""

import json
import zipfile

import numpy as np
import pytest

from ivy_gpu.scaffold.ivyfile import PROJECT_JSON, load_scaffold, save_scaffold
from ivy_gpu.synthetic.sites import SiteSpec, make_site


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    make_site(d, SiteSpec(display_units="English"), video=False)
    return d


def _rewrite(src, dst, edit=None, drop=()):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == PROJECT_JSON and edit is not None:
                project = json.loads(data)
                edit(project)
                data = json.dumps(project).encode()
            zout.writestr(name, data)
    return dst


def test_synthetic_scaffold_reads(site_dir):
    cfg = load_scaffold(site_dir / "site.ivy")
    assert cfg.display_units == "English" and cfg.rectification.method == "camera matrix"
    assert cfg.rectification.camera_matrix.shape == (3, 4)
    assert cfg.calibration_size == (640, 360)
    assert cfg.cross_section_line.shape == (2, 2)
    assert cfg.stiv.num_pixels % 2 == 0 and cfg.num_grid_points == 25
    assert cfg.cross_section.units == "English"  # the AC3 was written in feet
    assert cfg.cross_section.stations[-1] == pytest.approx(6.0)  # but read back in metres
    assert cfg.rectification_rmse_m < 1e-6  # recomputed from the stored GCPs


def test_round_trip(site_dir, tmp_path):
    cfg = load_scaffold(site_dir / "site.ivy")
    save_scaffold(cfg, tmp_path / "copy.ivy")
    back = load_scaffold(tmp_path / "copy.ivy")
    for name in (
        "display_units",
        "pixel_gsd_m",
        "calibration_size",
        "start_bank",
        "num_grid_points",
        "stiv",
        "rectification_rmse_m",
    ):
        assert getattr(back, name) == getattr(cfg, name), name
    assert np.array_equal(back.cross_section_line, cfg.cross_section_line)
    assert np.array_equal(back.rectification.camera_matrix, cfg.rectification.camera_matrix)
    assert np.array_equal(back.cross_section.stations, cfg.cross_section.stations)
    with zipfile.ZipFile(tmp_path / "copy.ivy") as zf:
        names = zf.namelist()
        project = json.loads(zf.read(PROJECT_JSON))
    assert "5-discharge/cross_section_ac3.mat" in names
    assert isinstance(project["cross_section_line"], str)  # IVyTools' serialized encoding
    assert isinstance(project["rectification_parameters"]["camera_matrix"], list)
    assert list(project) == sorted(project)  # keys sorted, as the GUI writes them


def test_both_array_encodings_and_results_grid(site_dir, tmp_path):
    cfg = load_scaffold(site_dir / "site.ivy")

    def plain(p):
        p["cross_section_line"] = json.loads(p["cross_section_line"])
        p["results_grid"] = [[150, 180], [200, 181], [250, 182]]
        p["mask_polygons"] = [json.dumps([[0, 0], [10, 0], [10, 10]])]
        p["unknown_key"] = {"ignored": True}

    other = load_scaffold(_rewrite(site_dir / "site.ivy", tmp_path / "plain.ivy", plain))
    assert np.array_equal(other.cross_section_line, cfg.cross_section_line)
    assert other.results_grid.shape == (3, 2) and len(other.mask_polygons) == 1


@pytest.mark.parametrize(
    "case,match",
    [
        ("notzip", "not a ZIP archive"),
        ("nojson", "archive has no project_data.json"),
        ("badjson", "project_data.json is not valid JSON"),
        ("missing", "missing required keys: rectification_method, cross_section_line"),
        ("units", "display_units: unknown units 'Imperial'"),
        ("method", "rectification_method 'lidar' is not one of"),
        ("nomat", "archive holds no cross-section .mat"),
        ("matrix", "camera_matrix must be 3x4"),
    ],
)
def test_bad_scaffolds_name_the_file_and_problem(site_dir, tmp_path, case, match):
    src = site_dir / "site.ivy"
    dst = tmp_path / f"{case}.ivy"
    if case == "notzip":
        dst.write_text("hello")
    elif case == "nojson":
        _rewrite(src, dst, drop=(PROJECT_JSON,))
    elif case == "badjson":
        with zipfile.ZipFile(dst, "w") as zf:
            zf.writestr(PROJECT_JSON, "{not json")
    elif case == "missing":
        _rewrite(src, dst, lambda p: [p.pop("rectification_method"), p.pop("cross_section_line")])
    elif case == "units":
        _rewrite(src, dst, lambda p: p.update(display_units="Imperial"))
    elif case == "method":
        _rewrite(src, dst, lambda p: p.update(rectification_method="lidar"))
    elif case == "nomat":
        _rewrite(src, dst, drop=("5-discharge/cross_section_ac3.mat",))
    elif case == "matrix":
        _rewrite(src, dst, lambda p: p["rectification_parameters"].update(camera_matrix=[[1, 2]]))
    with pytest.raises(ValueError, match=match) as info:
        load_scaffold(dst)
    msg = str(info.value)
    assert msg.startswith(str(dst)) and "\n" not in msg
