"""Water levels from the gauge: the stage column of NWIS and plain records, the datum, the rows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from ivy_gpu.cli.main import app
from ivy_gpu.pipeline.batch_csv import read_batch_csv
from ivy_gpu.report.record import read_gauge, stage_lookup
from ivy_gpu.units import FT_PER_M

runner = CliRunner()

#: An NWIS RDB file with gage height (00065, ft) before discharge (00060, cfs), in CAT.
NWIS = (
    "# a comment line\n"
    "agency_cd\tsite_no\tdatetime\ttz_cd\t1_00065\t1_00065_cd\t2_00060\t2_00060_cd\n"
    "5s\t15s\t20d\t6s\t14n\t10s\t14n\t10s\n"
    "USGS\t0001\t2026-05-01 09:45\tCAT\t2.00\tP\t10.0\tP\n"
    "USGS\t0001\t2026-05-01 10:00\tCAT\t2.10\tP\t12.0\tP\n"
    "USGS\t0001\t2026-05-01 10:15\tCAT\tEqp\tP\t14.0\tP\n"
    "USGS\t0001\t2026-05-01 10:30\tCAT\t2.40\tP\t16.0\tP\n"
)


@pytest.fixture
def nwis(tmp_path):
    path = tmp_path / "gauge.rdb"
    path.write_text(NWIS)
    return path


def test_nwis_stage_and_discharge_come_from_their_own_columns(nwis):
    q = read_gauge(nwis)
    h = read_gauge(nwis, quantity="stage")
    assert list(q.columns) == ["time", "discharge_m3s"]
    assert list(h.columns) == ["time", "stage_m"]
    assert q["discharge_m3s"].tolist() == pytest.approx([v / FT_PER_M**3 for v in (10, 12, 14, 16)])
    # gage height in feet -> metres; the 'Eqp' row is missing, not zero
    assert h["stage_m"].tolist() == pytest.approx([v / FT_PER_M for v in (2.0, 2.1, 2.4)])
    assert h["time"].iloc[0].isoformat() == "2026-05-01T07:45:00+00:00"  # CAT = UTC+2


def test_stage_lookup_adds_the_datum_at_the_rows_time(nwis):
    lookup = stage_lookup(nwis, datum_m=1180.0)
    row = pd.Series({"measurement_date": "2026-05-01", "measurement_time": "10:15"})
    wse, why = lookup(row, "clip.mp4")
    # 10:15 CAT lies between 10:00 (2.1 ft) and 10:30 (2.4 ft): 2.25 ft
    assert why == "" and wse == pytest.approx(1180.0 + 2.25 / FT_PER_M)
    # the stamp in a clip's name gives the time when the row does not
    empty = pd.Series({"measurement_date": None, "measurement_time": None})
    wse, _ = lookup(empty, "station_20260501-100000.mp4")
    assert wse == pytest.approx(1180.0 + 2.1 / FT_PER_M)
    # no time, or a time the record does not cover: no value, and why
    wse, why = lookup(empty, "clip.mp4")
    assert wse is None and "no measurement time" in why
    far = pd.Series({"measurement_date": "2026-05-02", "measurement_time": "10:15"})
    wse, why = lookup(far, "clip.mp4")
    assert wse is None and str(nwis) in why and "no stage within 3 h" in why


def test_plain_stage_csvs_in_metres_and_feet(tmp_path):
    m = tmp_path / "stage_m.csv"
    m.write_text("time,stage_m\n2026-05-01T10:00:00Z,0.50\n2026-05-01T11:00:00Z,0.70\n")
    ft = tmp_path / "both.csv"
    ft.write_text("time,discharge_m3s,stage_ft\n2026-05-01T10:00:00Z,3.0,1.0\n")
    when = dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.timezone.utc)
    lookup = stage_lookup(m, 100.0)
    row = pd.Series({"measurement_date": when.date().isoformat(), "measurement_time": "10:30Z"})
    assert lookup(row, "x.mp4")[0] == pytest.approx(100.6)
    assert read_gauge(ft, quantity="stage")["stage_m"].iloc[0] == pytest.approx(1 / FT_PER_M)
    assert read_gauge(ft)["discharge_m3s"].iloc[0] == 3.0
    only_q = tmp_path / "q.csv"
    only_q.write_text("time,discharge_m3s\n2026-05-01T10:00:00Z,3.0\n")
    with pytest.raises(ValueError, match=r"q.csv: the gauge record has no stage"):
        stage_lookup(only_q, 0.0)


def test_batch_rows_without_a_wse_take_the_gauge_and_say_so(nwis, tmp_path):
    csv = tmp_path / "batch.csv"
    csv.write_text(
        "video_path,water_surface_elevation,measurement_date,measurement_time\n"
        "a.mp4,,2026-05-01,10:15\n"
        "b.mp4,1181.5,2026-05-01,10:15\n"
        "c.mp4,,2026-05-03,10:15\n"
        "station_20260501-100000.mp4,,,\n"
    )
    rows = read_batch_csv(csv, "Metric", stage_lookup(nwis, 1180.0))
    a, b, c, d = rows
    assert a.wse_source == "gauge" and a.config.water_surface_elevation == pytest.approx(
        1180.0 + 2.25 / FT_PER_M
    )
    assert b.wse_source == "csv" and b.config.water_surface_elevation == 1181.5
    assert c.config is None and "row 4: water_surface_elevation: empty, and" in c.error
    assert d.wse_source == "gauge" and d.config.water_surface_elevation == pytest.approx(
        1180.0 + 2.1 / FT_PER_M
    )
    # an English site: the WSE in feet, from the same stage
    rows = read_batch_csv(csv, "English", stage_lookup(nwis, 1180.0))
    assert rows[0].wse_display == f"{(1180.0 + 2.25 / FT_PER_M) * FT_PER_M:.6g}"
    # without a gauge the empty cell is an error that says what to give
    plain = read_batch_csv(csv, "Metric")
    assert plain[0].config is None
    assert "empty (give it, or a gauge record with a stage and --stage-datum)" in plain[0].error


def test_the_batch_takes_the_wse_from_the_gauge(video_site, tmp_path):
    d, truth = video_site
    stage = tmp_path / "stage.csv"  # the datum 100 m: a stage of 0.8 m is the site's WSE
    stage.write_text(
        "time,discharge_m3s,stage_m\n"
        f"2026-05-01T09:00:00+02:00,{truth['discharge_m3s']:.4f},{truth['wse_m'] - 100:.4f}\n"
        f"2026-05-01T11:00:00+02:00,{truth['discharge_m3s']:.4f},{truth['wse_m'] - 100:.4f}\n"
    )
    csv = tmp_path / "batch.csv"
    csv.write_text(
        "video_path,water_surface_elevation,measurement_date,measurement_time,max_frames\n"
        f"{d / truth['video']},,2026-05-01,10:00+02:00,45\n"
    )
    out = tmp_path / "out"
    args = ["batch", str(d / "site.ivy"), str(csv), "-o", str(out), "--no-figures", "-q"]
    res = runner.invoke(app, [*args, "--stage-datum", "100"])
    assert res.exit_code == 2 and "--stage-datum: needs --gauge" in res.output
    res = runner.invoke(app, [*args, "--stage-datum", "100", "--gauge", str(stage)])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(out / "batch_summary.csv", dtype=str)
    assert summary["wse_source"].tolist() == ["gauge"]
    assert float(summary["water_surface_elevation_m"][0]) == pytest.approx(truth["wse_m"])
    import xarray as xr

    with xr.open_dataset(out / "record.nc") as rec:
        assert rec["water_surface_elevation_source"].values.tolist() == ["gauge"]
        assert float(rec["gauge_stage"][0]) == pytest.approx(truth["wse_m"] - 100, abs=1e-4)
        assert float(rec["gauge_discharge"][0]) == pytest.approx(truth["discharge_m3s"], 1e-3)
    page = (out / "report.html").read_text()
    assert f"WSE {truth['wse_m']:.3f} m (gauge)" in page
