"""A moved frame's tables: composed when read on the host, composed on the device by the GPU engine.

The reference is the composition written out (float64, rounded to float32), the formula
:func:`ivy_gpu.frames.stabilize.compose` always used; the GPU engine runs with NumPy here and
must give the same rectified frames bit for bit without the host ever composing.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivy_gpu.engines.xp_engine import XpEngine
from ivy_gpu.frames.stabilize import MovedTables, compose
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
from ivy_gpu.synthetic.sites import Site, SiteSpec

#: A small rotation, scale and shift (reference -> frame pixels).
MOTION = np.array([[0.9995, -0.0123, 1.37], [0.0121, 1.0004, -0.82]])


@pytest.fixture(scope="module")
def rect() -> Rectifier:
    site = Site(SiteSpec(width_px=160, height_px=90))
    params = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    return Rectifier(params, site.spec.wse_m, (160, 90))


def _written_out(rect: Rectifier, a: np.ndarray):
    mx, my = rect.map_x.astype(np.float64), rect.map_y.astype(np.float64)
    return ((a[0, 0] * mx + a[0, 1] * my + a[0, 2]).astype(np.float32),
            (a[1, 0] * mx + a[1, 1] * my + a[1, 2]).astype(np.float32))  # fmt: skip


def test_the_tables_are_composed_when_read_and_equal_the_formula(rect):
    moved = compose(rect, MOTION)
    assert isinstance(moved, MovedTables) and moved.base is rect
    assert "_maps" not in moved.__dict__  # nothing composed yet
    assert moved.output_shape == rect.output_shape and "_maps" not in moved.__dict__
    want_x, want_y = _written_out(rect, MOTION)
    assert np.array_equal(moved.map_x, want_x) and np.array_equal(moved.map_y, want_y)
    assert moved.map_x.dtype == np.float32 and moved.pixel_gsd == rect.pixel_gsd
    # the band of moved tables is the band of the composed ones
    band = moved.band(3, 40, 5, 60)
    assert np.array_equal(band.map_x, want_x[3:41, 5:61])
    assert np.array_equal(band.map_y, want_y[3:41, 5:61])
    # the CPU path rectifies through the composed tables
    frame = np.random.default_rng(0).integers(0, 256, (90, 160), dtype=np.uint8)
    plain = Rectifier.__new__(Rectifier)
    plain.__dict__.update(rect.__dict__, map_x=want_x, map_y=want_y)
    assert np.array_equal(moved.rectify(frame), plain.rectify(frame))


def test_the_gpu_engine_composes_on_the_device(rect):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (90, 160), dtype=np.uint8) for _ in range(3)]
    motions = [MOTION, MOTION * [[1, 1, -1], [1, 1, 2]], np.array([[1.0, 0, 0.4], [0, 1, 0]])]
    engine = XpEngine(np, use_cuda_kernels=False)
    got = np.zeros((3, *rect.output_shape), np.uint8)
    want = np.zeros_like(got)
    for i, (f, a) in enumerate(zip(frames, motions, strict=True)):
        moved = compose(rect, a)
        engine.remap(f, moved, got[i])
        assert "_maps" not in moved.__dict__  # the host never composed these tables
        assert list(engine._coords.values())[-1][0] is rect  # the base tables on the device
        plain = Rectifier.__new__(Rectifier)
        plain.__dict__.update(rect.__dict__)
        plain.map_x, plain.map_y = _written_out(rect, a)
        XpEngine(np, use_cuda_kernels=False).remap(f, plain, want[i])
    assert np.array_equal(got, want) and got.any()
