"""The Ngwerere numbers the user guide quotes are the numbers the code gives.

Each quoted phrase is found in docs/user-guide.md by its words and its numbers compared with a
run on the real clip (../shared/fixtures/ngwerere, AGPL data; skipped cleanly without it). A
changed result fails here until the guide says the new number; a reworded phrase fails too,
so the check cannot silently stop checking.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ivy_gpu import process_video, recompute

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user-guide.md"
NGWERERE = ROOT.parent / "shared" / "fixtures" / "ngwerere"
pytestmark = pytest.mark.skipif(not NGWERERE.is_dir(), reason="needs ../shared/fixtures/ngwerere")


def quoted(pattern: str) -> tuple[str, ...]:
    """The numbers a phrase of the guide quotes (whitespace-insensitive), or a failure."""
    text = re.sub(r"\s+", " ", GUIDE.read_text(encoding="utf-8"))
    m = re.search(pattern, text)
    assert m, f"docs/user-guide.md no longer has the phrase {pattern!r}"
    return m.groups()


def said(q: float, u95: float) -> tuple[str, str]:
    return f"{q:.4f}", f"{100 * u95:.1f}"


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ngwerere_docs")
    r = process_video(NGWERERE / "ngwerere_site.ivy", NGWERERE / "ngwerere_20191103.mp4", 1182.2,
                      out, backend="numba", figures=False)  # fmt: skip
    assert r.success, r.error_message
    return out, r


def test_the_fixture_scaffold_numbers(fixture_run):
    _, r = fixture_run
    now = said(r.total_discharge, r.discharge_uncertainty["u95"])
    assert quoted(r"where the fixture scaffold gives (\d\.\d{4}) m³/s \(U95 ([\d.]+) %") == now
    assert quoted(r"whole clip, Q = (\d\.\d{4}) m³/s ± ([\d.]+) %") == now
    (rating,) = quoted(r"whole clip, Q = \d\.\d{4} m³/s ± [\d.]+ %, (\w+)\)")
    assert rating == r.quality_rating


def test_the_override_numbers(fixture_run, tmp_path):
    _, measured = fixture_run
    folder = tmp_path / "v"
    shutil.copytree(measured.output_directory, folder)
    fixes = folder / "fixes.csv"
    fixes.write_text("node,action,velocity_ms\n20,set,0\n23,set,0\n")
    r = recompute(folder, fixes)
    assert quoted(r"setting 20 and 23 to 0 gives Q = (\d\.\d{4}) m³/s \(U95 ([\d.]+) %\)") == said(
        r.total_discharge, r.discharge_uncertainty["u95"]
    )
    fixes.write_text("node,action,velocity_ms\n20,set,0\n23,set,0\n8,keep,\n")
    r = recompute(folder, fixes)
    assert quoted(r"keeping node 8 too \([^)]*\) gives (\d\.\d{4}) m³/s \(U95 ([\d.]+) %") == said(
        r.total_discharge, r.discharge_uncertainty["u95"]
    )


def test_the_imported_site_numbers(tmp_path):
    from ivy_gpu.site.builder import site_from_pyorc, write_site

    build = site_from_pyorc(
        NGWERERE / "ngwerere.json", NGWERERE / "cross_section1.geojson",
        NGWERERE / "ngwerere_20191103.mp4",
    )  # fmt: skip
    write_site(build, tmp_path / "ng.ivy")
    r = process_video(tmp_path / "ng.ivy", NGWERERE / "ngwerere_20191103.mp4", 1182.2,
                      tmp_path / "out", backend="numba", figures=False)  # fmt: skip
    assert r.success, r.error_message
    assert quoted(r"and measures Q = (\d\.\d{4}) m³/s \(U95 ([\d.]+) %") == said(
        r.total_discharge, r.discharge_uncertainty["u95"]
    )
    (rating,) = quoted(r"and measures Q = \d\.\d{4} m³/s \(U95 [\d.]+ %, (\w+):")
    assert rating == r.quality_rating
