"""Site set-up without the GUI: surveys, build -> save -> load -> process, pyorc import, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ivy_gpu.cli.main import app
from ivy_gpu.pipeline.process import process_video
from ivy_gpu.scaffold.camera import CameraModel
from ivy_gpu.scaffold.ivyfile import load_scaffold
from ivy_gpu.scaffold.lens import LensModel
from ivy_gpu.scaffold.rectify import Rectifier
from ivy_gpu.site.builder import SiteOptions, build_site, write_site
from ivy_gpu.site.survey import read_survey
from ivy_gpu.synthetic.sites import Site, SiteSpec, make_site

NGWERERE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "ngwerere"
SPEC = SiteSpec()


def _channel(b: np.ndarray) -> np.ndarray:
    """Analytic parabolic bed: 100 m at the banks (b = 0, 8), 98 m in the middle."""
    return 98.0 + 2.0 * (b / 4.0 - 1.0) ** 2


def test_xyz_survey_stations_follow_the_polyline(tmp_path):
    b = np.linspace(0.0, 8.0, 81)
    bearing = np.deg2rad(30.0)  # a section that runs obliquely across the map
    x, y = 500.0 + b * np.sin(bearing), 7000.0 + b * np.cos(bearing)
    f = tmp_path / "xs.csv"
    ft = np.column_stack([x, y, _channel(b)]) / 0.3048
    f.write_text("x (ft),y (ft),z (ft)\n" + "".join(f"{a},{b_},{c}\n" for a, b_, c in ft))
    sv = read_survey(f)
    assert np.allclose(sv.section.stations, b, atol=1e-9)
    wse = 99.5
    lo, hi = sv.section.water_edges(wse)
    half = 4.0 * np.sqrt(1.5 / 2.0)  # where the parabola crosses 99.5 m
    assert lo == pytest.approx(4 - half, abs=2e-3) and hi == pytest.approx(4 + half, abs=2e-3)
    exact = 2.0 * (1.5 * half - 2.0 / 3.0 * half**3 / 16.0)  # integral of wse - z
    assert sv.section.wetted_area(wse) == pytest.approx(exact, rel=2e-3)
    ends = sv.edge_points(wse)
    assert np.allclose(ends[0], [500 + lo * np.sin(bearing), 7000 + lo * np.cos(bearing)])


def test_station_elevation_csv_and_geojson_in_lon_lat(tmp_path):
    from pyproj import Transformer  # a declared dependency: missing, the test fails

    f = tmp_path / "se.csv"
    f.write_text("Station,Elevation\n0,10\n2,8\n4,10\n")
    s = read_survey(f).section
    assert s.stations.tolist() == [0, 2, 4] and s.elevations.tolist() == [10, 8, 10]
    # points surveyed in UTM 35S, stored as lon/lat GeoJSON: reprojected back to UTM
    utm = np.array([[642732.2, 8304295.8, 1182.3], [642734.0, 8304295.5, 1181.9],
                    [642735.9, 8304295.2, 1182.4]])  # fmt: skip
    lon, lat = Transformer.from_crs("EPSG:32735", "OGC:CRS84", always_xy=True).transform(
        utm[:, 0], utm[:, 1]
    )
    feats = [
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Point", "coordinates": [a, b, z]},
        }
        for a, b, z in zip(lon, lat, utm[:, 2], strict=True)
    ]
    g = tmp_path / "xs.geojson"
    g.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    sv = read_survey(g, crs="EPSG:32735")
    assert np.allclose(sv.xy, utm[:, :2], atol=1e-3)
    with pytest.raises(ValueError, match="xs.geojson: the points are lon/lat"):
        read_survey(g)


def test_bad_surveys_get_one_line_errors(tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text("a,b,c,d\n1,2,3,4\n")
    with pytest.raises(ValueError, match="odd.csv: cannot tell the survey's columns"):
        read_survey(f)
    g = tmp_path / "hole.csv"
    g.write_text("x,y,z\n1,2,3\n4,,6\n")
    with pytest.raises(ValueError, match="hole.csv: the survey has a missing"):
        read_survey(g)


def _synthetic_inputs(tmp_path: Path):
    site = Site(SPEC)
    world, pixel, ids = site.gcps()
    b, z = site.section.stations, site.section.elevations
    xyz = tmp_path / "xyz.csv"
    xyz.write_text("x,y,z\n" + "".join(
        f"{SPEC.x_left_m + bi},{SPEC.y_section_m},{zi}\n" for bi, zi in zip(b, z, strict=True)
    ))  # fmt: skip
    frame = next(site.render(n_frames=1))
    return site, world, pixel, ids, read_survey(xyz), frame


def test_build_save_load_process_matches_truth(tmp_path):
    truth = make_site(tmp_path)  # the video, and the GUI-style scaffold to compare with
    site, world, pixel, ids, survey, frame = _synthetic_inputs(tmp_path)
    build = build_site(world, pixel, frame, survey, SPEC.wse_m, options=SiteOptions(fps=SPEC.fps))
    assert build.calibration.solver == "dlt+lm"
    cfg = write_site(build, tmp_path / "built.ivy")
    assert cfg.calibration_size == (SPEC.width_px, SPEC.height_px)
    assert cfg.rectification.cell_size_m == pytest.approx(build.scaffold.pixel_gsd_m)
    # downstream is north (+Y), which is up in the plan view
    assert cfg.stiv.phi_origin == pytest.approx(0.0, abs=0.5) or cfg.stiv.phi_origin > 359.5
    r = process_video(tmp_path / "built.ivy", tmp_path / "river.mp4", SPEC.wse_m,
                      tmp_path / "out", alpha=SPEC.alpha)  # fmt: skip
    assert r.success, r.error
    assert r.total_discharge == pytest.approx(truth["discharge_m3s"], rel=0.03)
    assert r.total_area == pytest.approx(truth["area_m2"], rel=0.01)


def test_homography_site_with_chosen_cell_size_round_trips(tmp_path):
    site, world, _, _, survey, frame = _synthetic_inputs(tmp_path)
    flat = world.copy()
    flat[:, 2] = SPEC.wse_m
    pixel = site.camera.project(flat)
    opts = SiteOptions(cell_size_m=0.02, fps=SPEC.fps)
    build = build_site(flat[:6], pixel[:6], frame, survey, SPEC.wse_m, options=opts)
    assert build.calibration.method == "homography"
    cfg = write_site(build, tmp_path / "h.ivy")
    rect = Rectifier(cfg.rectification, SPEC.wse_m, cfg.calibration_size)
    assert rect.pixel_gsd == 0.02
    # a world point on the water plane: its plan-view cell samples the pixel the camera sees
    probe = np.array([22.37, 30.61])
    c, r = rect.world_to_pixel(probe[:1], probe[1:])
    ci, ri = int(round(c[0])), int(round(r[0]))
    wx, wy = rect.pixel_to_world(np.array([ci]), np.array([ri]))
    seen = site.camera.project(np.array([[wx[0], wy[0], SPEC.wse_m]]))[0]
    assert np.allclose([rect.map_x[ri, ci], rect.map_y[ri, ci]], seen, atol=1e-3)


def test_lens_and_cell_survive_save_and_load(tmp_path):
    site, world, _, _, survey, frame = _synthetic_inputs(tmp_path)
    k = np.array([[576.0, 0, 320], [0, 576.0, 180], [0, 0, 1]])
    lens = LensModel(k, [-0.1, 0.02, 0, 0, 0])
    ideal = site.camera.project(world)
    raw = np.column_stack(lens.distort(ideal[:, 0], ideal[:, 1]))
    build = build_site(world[:5], raw[:5], frame, survey, SPEC.wse_m, lens,
                       SiteOptions(cell_size_m=0.015))  # fmt: skip
    cfg = write_site(build, tmp_path / "lens.ivy")
    assert np.allclose(cfg.rectification.lens.dist_coeffs, [-0.1, 0.02, 0, 0, 0])
    a = Rectifier(build.scaffold.rectification, SPEC.wse_m, (SPEC.width_px, SPEC.height_px))
    b = Rectifier(cfg.rectification, SPEC.wse_m, cfg.calibration_size)
    assert np.array_equal(a.map_x, b.map_x) and b.pixel_gsd == 0.015
    assert np.linalg.norm(CameraModel(cfg.rectification.camera_matrix).centre
                          - site.camera.centre) < 1e-3  # fmt: skip


def test_site_cli_create_show_and_refusal(tmp_path):
    import cv2

    site, world, pixel, ids, _, frame = _synthetic_inputs(tmp_path)
    gcps = tmp_path / "gcps.csv"
    gcps.write_text("# ID,X (m),Y (m),Z (m),X (pixel),Y (pixel)\n" + "".join(
        f"{i},{x},{y},{z},{u},{v}\n" for i, (x, y, z), (u, v) in zip(ids, world, pixel, strict=True)
    ))  # fmt: skip
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    runner = CliRunner()
    args = ["site", "create", "-o", str(tmp_path / "s.ivy"), "--gcps", str(gcps),
            "--frame", str(tmp_path / "frame.png"), "--crs", "EPSG:32735",
            "--section", str(tmp_path / "xyz.csv"), "--wse", str(SPEC.wse_m),
            "--nodes", "15"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "camera matrix (dlt+lm), 10/10 GCPs" in res.output
    assert load_scaffold(tmp_path / "s.ivy").num_grid_points == 15
    assert load_scaffold(tmp_path / "s.ivy").rectification.crs == "EPSG:32735"  # for the NetCDF
    show = ["site", "show", str(tmp_path / "s.ivy"), "-o", str(tmp_path / "s.png")]
    res = runner.invoke(app, show)
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(tmp_path / "s.png")).shape[1] > 800
    few = tmp_path / "few.csv"
    few.write_text("".join(gcps.read_text().splitlines(keepends=True)[:4]))
    res = runner.invoke(app, [*args[:3], str(tmp_path / "few.ivy"), "--gcps", str(few), *args[6:]])
    assert res.exit_code == 2
    assert "few.csv: 3 GCPs are too few" in res.output
    assert not (tmp_path / "few.ivy").exists()
    for wse in ("nan", "inf"):  # was an IndexError traceback (issue 24 item 7)
        bad = [*args[:-3], wse, *args[-2:]]
        bad[3] = str(tmp_path / "nan.ivy")
        res = runner.invoke(app, bad)
        assert res.exit_code == 2 and "wse: must be a finite water level" in res.output, res.output
        assert not (tmp_path / "nan.ivy").exists()


@pytest.mark.skipif(not NGWERERE.is_dir(), reason="needs ../shared/fixtures/ngwerere")
def test_ngwerere_from_pyorc_then_process(tmp_path):
    from ivy_gpu.site.builder import site_from_pyorc

    build = site_from_pyorc(
        NGWERERE / "ngwerere.json", NGWERERE / "cross_section1.geojson",
        NGWERERE / "ngwerere_20191103.mp4",
    )  # fmt: skip
    c = build.calibration
    assert c.solver == "pnp" and c.rms_px < 8.0 and c.rms_m < 0.06
    # the reprojection-optimal pose; the fixture's P3P pose fits these GCPs at 18 px
    centre = CameraModel(c.camera_matrix).centre
    assert centre[2] > 1182.2 + 5.0
    lens_position = np.array([642732.67, 8304289.01, 1188.5])  # pyorc's example, surveyed
    assert np.linalg.norm(centre - lens_position) < 2.5  # measured 1.89 m, see docs
    sec = build.scaffold.cross_section
    lo, hi = sec.water_edges(1182.2)
    assert hi - lo == pytest.approx(3.446, rel=0.01)
    assert sec.wetted_area(1182.2) == pytest.approx(0.571, rel=0.02)
    write_site(build, tmp_path / "ng.ivy")
    r = process_video(tmp_path / "ng.ivy", NGWERERE / "ngwerere_20191103.mp4", 1182.2,
                      tmp_path / "out", alpha=0.85)  # fmt: skip
    assert r.success, r.error
    assert 0.1 < r.total_discharge < 0.35
    # pyorc's CRS (a WKT of UTM 35S) reaches the GIS outputs: the nodes lie in Lusaka
    import xarray as xr

    with xr.open_dataset(r.output_directory / "velocities.nc") as ds:
        assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
        assert np.all((ds["lon"] > 28.32) & (ds["lon"] < 28.34)), ds["lon"].values
        assert np.all((ds["lat"] > -15.34) & (ds["lat"] < -15.32)), ds["lat"].values
        assert np.all(np.abs(ds["x"] - 642733) < 10) and np.all(np.abs(ds["y"] - 8304296) < 10)
    geo = json.loads((r.output_directory / "velocities.geojson").read_text())
    assert geo["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32735"


def test_pyorc_import_on_a_synthetic_camera(tmp_path):
    """pyorc's keys mapped as pyorc defines them: z_0/h_ref, intrinsics, bbox, resolution."""
    import cv2

    from ivy_gpu.site.builder import site_from_pyorc

    site, world, _, _, _, frame = _synthetic_inputs(tmp_path)
    water = np.array([[21.0, 29.0], [25.0, 29.2], [24.6, 31.0], [21.4, 30.8]])
    z0 = SPEC.wse_m
    src = site.camera.project(np.column_stack([water, np.full(4, z0)]))
    f = 0.9 * SPEC.width_px
    cam = {
        "height": SPEC.height_px, "width": SPEC.width_px, "crs": 32735, "resolution": 0.02,
        "gcps": {"src": src.tolist(), "dst": water.tolist(), "h_ref": 0.5, "z_0": z0},
        "camera_matrix": [[f, 0, SPEC.width_px / 2], [0, f, SPEC.height_px / 2], [0, 0, 1]],
        "dist_coeffs": [[0.0]] * 5,
        "bbox": "POLYGON ((19.5 27.5, 27.5 27.5, 27.5 32.5, 19.5 32.5, 19.5 27.5))",
        "stabilize": [[0, 0], [100, 0], [100, 100], [0, 100]],
    }  # fmt: skip
    (tmp_path / "cam.json").write_text(json.dumps(cam))
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    # a gauge reading of 0.5 (= h_ref) puts the water at z_0
    build = site_from_pyorc(tmp_path / "cam.json", tmp_path / "xyz.csv", tmp_path / "frame.png",
                            h=0.5)  # fmt: skip
    c = build.calibration
    assert c.solver == "pnp" and c.rms_px < 1e-4
    assert np.linalg.norm(CameraModel(c.camera_matrix).centre - site.camera.centre) < 1e-3
    r = build.scaffold.rectification
    assert r.cell_size_m == 0.02 and np.allclose(r.extent, [19.5, 27.5, 27.5, 32.5])
    assert r.calibration_wse_m == pytest.approx(z0)
    assert build.scaffold.project["stabilization_polygon"] == cam["stabilize"]
    higher = site_from_pyorc(tmp_path / "cam.json", tmp_path / "xyz.csv",
                             tmp_path / "frame.png", h=0.7)  # fmt: skip
    assert higher.scaffold.rectification.calibration_wse_m == pytest.approx(z0 + 0.2)
    # on the command line: the polygon and the velocity limit replace pyorc's and the default
    r = CliRunner().invoke(app, [
        "site", "from-pyorc", str(tmp_path / "cam.json"), "--section", str(tmp_path / "xyz.csv"),
        "--video", str(tmp_path / "frame.png"), "--h-a", "0.5", "-o", str(tmp_path / "p.ivy"),
        "--stable-polygon", "0,200,120,200,120,300,0,300", "--max-velocity", "1.2",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = load_scaffold(tmp_path / "p.ivy")
    assert cfg.project["stabilization_polygon"] == [[0, 200], [120, 200], [120, 300], [0, 300]]
    assert cfg.stiv.max_vel_threshold == 1.2
    assert cfg.rectification.crs == "EPSG:32735"  # pyorc's, kept for the NetCDF and GeoJSON
    r = CliRunner().invoke(app, [
        "site", "from-pyorc", str(tmp_path / "cam.json"), "--section", str(tmp_path / "xyz.csv"),
        "--video", str(tmp_path / "frame.png"), "-o", str(tmp_path / "q.ivy"),
        "--stable-polygon", "0,200,120",
    ])  # fmt: skip
    assert r.exit_code == 2 and "--stable-polygon needs 3 or more x,y pairs" in r.output


def test_binary_gcp_and_survey_files_are_named(tmp_path):
    from ivy_gpu.site.gcp import read_gcp_csv
    from ivy_gpu.site.survey import read_survey

    junk = bytes(range(128, 256)) * 10
    for name in ("gcps.csv", "survey.csv"):
        (tmp_path / name).write_bytes(junk)
    with pytest.raises(ValueError, match=r"gcps.csv: the GCP table is not a UTF-8 CSV text file"):
        read_gcp_csv(tmp_path / "gcps.csv")
    with pytest.raises(ValueError, match=r"survey.csv: the survey is not a UTF-8 CSV text file"):
        read_survey(tmp_path / "survey.csv")


def test_site_create_refuses_gcps_outside_the_frame_and_absurd_cells(tmp_path):
    from ivy_gpu.synthetic.sites import SiteSpec, make_site

    make_site(tmp_path, SiteSpec(duration_s=0.5))
    rows = (tmp_path / "gcps.csv").read_text().splitlines()
    cells = rows[1].split(",")
    cells[4], cells[5] = "1000000", "-1000000"
    (tmp_path / "far.csv").write_text("\n".join([rows[0], ",".join(cells), *rows[2:]]) + "\n")
    base = ["site", "create", "--frame", str(tmp_path / "river.mp4"), "--section",
            str(tmp_path / "survey_xyz.csv"), "--wse", "100.8"]  # fmt: skip
    r = CliRunner().invoke(
        app, [*base, "--gcps", str(tmp_path / "far.csv"), "-o", str(tmp_path / "a.ivy")]
    )
    assert (
        r.exit_code == 2 and "far.csv: GCP GCP1 at pixel (1e+06, -1e+06) lies outside" in r.output
    )
    r = CliRunner().invoke(
        app,
        [
            *base,
            "--gcps",
            str(tmp_path / "gcps.csv"),
            "--cell-size",
            "1e-9",
            "-o",
            str(tmp_path / "b.ivy"),
        ],
    )
    assert (
        r.exit_code == 2 and "cell size must be in metres in [0.0001, 100], got 1e-09" in r.output
    )
    assert not (tmp_path / "a.ivy").exists() and not (tmp_path / "b.ivy").exists()
