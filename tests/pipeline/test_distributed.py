"""Batches on a Dask cluster (local worker processes) give the same results."""

import shutil

import distributed  # a declared dependency: missing, the run fails (no skip)
import pandas as pd
import pytest
from typer.testing import CliRunner

from ivy_gpu import process_batch_csv
from ivy_gpu.cli.main import app
from ivy_gpu.pipeline.batch_csv import RUN_COLUMNS, SUMMARY_COLUMNS


@pytest.fixture
def csv_batch(video_site, tmp_path):
    d, truth = video_site
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(d / truth["video"], tmp_path / name)
    (tmp_path / "batch.csv").write_text(
        "video_path,water_surface_elevation,max_frames\n"
        f"a.mp4,{truth['wse_m']},40\n"
        f"gone.mp4,{truth['wse_m']},40\n"
        f"b.mp4,{truth['wse_m']},50\n"
    )
    return tmp_path, d / "site.ivy"


def test_cluster_batch_matches_the_local_batch(csv_batch):
    folder, scaffold = csv_batch
    local = process_batch_csv(scaffold, folder / "batch.csv", folder / "local", backend="numba")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        remote = process_batch_csv(
            scaffold, folder / "batch.csv", folder / "remote", backend="numba", client=client
        )
    assert [r.success for r in remote.video_results] == [True, False, True]
    for a, b in zip(local.video_results, remote.video_results, strict=True):
        assert a.error_stage == b.error_stage
        if a.success:
            assert b.total_discharge == pytest.approx(a.total_discharge, rel=1e-9)
    cols = [c for c in SUMMARY_COLUMNS if c not in RUN_COLUMNS]
    la = pd.read_csv(folder / "local" / "batch_summary.csv", keep_default_na=False)
    rb = pd.read_csv(folder / "remote" / "batch_summary.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(la[cols], rb[cols])  # same rows, CSV order
    assert (folder / "remote" / "b" / "results.json").exists()


def test_cli_batch_on_local_workers(csv_batch):
    folder, scaffold = csv_batch
    res = CliRunner().invoke(
        app,
        [
            "batch",
            str(scaffold),
            str(folder / "batch.csv"),
            "-o",
            str(folder / "cli"),
            "-q",
            "--workers",
            "2",
            "--backend",
            "numba",
        ],
    )
    assert res.exit_code == 1, res.output  # gone.mp4 fails
    assert "2 of 3 videos completed, 1 failed" in res.output
