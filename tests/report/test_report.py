"""report.html: the discharge record, the gauge join, rebuild from saved results, a real browser."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ivy_gpu import process_batch_csv
from ivy_gpu.cli.main import app
from ivy_gpu.params import VideoConfig
from ivy_gpu.report.record import gauge_at, measurement_datetime, parse_zone, read_gauge
from ivy_gpu.report.review import FLAG_REASONS
from ivy_gpu.units import FT_PER_M

runner = CliRunner()

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_nwis_gauge_record_in_its_zones(data_dir):
    f = data_dir / "boneyard" / "03337000_results.txt"
    g = read_gauge(f)
    assert len(g) == 594
    # first row: 2017-06-29 23:00 CST = 05:00 UTC, 11.8 cfs
    assert g["time"].iloc[0].isoformat() == "2017-06-30T05:00:00+00:00"
    assert g["discharge_m3s"].iloc[0] == pytest.approx(11.8 / FT_PER_M**3)
    zone = g.attrs["zone"]
    # the USGS camera names its clips by local time: 11:55 lies between 11:50 (76.7 cfs)
    # and 12:00 (59.5 cfs)
    when = measurement_datetime(
        VideoConfig("x.mp4", 1.0, measurement_date="2017-06-30"),
        "03337000_bullet_20170630-115500.mp4",
        zone,
    )
    assert when.isoformat() == "2017-06-30T11:55:00-06:00"
    assert gauge_at(g, when) * FT_PER_M**3 == pytest.approx((76.7 + 59.5) / 2)
    # the same instant written in UTC gives the same value; outside the record, nothing
    assert gauge_at(g, when.astimezone(dt.timezone.utc)) == pytest.approx(gauge_at(g, when))
    assert gauge_at(g, dt.datetime(2016, 1, 1, tzinfo=dt.timezone.utc)) is None


def test_plain_gauge_csv_and_zones(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text(
        "time,discharge_cfs\n2026-05-01T10:00:00-05:00,100\n2026-05-01T11:00:00-05:00,200\n"
    )
    g = read_gauge(f)
    at = dt.datetime(2026, 5, 1, 15, 30, tzinfo=dt.timezone.utc)  # 10:30 at -05:00
    assert gauge_at(g, at) * FT_PER_M**3 == pytest.approx(150.0)
    naive = tmp_path / "n.csv"
    naive.write_text("time,value\n2026-05-01 10:00,1.0\n")
    with pytest.raises(ValueError, match="n.csv: times without a zone"):
        read_gauge(naive)
    assert read_gauge(naive, parse_zone("UTC"))["discharge_m3s"].iloc[0] == 1.0
    with pytest.raises(ValueError, match="time zone: 'Mars/Olympus'"):
        parse_zone("Mars/Olympus")


@pytest.fixture(scope="module")
def reported_batch(video_site, tmp_path_factory):
    d, truth = video_site
    tmp = tmp_path_factory.mktemp("report")
    shutil.copy(d / truth["video"], tmp / "clip.mp4")
    wse = truth["wse_m"]
    (tmp / "batch.csv").write_text(
        "video_path,water_surface_elevation,measurement_date,measurement_time,max_frames\n"
        f"clip.mp4,{wse},2026-05-01,10:00,60\n"
        f"missing.mp4,{wse},2026-05-01,11:00,60\n"
        f"clip.mp4,{wse},2026-05-01,12:00,60\n"
    )
    q = truth["discharge_m3s"]
    start = dt.datetime(2026, 5, 1, 9, 0)
    (tmp / "gauge.csv").write_text(
        "time,discharge_m3s\n"
        + "".join(
            f"{(start + dt.timedelta(minutes=15 * k)).isoformat()}-05:00,{q * 1.1:.6f}\n"
            for k in range(17)
        )
    )
    b = process_batch_csv(d / "site.ivy", tmp / "batch.csv", tmp / "out", backend="numba",
                          gauge=tmp / "gauge.csv", tz="-05:00")  # fmt: skip
    assert b.report_error is None
    return tmp, b, q


def test_report_structure_and_gauge_difference(reported_batch):
    tmp, b, q = reported_batch
    page = (tmp / "out" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    assert page.count('<tr class="completed">') == 2 and page.count('<tr class="failed">') == 1
    assert page.count('<section class="video"') == 3
    assert 'id="record"' in page and page.count("data:image/jpeg;base64,") == 6  # 3 per video
    assert "read: " in page and "missing.mp4: video file not found" in page
    measured = b.video_results[0].total_discharge
    expected = 100 * (measured / (1.1 * q) - 1)
    diffs = re.findall(r"<td class=num>([+-]\d+\.\d)</td>", page)
    assert [float(x) for x in diffs] == pytest.approx([expected] * 2, abs=0.051)
    assert "2026-05-01 10:00:00-05:00" in page


def test_report_is_rebuilt_from_saved_results(reported_batch):
    tmp, _, _ = reported_batch
    first = (tmp / "out" / "report.html").read_text()
    (tmp / "out" / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(tmp / "out"), "--gauge", str(tmp / "gauge.csv"),
                                   "--tz", "-05:00"])  # fmt: skip
    assert res.exit_code == 0, res.output
    again = (tmp / "out" / "report.html").read_text()
    strip = re.compile(r"Made [^.]*\.")  # the build time differs, nothing else
    assert strip.sub("", again) == strip.sub("", first)
    bad = CliRunner().invoke(app, ["report", str(tmp / "nothing_here")])
    assert bad.exit_code == 2 and "no batch_summary.csv and no results.json" in bad.output


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium)")
def test_report_in_headless_chromium(reported_batch, tmp_path):
    import cv2

    tmp, _, _ = reported_batch
    url = (tmp / "out" / "report.html").resolve().as_uri()
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout  # the page's script ran to its end
    assert dom.stdout.count("<section") == 3 and 'id="videos"' in dom.stdout
    assert not re.search(r"Uncaught|CONSOLE\(\d+\).*[Ee]rror", dom.stderr)
    shot = tmp_path / "report.png"
    run = subprocess.run([*flags, "--window-size=1300,1600", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1600, 1300)
    assert np.std(img) > 20  # the figures and the table are drawn, not a blank page
    assert not re.search(r"Uncaught", run.stderr)


def test_the_review_page_shows_every_node_and_what_was_used(reported_batch):
    """review.html: one row per node, its flags with reasons, the source of the used value."""
    tmp, _, _ = reported_batch
    out = tmp / "out"
    folder = next(p.parent for p in sorted(out.glob("*/review.html")))
    page = (folder / "review.html").read_text()
    nodes = pd.read_csv(folder / "stiv_results.csv", keep_default_na=False)
    table = pd.read_csv(folder / "discharge_table.csv", encoding="utf-8-sig")
    rows = re.findall(r'<tr class="node (\w+)" id="node(\d+)">(.*?)</tr>', page, re.S)
    assert [int(k) for _, k, _ in rows] == list(range(len(nodes)))
    assert [s for s, _, _ in rows] == list(table["Source"][1:-1])  # per node, as computed
    for (_, _, cells), flags in zip(rows, nodes["flags"], strict=True):
        for f in filter(None, flags.split(";")):
            assert f"<b>{f}</b>: {html.escape(FLAG_REASONS[f])}" in cells
        # its STI, inline; a node without a usable line has none, and says so
        images = cells.count('src="data:image/jpeg;base64,')
        assert images == (0 if "invalid" in flags else 1)
        assert ("no image" in cells) == (images == 0)
    assert "http" not in re.sub(r'href="[^"]*report.html"', "", page.split("<body>")[1])
    assert 'href="../report.html"' in page
    assert f'href="{folder.name}/review.html"' in (out / "report.html").read_text()
    assert page.count("<tr") == len(nodes) + 1


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium)")
def test_review_page_in_headless_chromium(reported_batch, tmp_path):
    import cv2

    tmp, _, _ = reported_batch
    page = sorted((tmp / "out").glob("*/review.html"))[0]
    shot = tmp_path / "review.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,1400"]  # fmt: skip
    run = subprocess.run([*flags, f"--screenshot={shot}", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1400, 1300) and np.std(img) > 20


def test_unreadable_inputs_of_a_report_are_named(reported_batch, tmp_path):
    tmp, _, _ = reported_batch
    junk = bytes(range(128, 256)) * 20  # not UTF-8
    (tmp_path / "gauge.csv").write_bytes(junk)
    r = runner.invoke(app, ["report", str(tmp / "out"), "--gauge", str(tmp_path / "gauge.csv")])
    assert r.exit_code == 2 and "gauge.csv: the gauge record is not a UTF-8 text file" in r.output
    bad = tmp_path / "garbage"
    (bad / "run").mkdir(parents=True)
    (bad / "run" / "results.json").write_bytes(junk)
    r = runner.invoke(app, ["report", str(bad)])
    assert r.exit_code == 2 and "run/results.json: the result is not valid JSON" in r.output
    (bad / "batch_summary.csv").write_bytes(junk)
    r = runner.invoke(app, ["report", str(bad)])
    assert r.exit_code == 2 and "batch_summary.csv: not a readable batch summary" in r.output
    (bad / "batch_summary.csv").write_text("a,b\n1,2\n")
    r = runner.invoke(app, ["report", str(bad)])
    assert r.exit_code == 2 and "batch_summary.csv: not a batch summary" in r.output


def test_a_batch_with_an_unreadable_gauge_still_writes_its_report(video_site, tmp_path):
    d, truth = video_site
    shutil.copy(d / truth["video"], tmp_path / "clip.mp4")
    (tmp_path / "batch.csv").write_text(
        f"video_path,water_surface_elevation,max_frames\nclip.mp4,{truth['wse_m']},40\n"
    )
    (tmp_path / "gauge.csv").write_bytes(bytes(range(128, 256)))
    b = process_batch_csv(d / "site.ivy", tmp_path / "batch.csv", tmp_path / "out",
                          backend="numba", gauge=tmp_path / "gauge.csv", figures=False)  # fmt: skip
    assert b.successful == 1
    assert b.report_error is None
    assert b.report_notes[0].startswith(f"{tmp_path / 'gauge.csv'}: the gauge record is not")
    assert "written without the gauge" in b.report_notes[0]
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.parametrize(
    ("code", "hours"),
    [("CST", -6), ("CDT", -5), ("EST", -5), ("EDT", -4), ("MST", -7), ("MDT", -6),
     ("PST", -8), ("PDT", -7), ("AKST", -9), ("HST", -10), ("UTC", 0), ("CAT", 2),
     ("EAT", 3), ("CET", 1), ("Africa/Lusaka", 2)],
)  # fmt: skip
def test_every_nwis_zone_code_and_iana_names_in_the_record(tmp_path, code, hours):
    rdb = tmp_path / "g.rdb"
    rdb.write_text(
        "agency_cd\tsite_no\tdatetime\ttz_cd\t00060\n5s\t15s\t20d\t6s\t14n\n"
        f"USGS\t1\t2026-05-01 10:00\t{code}\t35.3147\n"
        f"USGS\t1\t2026-05-01 10:15\t{code}\t70.6294\n"
    )
    g = read_gauge(rdb)
    assert g["time"][0] == pd.Timestamp("2026-05-01 10:00", tz="UTC") - pd.Timedelta(hours=hours)
    assert g["discharge_m3s"][0] == pytest.approx(1.0, rel=1e-4)  # 35.3147 cfs


def test_an_unknown_zone_code_names_the_file_line_and_code(tmp_path):
    rdb = tmp_path / "g.rdb"
    rdb.write_text(
        "agency_cd\tsite_no\tdatetime\ttz_cd\t00060\n5s\t15s\t20d\t6s\t14n\n"
        "USGS\t1\t2026-05-01 10:00\tXYZT\t35.3\n"
    )
    with pytest.raises(ValueError, match=r"g.rdb: line 3: tz_cd 'XYZT' is not a zone"):
        read_gauge(rdb)


def test_a_gauge_far_from_every_measurement_is_a_warning(reported_batch, tmp_path):
    tmp, _, q = reported_batch
    (tmp_path / "old.csv").write_text(
        f"time,discharge_m3s\n1999-01-01T00:00:00+00:00,{q}\n1999-01-01T00:15:00+00:00,{q}\n"
    )
    r = runner.invoke(app, ["report", str(tmp / "out"), "--gauge", str(tmp_path / "old.csv")])
    assert r.exit_code == 0
    assert f"warning: {tmp_path / 'old.csv'}: no gauge value within 3 h" in r.output


def test_a_batch_whose_report_cannot_be_written_exits_1(video_site, tmp_path, monkeypatch):
    import ivy_gpu.report.page as page

    d, truth = video_site
    shutil.copy(d / truth["video"], tmp_path / "clip.mp4")
    (tmp_path / "batch.csv").write_text(
        f"video_path,water_surface_elevation,max_frames\nclip.mp4,{truth['wse_m']},40\n"
    )

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(page, "build_report", broken)
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(d / "site.ivy"), str(tmp_path / "batch.csv"), "-o",
                            str(out), "--backend", "numba", "--no-figures"])  # fmt: skip
    assert r.exit_code == 1, r.output
    assert f"error: {out / 'report.html'}: not written (disk full)" in r.output
    assert (out / "batch_summary.csv").is_file() and (out / "clip" / "results.json").is_file()
