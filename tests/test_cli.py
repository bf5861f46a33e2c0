"""The CLI through typer's runner and as an installed console script."""

import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ivy_gpu.cli.main import app

runner = CliRunner()


def test_demo_prints_true_and_measured_speed():
    result = runner.invoke(app, ["demo", "--backend", "numba"])
    assert result.exit_code == 0, result.output
    assert "backend: numba" in result.output
    assert result.output.count("(140, 100)") == 3  # 3 scenes x 5 nodes, last node of each
    worst = float(result.output.rsplit("largest speed error", 1)[1].split("%")[0])
    assert worst < 5.0  # sanity bound; accuracy itself is checked in test_stiv_truth.py


def test_bad_backend_is_a_one_line_error_exit_2():
    result = runner.invoke(app, ["demo", "--backend", "opencl"])
    assert result.exit_code == 2
    assert "backend: unknown backend 'opencl'" in result.output


def test_backends_lists_numpy_and_numba():
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0 and "numba  usable" in result.output


def test_bench_quick_writes_a_table(tmp_path):
    result = runner.invoke(app, ["bench", "--quick", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "stiv_bench.md").read_text()
    assert "| quick | numba |" in text and "| quick | numpy |" in text


def test_installed_console_scripts():
    exe = Path(sys.executable).parent
    for name in ("ivy-gpu", "ivytools-batch"):
        path = shutil.which(name, path=str(exe)) or shutil.which(name)
        assert path, f"{name} is not installed"
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "demo" in out.stdout
