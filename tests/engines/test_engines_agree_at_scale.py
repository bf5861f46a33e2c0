"""The GPU engine's array code agrees with the numba engine at the size users run.

Issue 22 asks for the same best angle on every node of ``grid`` and speeds within 1e-5
between the GPU and the CPU engines. ``make gpu-check`` measures that on a device at full
size and, under the simulator, on STIs of 24 frames x 8 pixels, where float32 rounding moves
a refined angle more (up to 4e-5 there). This test runs the code CuPy runs (the array code,
NumPy standing in) on STIs of the real size (T = 300, P = 32 and 138, 31 angles) and holds it
to the issue's bound, node by node, in every case the gpu-check lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.benchmarks.suite import node_layout, streaming_stack
from ivy_gpu.engines import backends
from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.params import StivParams
from ivy_gpu.stiv.driver import run_stiv

#: The issue's bound on the relative speed difference between engines.
SPEED_REL = 1e-5

CASES = {
    "acf": {},
    "acf, blur sigma 1": {"sigma": 1.0},
    "acf, P = 138": {"num_pixels": 138},
    "acf, nearest sampling": {"interpolation": "nearest"},
    "acf, stride (1 px/frame)": {"stride": True, "speed": 1},
    "acf, compat ivytools": {"compat": "ivytools"},
    "gradient": {"method": "gradient"},
    "gradient, blur sigma 1": {"method": "gradient", "sigma": 1.0},
}


@pytest.mark.parametrize("case", list(CASES))
def test_array_code_agrees_with_numba_per_node_at_full_sti_size(case):
    over = dict(CASES[case])
    compat = over.pop("compat", None)
    speed = over.pop("speed", 2)
    p = over.pop("num_pixels", 32)
    params = StivParams(
        num_pixels=p, phi_origin=90, phi_range=15, d_phi=1, refine=True,
        **{"stride": False, **over},
    ).with_compat(compat)  # fmt: skip
    stack = streaming_stack(300, 300, 400, speed_px=speed)
    xy = node_layout("grid", 300, 400, p)[::6]
    kw = dict(pixel_gsd=0.01, d_t=1 / 30)
    ref = run_stiv(stack, xy[:, 0], xy[:, 1], params, backend=backends.get_engine("numba"), **kw)
    engine = XpEngine(np, use_cuda_kernels=False)
    got = run_stiv(engine.to_device(stack), xy[:, 0], xy[:, 1], params, backend=engine, **kw)
    assert got.backend != ref.backend
    assert np.isfinite(ref.magnitude).all()  # every node measured: the bound reads each one
    np.testing.assert_array_equal(got.best_phi_ari, ref.best_phi_ari)
    rel = np.abs(got.magnitude - ref.magnitude) / ref.magnitude
    assert rel.max() <= SPEED_REL, (int(rel.argmax()), float(rel.max()))
    if params.stride:
        assert (ref.stride > 1).any()  # the strided re-measure ran
        np.testing.assert_array_equal(got.stride, ref.stride)
