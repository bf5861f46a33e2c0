"""Outputs other tools read: velocities.nc (CF), velocities.geojson, record.nc.

Checked against the synthetic site's truth node by node (world position on the surveyed
section, velocity components of the true flow), against a CF checker (IOOS
compliance-checker, CF 1.11) and a GeoJSON schema written from RFC 7946.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from ivy_gpu import process_batch, recompute
from ivy_gpu.interop import NODE_SOURCES, flag_bits, record_dataset
from ivy_gpu.params import NODE_FLAGS, VideoConfig
from ivy_gpu.pipeline.analysis import world_vectors
from ivy_gpu.results import ProcessingResult
from ivy_gpu.scaffold.ivyfile import load_scaffold
from ivy_gpu.synthetic.sites import Site, SiteSpec

CRS = "EPSG:32735"  # UTM 35S (Lusaka)
DATA = Path(__file__).resolve().parents[1] / "data"


def cf_check(path: Path, tmp_path: Path) -> dict:
    """The IOOS compliance checker's CF 1.11 report of ``path`` (its JSON)."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    out = tmp_path / f"{path.stem}_cf.json"
    ComplianceChecker.run_checker(
        str(path), ["cf:1.11"], 0, "normal", output_filename=str(out), output_format="json"
    )
    return next(iter(json.loads(out.read_text()).values()))


def messages(report: dict) -> list[str]:
    return [m for p in report["all_priorities"] for m in p["msgs"]]


@pytest.fixture(scope="module")
def with_crs(video_site, tmp_path_factory):
    """The synthetic site in UTM 35S, three clips of its video with times, a gauge with stage."""
    d, truth = video_site
    sc = load_scaffold(d / "site.ivy")
    sc = dataclasses.replace(sc, rectification=dataclasses.replace(sc.rectification, crs=CRS))
    out = tmp_path_factory.mktemp("interop")
    videos = [  # listed out of time order: the record sorts them
        VideoConfig(d / truth["video"], truth["wse_m"], start_time=a, end_time=b,
                    measurement_number=k, measurement_date="2026-05-01",
                    measurement_time=t + "+02:00")
        for k, (a, b, t) in enumerate([(None, None, "10:30:00"), (1.0, 2.9, "10:00:00")], 1)
    ]  # fmt: skip
    b = process_batch(sc, videos, out, backend="numba", figures=False)
    assert b.successful == 2, [r.error_message for r in b.video_results]
    return out, b, truth


def test_velocities_nc_holds_every_node_where_the_truth_puts_it(with_crs, tmp_path):
    out, b, truth = with_crs
    r = b.video_results[0]  # the whole clip
    spec = SiteSpec(**truth["spec"])
    site = Site(spec)
    with xr.open_dataset(r.output_directory / "velocities.nc") as ds:
        ds = ds.load()
    n = len(r.stiv_magnitudes)
    assert ds.sizes["node"] == n
    # positions: on the surveyed section line (y constant), x = survey start + station
    np.testing.assert_allclose(ds["y"], spec.y_section_m, atol=0.02)
    np.testing.assert_allclose(ds["x"], spec.x_left_m + ds["station"], atol=0.02)
    lo, hi = site.section.water_edges(truth["wse_m"])
    assert (ds["station"] >= lo - 1e-6).all() and (ds["station"] <= hi + 1e-6).all()
    # velocity: the true surface speed along the flow's bearing (8 deg east of north)
    g = np.deg2rad(spec.flow_angle_deg)
    speed = site.surface_speed(ds["station"].to_numpy(), truth["wse_m"])
    measured = ds["source"].to_numpy() == NODE_SOURCES.index("measured")
    assert measured.sum() >= 0.8 * n
    # the last node sits on the right water edge (zero depth): it reads the flow beside it
    for k in np.flatnonzero(measured[:-1]):
        # north (normal to this east-west section) as tight as the normal velocity; the
        # bearing of the best search line scatters: within 12 deg
        assert ds["velocity_y"][k] == pytest.approx(speed[k] * np.cos(g), abs=0.04), k
        off = (float(ds["direction"][k]) - spec.flow_angle_deg + 180) % 360 - 180
        assert abs(off) <= 12.0, (k, off)
        assert np.sign(ds["velocity_x"][k]) == np.sign(np.sin(np.deg2rad(off) + g)), k
    np.testing.assert_allclose(ds["speed"], r.stiv_magnitudes, equal_nan=True)
    np.testing.assert_allclose(ds["normal_velocity"], r.stiv_normal_velocities, equal_nan=True)
    np.testing.assert_allclose(np.hypot(ds["velocity_x"], ds["velocity_y"]), ds["speed"])
    # flags: the bit mask decodes to each node's flags
    meanings = ds["flags"].attrs["flag_meanings"].split()
    masks = ds["flags"].attrs["flag_masks"]
    for k, fl in enumerate(r.node_flags):
        decoded = {m for m, bit in zip(meanings, masks, strict=True) if ds["flags"][k] & bit}
        assert decoded == {f for f in fl.split(";") if f}, k
    # the clip's window, the time and the CRS
    np.testing.assert_allclose(ds["clip_window"], [0.0, r.num_frames * r.timestep_seconds])
    assert str(ds["time"].values[0]).startswith("2026-05-01T08:30:00")  # 10:30 +02:00
    with xr.open_dataset(b.video_results[1].output_directory / "velocities.nc") as late:
        np.testing.assert_allclose(late["clip_window"], [1.0, 1.0 + 57 / 30])
        assert str(late["time"].values[0]).startswith("2026-05-01T08:00:01")  # + the start
    assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
    assert "32735" in ds["crs"].attrs["crs_wkt"] or "UTM zone 35S" in ds["crs"].attrs["crs_wkt"]
    assert ds["speed"].attrs["grid_mapping"] == "crs"
    assert ds["lon"].attrs["units"] == "degrees_east" and np.all(np.abs(ds["lat"]) <= 90)
    for name, var in ds.variables.items():
        if var.dtype.kind == "f" and name not in ("time", "time_bnds"):
            assert "units" in var.attrs, name
    report = cf_check(r.output_directory / "velocities.nc", tmp_path)
    assert report["high_count"] == 0 and report["medium_count"] == 0, messages(report)


def test_velocities_geojson_is_valid_and_matches_the_netcdf(with_crs):
    import jsonschema

    out, b, _ = with_crs
    r = b.video_results[0]
    data = json.loads((r.output_directory / "velocities.geojson").read_text())
    jsonschema.validate(data, json.loads((DATA / "geojson_points.schema.json").read_text()))
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32735"
    with xr.open_dataset(r.output_directory / "velocities.nc") as ds:
        xy = np.array([f["geometry"]["coordinates"] for f in data["features"]])
        np.testing.assert_allclose(xy[:, 0], ds["x"])
        np.testing.assert_allclose(xy[:, 1], ds["y"])
        for f, vx, fl in zip(data["features"], ds["velocity_x"].values, r.node_flags, strict=True):
            got = f["properties"]["velocity_x_ms"]
            assert (got is None and np.isnan(vx)) or got == pytest.approx(float(vx))
            assert f["properties"]["flags"] == fl


def test_record_nc_is_a_cf_time_series_of_the_batch(with_crs, tmp_path):
    out, b, _ = with_crs
    with xr.open_dataset(out / "record.nc") as ds:
        ds = ds.load()
    assert ds.attrs["featureType"] == "timeSeries"
    assert ds["station_name"].attrs["cf_role"] == "timeseries_id"
    # in time order: the second video was taken first
    assert list(ds["video"].values) == ["river.mp4", "river.mp4"]
    first, second = b.video_results[1], b.video_results[0]
    np.testing.assert_allclose(ds["discharge"], [first.total_discharge, second.total_discharge])
    u = np.array([first.discharge_uncertainty["u95"], second.discharge_uncertainty["u95"]])
    np.testing.assert_allclose(ds["discharge_upper_95"], ds["discharge"] * (1 + u))
    np.testing.assert_allclose(ds["discharge_lower_95"], ds["discharge"] * (1 - u))
    assert str(ds["time"].values[0]).startswith("2026-05-01T08:00:01")
    assert str(ds["time"].values[1]).startswith("2026-05-01T08:30:00")
    assert -90 <= float(ds["lat"]) <= 90 and -180 <= float(ds["lon"]) <= 180
    assert list(ds["quality_rating"].attrs["flag_meanings"].split()) == ["good", "fair", "poor"]
    assert ds["quality_rating"].dtype.kind == "i"  # every video rated: integers, no fill
    assert [("good", "fair", "poor")[k] for k in ds["quality_rating"].values] == [
        first.quality_rating, second.quality_rating
    ]  # fmt: skip
    report = cf_check(out / "record.nc", tmp_path)
    assert report["high_count"] == 0 and report["medium_count"] == 0, messages(report)
    # the same through the API
    api = b.to_xarray()
    np.testing.assert_allclose(api["discharge"], ds["discharge"])


def test_a_recompute_rewrites_the_interop_files(with_crs, tmp_path):
    out, b, _ = with_crs
    copy = tmp_path / "batch"
    shutil.copytree(out, copy)
    folder = copy / b.video_results[0].output_directory.name
    (folder / "overrides.csv").write_text("node,action,velocity_ms\n5,set,0.123\n")
    again = recompute(folder, folder / "overrides.csv")
    with xr.open_dataset(folder / "velocities.nc") as ds:
        assert float(ds["normal_velocity"][5]) == pytest.approx(again.stiv_normal_velocities[5])
        assert int(ds["source"][5]) == NODE_SOURCES.index("override")
        assert ds.attrs["discharge_m3s"] == pytest.approx(again.total_discharge)
    geo = json.loads((folder / "velocities.geojson").read_text())
    assert geo["features"][5]["properties"]["source"] == "override"
    # the batch's record: this video's row has the new numbers, the other row and every time
    # are as they were
    with xr.open_dataset(out / "record.nc") as before, xr.open_dataset(copy / "record.nc") as now:
        row = list(now["output_folder"].values).index(folder.name)
        assert float(now["discharge"][row]) == pytest.approx(again.total_discharge)
        assert float(before["discharge"][row]) != float(now["discharge"][row])
        u = again.discharge_uncertainty["u95"]
        assert float(now["discharge_upper_95"][row]) == pytest.approx(
            again.total_discharge * (1 + u)
        )
        other = 1 - row
        assert float(now["discharge"][other]) == float(before["discharge"][other])
        assert np.array_equal(now["time"].values, before["time"].values)
        assert now["quality_rating"].dtype.kind == "i"
    report = cf_check(copy / "record.nc", tmp_path)
    assert report["high_count"] == 0 and report["medium_count"] == 0, messages(report)


def test_a_site_without_crs_or_time_still_gives_checked_files(video_site, tmp_path):
    d, truth = video_site
    video = VideoConfig(d / truth["video"], truth["wse_m"], max_frames=60)
    b = process_batch(d / "site.ivy", [video], tmp_path, backend="numba", figures=False)
    r = b.video_results[0]
    ds = r.to_xarray()
    assert "crs" not in ds and "time" not in ds and ds.attrs["crs"] == ""
    assert "x" in ds  # a camera-matrix site has world coordinates, in its own system
    data = json.loads((r.output_directory / "velocities.geojson").read_text())
    assert "crs" not in data and data["ivy_gpu_coordinates"] == "world"
    report = cf_check(r.output_directory / "velocities.nc", tmp_path)
    assert report["high_count"] == 0 and report["medium_count"] == 0, messages(report)
    record = xr.open_dataset(tmp_path / "record.nc")
    assert record.sizes["time"] == 0 and record.attrs["videos_left_out"] == 1
    record.close()


def test_flag_bits_and_a_failed_result():
    bits = flag_bits(["", "still", "outlier;unsteady", "invalid;still"])
    k = {name: 1 << i for i, name in enumerate(NODE_FLAGS)}
    assert list(bits) == [0, k["still"], k["outlier"] | k["unsteady"], k["invalid"] | k["still"]]
    failed = ProcessingResult(Path("v.mp4"), error_stage="read", error_message="broken")
    with pytest.raises(ValueError, match="v.mp4: no per-node results"):
        failed.to_xarray()
    assert record_dataset([failed]).sizes["time"] == 0


@pytest.mark.parametrize("flip_x,flip_y", [(False, False), (True, False), (False, True)])
def test_world_components_undo_the_plan_views_flips(flip_x, flip_y):
    """A node moving plan-view right (geo 90) moves world -X when the plan view is x-flipped."""
    rect = SimpleNamespace(
        has_world_grid=True,
        params=SimpleNamespace(flip_x=flip_x, flip_y=flip_y),
        pixel_to_world=lambda c, r: (np.asarray(c, float), np.asarray(r, float)),
    )
    comp, xy = world_vectors(rect, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1.0, 2.0]),
                             np.array([90.0, 0.0]))  # fmt: skip
    np.testing.assert_allclose(comp, [[-1 if flip_x else 1, 0], [0, -2 if flip_y else 2]],
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(xy, [[1, 2], [3, 4]])
    plan = SimpleNamespace(has_world_grid=False)
    comp, xy = world_vectors(plan, np.zeros((1, 2)), np.array([1.0]), np.array([90.0]))
    assert xy is None and comp[0] == pytest.approx([1.0, 0.0])
