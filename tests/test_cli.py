"""The CLI through typer's runner and as an installed console script."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ivy_gpu.cli.main import app

runner = CliRunner()


def test_process_command(video_site, tmp_path):
    d, truth = video_site
    res = runner.invoke(
        app,
        [
            "process",
            str(d / "site.ivy"),
            str(d / truth["video"]),
            "--wse",
            str(truth["wse_m"]),
            "-o",
            str(tmp_path),
            "-q",
            "--backend",
            "numba",
            "--max-frames",
            "60",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "completed river.mp4 (WSE 100.800 m): Q =" in res.output  # the WSE it used
    assert "% (U95)" in res.output and "nodes: " in res.output and " filled, " in res.output
    assert (tmp_path / "river" / "results.json").exists()


def test_corrupt_scaffold_exits_2_naming_it(tmp_path, video_site):
    d, truth = video_site
    bad = tmp_path / "broken.ivy"
    bad.write_text("not a zip")
    for cmd in (
        ["info", str(bad)],
        ["validate", str(bad)],
        ["process", str(bad), str(d / truth["video"]), "--wse", "1", "-q"],
    ):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2, cmd
        assert f"{bad}: not a ZIP archive" in res.output
    res = runner.invoke(
        app, ["process", str(d / "site.ivy"), str(tmp_path / "none.mp4"), "--wse", "1", "-q"]
    )
    assert res.exit_code == 2 and "none.mp4: video file not found" in res.output


def test_validate_and_info(video_site, tmp_path):
    d, truth = video_site
    (tmp_path / "b.csv").write_text(
        "video_path,water_surface_elevation\n"
        f"{d / truth['video']},{truth['wse_m']}\n"
        f"{d / truth['video']},120\n"
        "nothing.mp4,100\n"
    )
    res = runner.invoke(app, ["validate", str(d / "site.ivy"), str(tmp_path / "b.csv")])
    assert res.exit_code == 1
    assert "row 2: ok" in res.output and "is above a bank" in res.output
    assert "nothing.mp4: video file not found" in res.output and "1 of 3 rows ok" in res.output
    res = runner.invoke(app, ["info", str(d / "site.ivy")])
    assert res.exit_code == 0 and "camera matrix" in res.output


def test_demo_prints_measured_and_true_discharge(tmp_path):
    res = runner.invoke(app, ["demo", "-o", str(tmp_path), "-q", "--backend", "numba"])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "discharge (m³/s)" in line)
    measured, true, err = (float(v) for v in row.replace("│", " ").split()[-3:])
    assert abs(err) < 3.0 and abs(measured / true - 1) < 0.03


def test_bad_backend_is_a_one_line_error_exit_2(video_site, tmp_path):
    d, truth = video_site
    res = runner.invoke(
        app,
        [
            "process",
            str(d / "site.ivy"),
            str(d / truth["video"]),
            "--wse",
            str(truth["wse_m"]),
            "-q",
            "--backend",
            "opencl",
            "-o",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2 and "opencl" in res.output and "--backend" in res.output
    assert not (tmp_path / "river").exists()  # refused before any decoding


def test_backends_lists_numpy_and_numba(monkeypatch):
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0 and "numba  usable" in result.output
    # no NVIDIA driver here: the GPU engine's decoder is PyAV, and the line says why
    assert "decoder for the GPU engine: PyAV: PyNvVideoCodec unavailable (" in result.output
    monkeypatch.setenv("IVY_GPU_DECODER", "pyav")
    result = runner.invoke(app, ["backends"])
    assert "decoder for the GPU engine: PyAV (IVY_GPU_DECODER=pyav)" in result.output


def test_bench_quick_writes_a_table(tmp_path):
    result = runner.invoke(app, ["bench", "--quick", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "stiv_bench.md").read_text()
    assert "| quick | numba |" in text and "| quick | numpy |" in text
    data = json.loads((tmp_path / "stiv_bench.json").read_text())  # as its help says
    assert {r["backend"] for r in data["rows"]} >= {"numpy", "numba"}


def test_installed_console_scripts():
    exe = Path(sys.executable).parent
    for name in ("ivy-gpu", "ivytools-batch"):
        path = shutil.which(name, path=str(exe)) or shutil.which(name)
        assert path, f"{name} is not installed"
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0
        for cmd in ("process", "batch", "validate", "info", "bench", "demo"):
            assert cmd in out.stdout


def test_version_flag():
    from ivy_gpu import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and f"ivy-gpu {__version__}" in res.output


def test_json_output_and_logging(video_site, tmp_path):
    d, truth = video_site
    args = ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse",
            str(truth["wse_m"]), "-o", str(tmp_path / "p"), "--max-frames", "40"]  # fmt: skip
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # the whole of stdout is one JSON document
    assert data["status"] == "completed" and data["discharge_m3s"] > 0
    assert data["display_units"] == "Metric"
    res = runner.invoke(app, ["validate", str(d / "site.ivy"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["method"] == "camera matrix"
    # -v logs each video on stderr through the "ivy_gpu" logger
    res = subprocess.run(
        [sys.executable, "-m", "ivy_gpu.cli.main", "-v", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert re.search(r"INFO ivy_gpu: .*river.mp4: Q = [\d.]+ m3/s", res.stderr)
    assert "completed river.mp4" in res.stdout


def test_the_api_issues_result_warnings(video_site, tmp_path):
    import warnings

    from ivy_gpu import process_video
    from ivy_gpu.log import IvyGpuWarning

    d, truth = video_site
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = process_video(d / "site.ivy", d / truth["video"], truth["wse_m"], max_frames=40,
                          backend="numba")  # fmt: skip
    mine = [w for w in caught if issubclass(w.category, IvyGpuWarning)]
    assert len(mine) == len(r.warnings)
    assert all(str(w.message).startswith("river.mp4: ") for w in mine)


def test_a_first_run_says_the_kernels_compile_once(tmp_path, monkeypatch, video_site):
    """A fresh install spent ~50 s compiling without a word (issue 26)."""
    import sys

    import ivy_gpu.engines.numba_engine as numba_engine

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    assert not numba_engine.kernels_cached()  # nothing compiled into an empty cache
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    nested = tmp_path / "cache" / "site" / "kernels"  # numba mirrors the source path there
    nested.mkdir(parents=True)
    for name in ("acf_fused._scores-83", "sti._gather_numba-234"):
        (nested / f"{name}.{tag}.nbi").write_bytes(b"")
    assert numba_engine.kernels_cached()
    d, truth = video_site
    args = ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse",
            str(truth["wse_m"]), "-o", str(tmp_path / "out"), "--max-frames", "40",
            "--backend", "numba", "--no-figures"]  # fmt: skip
    for cached, said in ((False, True), (True, False)):
        monkeypatch.setattr(numba_engine, "kernels_cached", lambda c=cached: c)
        res = CliRunner().invoke(app, args)
        assert res.exit_code in (0, 1), res.output
        assert ("compiling the numba kernels once" in res.output) == said, res.output
    monkeypatch.setattr(numba_engine, "kernels_cached", lambda: False)
    quiet = CliRunner().invoke(app, [*args, "-q"])
    assert "compiling" not in quiet.output


def test_stiv_overrides_on_process_and_batch(video_site, tmp_path):
    """--line-length-m, --fan-centre/-range/-step and --max-velocity reach the measurement."""
    from ivy_gpu.params import search_line_pixels
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    d, truth = video_site
    cfg = load_scaffold(d / "site.ivy")
    common = ["--line-length-m", "0.3", "--fan-centre", "10", "--fan-range", "6",
              "--fan-step", "2", "--max-velocity", "0.7", "--backend", "numba",
              "--no-figures"]  # fmt: skip
    r = runner.invoke(app, ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse",
                            str(truth["wse_m"]), "-o", str(tmp_path / "p"), *common])  # fmt: skip
    data = json.loads((tmp_path / "p" / Path(truth["video"]).stem / "results.json").read_text())
    stiv = data["inputs"]["stiv"]
    assert stiv["num_pixels"] == search_line_pixels(0.3, cfg.pixel_gsd_m) != cfg.stiv.num_pixels
    assert (stiv["phi_origin"], stiv["phi_range"], stiv["d_phi"]) == (10.0, 6.0, 2.0)
    assert stiv["max_vel_threshold"] == 0.7
    # the limit acts: the fastest nodes (0.8 m/s at the centre) are rejected as too fast
    assert r.exit_code == 0 and data["flag_counts"]["threshold"] >= 1, r.output
    (tmp_path / "b.csv").write_text(
        f"video_path,water_surface_elevation,max_frames\n{d / truth['video']},{truth['wse_m']},40\n"
    )
    r = runner.invoke(app, ["batch", str(d / "site.ivy"), str(tmp_path / "b.csv"), "-o",
                            str(tmp_path / "b"), *common])  # fmt: skip
    row = json.loads((tmp_path / "b" / Path(truth["video"]).stem / "results.json").read_text())
    assert row["inputs"]["stiv"] == stiv
    bad = runner.invoke(app, ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse",
                              "100", "--line-length-m", "-1"])  # fmt: skip
    assert bad.exit_code == 2 and "--line-length-m: must be a positive length" in bad.output
    bad = runner.invoke(app, ["process", str(d / "site.ivy"), str(d / truth["video"]), "--wse",
                              "100", "--fan-range", "200"])  # fmt: skip
    assert bad.exit_code == 2 and "phi_range" in bad.output


def test_verbose_logs_each_stage_with_its_time(video_site, tmp_path):
    d, truth = video_site
    r = subprocess.run(
        [sys.executable, "-m", "ivy_gpu.cli.main", "-v", "process", str(d / "site.ivy"),
         str(d / truth["video"]), "--wse", str(truth["wse_m"]), "-o", str(tmp_path),
         "--backend", "numba", "--no-figures"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for stage in ("read_rectify", "grid", "stiv", "discharge", "save"):
        assert re.search(
            rf"{re.escape(Path(truth['video']).name)}: {stage} \d+\.\d\d s", r.stderr
        ), (
            stage,
            r.stderr,
        )
