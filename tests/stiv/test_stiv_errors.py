"""Bad input gives a one-line error naming the parameter and the problem."""

import numpy as np
import pytest

from ivy_gpu.stiv.driver import stiv_exhaustive

STACK = np.zeros((10, 20, 20), dtype=np.uint8)
GOOD = dict(
    num_pixels=8, phi_origin=90, d_phi=1, phi_range=10, pixel_gsd=0.1, d_t=0.1, backend="numpy"
)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(stack=STACK.astype(np.float64)), "stack: dtype float64 is not supported"),
        (dict(stack=STACK[0]), r"stack: expected shape \(frames, rows, cols\)"),
        (dict(stack=STACK[:2]), "stack: needs at least 4 frames"),
        (dict(num_pixels=7), "num_pixels: must be an even integer >= 4, got 7"),
        (dict(num_pixels=8.5), "num_pixels: must be an integer"),
        (dict(x=[25.0]), r"x: node 0 at 25.0 is outside the stack \(valid 0 to 19\)"),
        (dict(y=[-1.0]), "y: node 0 at -1.0 is outside the stack"),
        (dict(x=[1.0, 2.0]), "x, y: expected two non-empty 1-D arrays of equal length"),
        (dict(d_t=0.0), "d_t: must be finite and > 0, got 0.0"),
        (dict(d_t=-1), "d_t: must be finite and > 0"),
        (dict(pixel_gsd=float("nan")), "pixel_gsd: must be finite and > 0"),
        (dict(phi_range=200), r"phi_range: must be in \[0, 180\], got 200"),
        (dict(d_phi=0), "d_phi: must be finite and > 0"),
        (dict(interpolation="cubic"), "interpolation: unknown value 'cubic'"),
        (dict(method="piv"), "method: unknown value 'piv'"),
        (dict(backend="opencl"), "backend: unknown backend 'opencl'"),
    ],
)
def test_bad_input_names_the_parameter(change, match):
    args = dict(stack=STACK, x=[10.0], y=[10.0], **GOOD)
    args.update(change)
    stack, x, y = args.pop("stack"), args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match) as info:
        stiv_exhaustive(stack, x, y, **args)
    assert "\n" not in str(info.value)


def test_cupy_without_gpu_is_a_value_error(monkeypatch):
    import ivy_gpu.engines.backends as backends

    monkeypatch.setattr(backends, "gpu_status", lambda: (False, "CuPy is not importable"))
    with pytest.raises(ValueError, match="backend: 'cupy' is not usable here: CuPy is not"):
        stiv_exhaustive(STACK, [10.0], [10.0], **{**GOOD, "backend": "cupy"})
