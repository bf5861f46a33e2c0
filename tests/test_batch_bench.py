"""The steady-state batch benchmark runs the real batch path and reports what issue 25 asks.

No timing is asserted here (speed goals live in the benchmark suite): the rows, their
counts and the gpu-check rehearsal's report.
"""

from __future__ import annotations

import numpy as np

from ivy_gpu.benchmarks import batch_bench, gpu_check


def test_batch_bench_rows_and_table(tmp_path):
    rows = batch_bench.run(1, 320, 180, 1.0, ["numba"], ("section", "grid"), (False, True),
                           work=tmp_path)  # fmt: skip
    assert [(r["layout"], r["figures"]) for r in rows] == [
        ("section (25 nodes)", False), ("section (25 nodes)", True),
        ("grid (575 nodes)", False), ("grid (575 nodes)", True),
    ]  # fmt: skip
    for r in rows:
        assert r["ok"] == 2 and r["videos"] == 1
        assert r["steady_s"] > 0 and r["clips_per_hour"] == 3600 / r["steady_s"]
        assert r["x_decode"] == r["steady_s"] / r["decode_s"] and 0 < r["cpu_busy"]
        assert r["gpu_busy"] is None or 0 <= r["gpu_busy"] <= 100
    # the figures were drawn through the real path: the PNGs are there
    assert list((tmp_path / "out_numba_section_1_1_auto").glob("*/stis.png"))
    assert not list((tmp_path / "out_numba_section_0_1_auto").glob("*/stis.png"))
    table = batch_bench.markdown(rows)
    assert table.count("\n| numba |") == 4 and "clips/hour" in table


def test_the_bench_draws_figures_as_the_cli_does(tmp_path, monkeypatch):
    """``IVY_GPU_FIGURE_WORKERS`` (or the cores, as ``ivy-gpu batch``): the row says how."""
    monkeypatch.setenv("IVY_GPU_FIGURE_WORKERS", "2")
    rows = batch_bench.run(2, 320, 180, 1.0, ["numba"], ("section",), (True, False),
                           work=tmp_path)  # fmt: skip
    assert [(r["figures"], r["figure_workers"], r["ok"]) for r in rows] == [
        (True, 2, 3), (False, 0, 3)
    ]  # fmt: skip
    assert len(list((tmp_path / "out_numba_section_1_1_auto").glob("*/stis.png"))) == 2
    table = batch_bench.markdown(rows)
    assert "| numba | section (25 nodes) | on (2 processes) | 1 | pyav |" in table
    assert "| numba | section (25 nodes) | off | 1 | pyav |" in table


def test_cases_that_would_end_after_the_deadline_are_named_not_run(tmp_path):
    import time

    skipped: list[str] = []
    rows = batch_bench.run(1, 320, 180, 1.0, ["numba"], ("section", "grid"), (False,),
                           work=tmp_path, deadline=time.monotonic(), skipped=skipped)  # fmt: skip
    assert rows == []
    assert skipped == ["numba section figures off decoders 1", "numba grid figures off decoders 1"]


def test_grid_nodes_lie_on_lines_parallel_to_the_section():
    line = np.array([[100.0, 200.0], [400.0, 260.0]])
    g = batch_bench.grid_nodes(line)
    assert g.shape == (575, 2)
    u = (line[1] - line[0]) / np.hypot(*(line[1] - line[0]))
    offsets = (g - line[0]) @ np.array([-u[1], u[0]])
    assert np.allclose(np.unique(offsets.round(6)), (np.arange(23) - 11) * 5.0)


def test_gpu_check_batch_step_rehearses_in_the_simulator_mode():
    r = gpu_check.step_batch(sim=True)
    assert [x["backend"] for x in r["rows"]] == ["numba"] * 6 and r["skipped"] == []
    assert [x["decoders"] for x in r["rows"]] == [1, 1, 1, 1, 2, 2]  # then two decoders at once
    # the CPU engine always decodes with PyAV, whatever IVY_GPU_DECODER says
    assert [x["decoder"] for x in r["rows"]] == ["pyav"] * 6
    assert [(x["layout"][:4], x["figures"]) for x in r["rows"][:4]] == [
        ("grid", False), ("grid", True), ("sect", False), ("sect", True)
    ]  # the 575-node grid with figures: issue 25's figures-on target  # fmt: skip
    text = gpu_check.markdown({"batch": r})
    assert "## batch in steady state" in text and "| numba | grid (575 nodes) | off | 1 |" in text
    assert "| numba | grid (575 nodes) | off | 2 | pyav |" in text
    assert "| numba | grid (575 nodes) | off | 2 (pyav asked) | pyav |" in text
    assert sum(gpu_check.LIMITS.values()) <= 480  # the whole check under 8 minutes
