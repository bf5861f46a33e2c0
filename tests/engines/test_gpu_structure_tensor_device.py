"""The gradient method's kernel (one block per STI) against its numba twin, per STI.

The twin is :func:`ivy_gpu.kernels.structure_tensor.orientation_numba` (the CPU engine's
arithmetic, itself held to the NumPy reference by the engine tests). The kernel runs in
numba-cuda's simulator with 4-thread blocks, so every thread strides over many (sample,
frame) pairs and the block reductions run several steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.kernels import structure_tensor
from ivy_gpu.kernels import structure_tensor_device as std
from ivy_gpu.synthetic.scenes import advected_texture


def _stis(p: int, t: int, speeds: list[float], seed: int) -> np.ndarray:
    """Raw STIs of textures moving ``speeds`` px/frame along the line (one row of a scene)."""
    out = []
    for i, v in enumerate(speeds):
        stack = advected_texture((t, 8, p + 8), speed_px=v, direction_geo=90.0, seed=seed + i)
        out.append(np.ascontiguousarray(stack[:, 4, 4 : 4 + p].T, dtype=np.float32))
    return np.stack(out)


def _kernel(sti: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n, p, t = sti.shape
    sizes, offsets = std.pyramid_layout(p)
    scratch = np.full((n, std.scratch_rows(p), t), np.nan, np.float32)
    out = np.full((n, 2), -7.0)
    std.orientation_cuda(sti, sizes, offsets, scratch, valid.astype(np.uint8), out, block=4)
    return out


# one pyramid level; three (40 -> 19 -> 9) with fast streaks, where the coarse levels decide
# where the fine iterations converge (a wrong pyramid moves the slopes by 1e-4 there)
CASES = [
    (12, 24, [0.3, 1.1, -0.8]),
    pytest.param(40, 32, [2.6, -3.1, 1.7], marks=pytest.mark.slow),
]  # 30 s simulated


@pytest.mark.parametrize("p, t, speeds", CASES)
def test_the_kernel_equals_the_numba_twin_per_sti(p, t, speeds):
    sti = _stis(p, t, speeds, seed=5)
    slope, coherence = structure_tensor.orientation_numba(sti)
    assert len(std.pyramid_layout(p)[0]) == (3 if p == 40 else 1)
    got = _kernel(sti, np.ones(len(speeds), bool))
    np.testing.assert_allclose(got[:, 0], slope, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], coherence, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(got[:, 0] - speeds) < 0.25)  # and they measure the motion


def test_an_invalid_sti_keeps_its_slope_and_has_no_coherence():
    sti = _stis(12, 24, [0.6, 0.6], seed=3)
    got = _kernel(sti, np.array([True, False]))
    slope, _ = structure_tensor.orientation_numba(sti)
    np.testing.assert_allclose(got[:, 0], slope, rtol=1e-5, atol=1e-6)
    assert np.isfinite(got[0, 1]) and np.isnan(got[1, 1])


def test_the_pyramid_layout_and_the_limits():
    sizes, offsets = std.pyramid_layout(138)
    assert sizes.tolist() == [138, 68, 33, 16, 7] and offsets.tolist() == [0, 0, 68, 101, 117]
    assert std.scratch_rows(138) == 124 and std.scratch_rows(12) == 1
    assert std.fits(138) and not std.fits(std.MAX_P + 1)
    sti = np.zeros((1, 4, 8), np.float32)
    with pytest.raises(ValueError, match="block: a power of two"):
        std.orientation_cuda(sti, *std.pyramid_layout(4), np.zeros((1, 1, 8), np.float32),
                             np.ones(1, np.uint8), np.zeros((1, 2)), block=3)  # fmt: skip
