"""One units rule: inputs in the display units (or --units), SI and display side by side."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from ivy_gpu.cli.main import app
from ivy_gpu.pipeline.batch_csv import summary_columns
from ivy_gpu.scaffold.ivyfile import load_scaffold, save_scaffold
from ivy_gpu.scaffold.summary import describe
from ivy_gpu.units import FT_PER_M

runner = CliRunner()


@pytest.fixture(scope="module")
def two_sites(video_site, tmp_path_factory):
    """The same site as an SI and as an English scaffold, and the video."""
    d, truth = video_site
    tmp = tmp_path_factory.mktemp("units")
    si = load_scaffold(d / "site.ivy")
    save_scaffold(dataclasses.replace(si, display_units="English"), tmp / "english.ivy")
    shutil.copy(d / "site.ivy", tmp / "si.ivy")
    shutil.copy(d / truth["video"], tmp / "river.mp4")
    return tmp, truth


def _json(folder):
    return json.loads((folder / "river" / "results.json").read_text())


def test_process_reads_wse_in_display_units_and_reports_both(two_sites):
    tmp, truth = two_sites
    wse_m = truth["wse_m"]
    res_si = runner.invoke(app, ["process", str(tmp / "si.ivy"), str(tmp / "river.mp4"),
                                 "--wse", str(wse_m), "-o", str(tmp / "si"), "-q"])  # fmt: skip
    assert res_si.exit_code == 0, res_si.output
    wse_ft = f"{wse_m * FT_PER_M:.6f}"
    res_en = runner.invoke(app, ["process", str(tmp / "english.ivy"), str(tmp / "river.mp4"),
                                 "--wse", wse_ft, "-o", str(tmp / "en"), "-q"])  # fmt: skip
    assert res_en.exit_code == 0, res_en.output
    a, b = _json(tmp / "si"), _json(tmp / "en")
    assert b["discharge_m3s"] == pytest.approx(a["discharge_m3s"], rel=1e-5)  # WSE typed in ft
    assert b["water_surface_elevation_m"] == pytest.approx(wse_m, abs=1e-6)
    assert b["discharge_cfs"] == pytest.approx(a["discharge_m3s"] * FT_PER_M**3)
    assert b["water_surface_elevation_ft"] == pytest.approx(float(wse_ft))
    assert "discharge_cfs" not in a and a["display_units"] == "Metric"
    assert " cfs (" in res_en.output and "m³/s" in res_si.output and "cfs" not in res_si.output
    # --units si on the English scaffold takes metres
    res = runner.invoke(app, ["process", str(tmp / "english.ivy"), str(tmp / "river.mp4"),
                              "--wse", str(wse_m), "--units", "si", "-o", str(tmp / "en_si"),
                              "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert _json(tmp / "en_si")["discharge_m3s"] == pytest.approx(a["discharge_m3s"], rel=1e-9)
    # metres given to an English scaffold are feet: a clear one-line failure, not a number
    res = runner.invoke(app, ["process", str(tmp / "english.ivy"), str(tmp / "river.mp4"),
                              "--wse", str(wse_m), "-o", str(tmp / "wrong"), "-q"])  # fmt: skip
    assert res.exit_code == 1 and "water-surface elevation" in res.output


def test_batch_summary_names_units_and_keeps_metadata(two_sites):
    tmp, truth = two_sites
    wse_m = truth["wse_m"]
    header = "video_path,water_surface_elevation,measurement_date,measurement_time,"
    header += "measurement_number,gage_height,comments\n"
    (tmp / "si.csv").write_text(header + f"river.mp4,{wse_m},2026-05-01,10:30,7,1.25,first\n")
    ft = wse_m * FT_PER_M
    (tmp / "en.csv").write_text(header + f"river.mp4,{ft:.6f},2026-05-01,10:30,7,4.1,first\n")
    for name in ("si", "en"):
        scaffold = tmp / ("si.ivy" if name == "si" else "english.ivy")
        res = runner.invoke(app, ["batch", str(scaffold), str(tmp / f"{name}.csv"),
                                  "-o", str(tmp / f"b_{name}"), "-q"])  # fmt: skip
        assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp / "b_si" / "batch_summary.csv", keep_default_na=False, dtype=str)
    e = pd.read_csv(tmp / "b_en" / "batch_summary.csv", keep_default_na=False, dtype=str)
    assert tuple(s.columns) == summary_columns("Metric")
    assert tuple(e.columns) == summary_columns("English")
    assert "discharge_cfs" in e.columns and "discharge_cfs" not in s.columns
    assert float(e["discharge_m3s"][0]) == pytest.approx(float(s["discharge_m3s"][0]), rel=1e-4)
    assert float(e["discharge_cfs"][0]) == pytest.approx(
        float(s["discharge_m3s"][0]) * FT_PER_M**3, rel=1e-4
    )
    row = s.iloc[0]
    assert (row["measurement_number"], row["measurement_date"], row["measurement_time"]) == (
        "7", "2026-05-01", "10:30",
    )  # fmt: skip
    assert row["measurement_datetime"] == "2026-05-01T10:30:00"
    assert row["gage_height_m"] == "1.2500" and e.iloc[0]["gage_height_ft"] == "4.1000"
    assert row["comments"] == "first"
    assert row["finished_utc"].endswith("+00:00")  # ISO 8601 with its zone
    assert len(row["discharge_m3s"]) <= 8  # sensible precision, not 17 digits


def test_info_speaks_the_display_units(two_sites):
    tmp, _ = two_sites
    text = describe(load_scaffold(tmp / "english.ivy"))
    assert "WSE inputs in ft" in text and " ft (" in text
    assert " ft" not in describe(load_scaffold(tmp / "si.ivy"))


def test_info_gives_the_section_in_world_units(video_site):
    """The line's ends where the survey put them (m, 2 decimals), the search line in metres."""
    import re

    from ivy_gpu.synthetic.sites import Site, SiteSpec

    d, truth = video_site
    spec = SiteSpec(**truth["spec"])
    lo, hi = Site(spec).section.water_edges(truth["wse_m"])
    text = describe(load_scaffold(d / "site.ivy"))
    m = re.search(r"cross-section line: \(([\d.]+), ([\d.]+)\) -> \(([\d.]+), ([\d.]+)\) m, "
                  r"([\d.]+) m long", text)  # fmt: skip
    assert m, text
    x0, y0, x1, y1, span = map(float, m.groups())
    assert (x0, x1) == pytest.approx((spec.x_left_m + lo, spec.x_left_m + hi), abs=0.01)
    assert (y0, y1) == pytest.approx((spec.y_section_m, spec.y_section_m), abs=0.01)
    assert span == pytest.approx(hi - lo, abs=0.01)
    assert re.search(r"search line: \d+ px = 0\.\d\d m", text), text
    assert not re.search(r"\d\.\d{6,}", text), text  # no 13-decimal pixels


def test_discharge_table_opens_in_excel_and_pandas(two_sites):
    tmp, _ = two_sites
    raw = (tmp / "si" / "river" / "discharge_table.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the alpha header right
    table = pd.read_csv(tmp / "si" / "river" / "discharge_table.csv", encoding="utf-8-sig")
    assert "α (alpha)" in table.columns
