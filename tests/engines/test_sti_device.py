"""The fused STI kernel (device taps, time-last crop, one block per STI) against the host path.

The reference is what the engines do today: taps from :func:`ivy_gpu.stiv.lines.pair_taps`
(host), :func:`~ivy_gpu.kernels.sti.gather_numpy` and
:func:`~ivy_gpu.kernels.sti.standardize_numpy`. The CUDA kernel runs in numba-cuda's
simulator here (tests/conftest.py), and on a GPU under ``make gpu-check``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from ivy_gpu.kernels import sti
from ivy_gpu.kernels.sti_device import (
    gather_zscore_cuda,
    gather_zscore_numpy,
    time_last_crop,
)
from ivy_gpu.params import StivParams
from ivy_gpu.stiv.lines import line_geometry, line_offsets, pair_taps, search_angles


def _case(seed: int, interpolation: str, t: int = 12, p: int = 6, nodes: int = 3):
    """A random stack, nodes and fan; the usable pairs and what the host path gives."""
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 256, (t, 40, 48), dtype=np.uint8)
    xy = rng.uniform([10, 10], [38, 30], (nodes, 2))
    params = StivParams(num_pixels=p, phi_origin=30.0, phi_range=20.0, d_phi=10.0,
                        interpolation=interpolation)  # fmt: skip
    lines = line_geometry(xy, params, 48, 40)
    taps = pair_taps(lines, params)
    y_lo, y_hi, x_lo, x_hi = lines.window
    crop = stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1]
    want_z, want_valid = sti.standardize_numpy(sti.gather_numpy(crop, *taps))
    n_ang = lines.phis.shape[1]
    fan = search_angles(params.phi_origin, params.phi_range, params.d_phi)
    args = dict(
        node_x=xy[lines.pairs // n_ang, 0].astype(np.float64),
        node_y=xy[lines.pairs // n_ang, 1].astype(np.float64),
        pair_angle=(lines.pairs % n_ang).astype(np.int32),
        offsets=line_offsets(fan, p),
        x_lo=x_lo,
        y_lo=y_lo,
        nearest=interpolation == "nearest",
    )
    return stack, lines.window, args, np.nan_to_num(want_z), want_valid


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_reference_twin_equals_the_host_path(seed, interpolation):
    stack, window, args, want, valid = _case(seed, interpolation)
    tl = time_last_crop(stack, window)
    assert tl.shape == (window[1] - window[0] + 1, window[3] - window[2] + 1, stack.shape[0])
    z, ok = gather_zscore_numpy(tl, **args, n_fft=20)
    assert z.shape == (want.shape[0], want.shape[1], 20)
    np.testing.assert_allclose(z[..., :12], want, atol=2e-6)
    assert not z[..., 12:].any()  # the FFT's zero padding
    assert np.array_equal(ok, valid)


def test_a_constant_row_clears_the_sti_and_reads_zero():
    stack, window, args, _, _ = _case(3, "bilinear")
    stack[:] = 77  # no texture: every row constant
    z, ok = gather_zscore_numpy(time_last_crop(stack, window), **args, n_fft=12)
    assert not ok.any() and not z.any()


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_the_cuda_kernel_equals_the_twin(interpolation):
    """Per STI, per row, per frame: the kernel's block reductions against the twin.

    Blocks of 4 threads over 10 frames: every thread strides over several frames (the
    production block of 128 is checked against today's path by the next test and by
    gpu-check).
    """
    stack, window, args, want, valid = _case(5, interpolation, t=10, p=4, nodes=2)
    tl = time_last_crop(stack, window)
    z_ref, ok_ref = gather_zscore_numpy(tl, **args, n_fft=14)
    n, p = z_ref.shape[:2]
    out = np.full((n, p, 14), np.nan, np.float32)  # every value must be written
    ok = np.ones(n, np.uint8)
    dev = {k: cuda.to_device(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
    d_out, d_ok = cuda.to_device(out), cuda.to_device(ok)
    gather_zscore_cuda(cuda.to_device(tl), **dev, out=d_out, valid=d_ok, block=4)
    got, got_ok = d_out.copy_to_host(), d_ok.copy_to_host().astype(bool)
    np.testing.assert_allclose(got, z_ref, atol=2e-6)
    np.testing.assert_allclose(got[..., :10], want, atol=2e-6)  # and the host path
    assert np.array_equal(got_ok, ok_ref) and np.array_equal(got_ok, valid)
    # a constant STI: flagged invalid, rows 0
    flat = np.full_like(tl, 9)
    d_out, d_ok = cuda.to_device(out), cuda.to_device(np.ones(n, np.uint8))
    gather_zscore_cuda(cuda.to_device(flat), **dev, out=d_out, valid=d_ok, block=4)
    assert not d_ok.copy_to_host().any() and not d_out.copy_to_host().any()
    with pytest.raises(ValueError, match="block: a power of two"):
        gather_zscore_cuda(tl, **args, out=out, valid=ok, block=6)
    with pytest.raises(ValueError, match="frames: 4:4 of 10"):  # an empty window
        gather_zscore_cuda(tl, **args, out=out, valid=ok, block=4, frames=(4, 4))


def test_each_sti_reads_its_own_time_window():
    """Per-STI first frames (several windows in one launch): kernel, twin and slices agree."""
    stack, window, args, _, _ = _case(7, "bilinear", t=14, p=4, nodes=2)
    tl = time_last_crop(stack, window)
    n = len(args["node_x"])
    starts = (np.arange(n) % 3 * 2).astype(np.int32)  # 0, 2, 4, 0, ...
    z_ref, ok_ref = gather_zscore_numpy(tl, **args, n_fft=12, starts=starts, t_len=8)
    for s in range(n):  # each STI is the twin on its own slice of frames
        one = {k: (v[s : s + 1] if k in ("node_x", "node_y", "pair_angle") else v)
               for k, v in args.items()}  # fmt: skip
        want, _ = gather_zscore_numpy(tl[..., starts[s] : starts[s] + 8], **one, n_fft=12)
        np.testing.assert_allclose(z_ref[s], want[0], atol=1e-6)
    out = np.full((n, 4, 12), np.nan, np.float32)
    ok = np.ones(n, np.uint8)
    gather_zscore_cuda(tl, **args, out=out, valid=ok, block=4, frames=(0, 8), starts=starts)
    np.testing.assert_allclose(out, z_ref, atol=2e-6)
    assert np.array_equal(ok.astype(bool), ok_ref)
    with pytest.raises(ValueError, match="starts: frames past the 14"):
        gather_zscore_cuda(tl, **args, out=out, valid=ok, block=4, frames=(0, 8),
                           starts=starts + 3)  # fmt: skip


def test_gpu_check_times_both_paths_and_they_agree():
    """The rehearsal of gpu-check's row (simulator): same STIs, same valid flags."""
    from ivy_gpu.benchmarks.gpu_check import fused_rows, markdown

    r = fused_rows(sim=True)
    assert r["pairs"] == 4 and r["max_diff"] < 1e-5 and r["valid_equal"]
    assert r["two_kernels_s"] > 0 and r["fused_s"] > 0
    text = markdown({"stiv": {"rows": [], "frames": r["frames"], "P": r["P"], "fused": r}})
    assert "Gather + z-score on `grid` (4 STIs" in text and "valid flags equal: True" in text


def test_gpu_check_times_every_stage_of_the_kernel_path():
    """The rehearsal of gpu-check's per-stage rows (simulator, four lines)."""
    from ivy_gpu.benchmarks import gpu_check
    from ivy_gpu.benchmarks.gpu_stages import stage_markdown, stage_rows

    s = gpu_check._sizes(True)
    r = stage_rows(True, s, gpu_check._stack(True), gpu_check._layout("grid", True))
    assert r["pairs"] == 4 and r["same_rays"]
    assert r["direct_fits"] and r["direct_same_rays"]  # the direct path: the same rays
    assert r["shared_fits"] and r["shared_same_rays"]  # the shared-memory FFT path: the same
    stages = [k for k, v in r.items() if isinstance(v, float)]  # seconds; pairs and flags not
    assert len(stages) == 10 and all(r[k] > 0 for k in stages)
    text = "\n".join(stage_markdown(r))
    assert "- ray sums + peaks kernel:" in text and "sum of the kernel path" in text
    assert "sum of the direct path" in text and "sum of the shared-memory FFT path" in text
