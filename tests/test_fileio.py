"""Atomic outputs: a failed write leaves the old file and no temporary file."""

import os
import stat

import pytest

from ivy_gpu.fileio import atomic_output, atomic_write_text


def test_atomic_write_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "summary.csv"
    atomic_write_text(target, "a\n")
    atomic_write_text(target, "b\n")
    assert target.read_text() == "b\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["summary.csv"]


def test_failure_leaves_the_previous_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
