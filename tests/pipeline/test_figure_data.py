"""``figure_data.npz``: the STIs saved as grey levels, read back exactly, and hostile files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivy_gpu.pipeline.outputs import (
    FIGURE_DATA,
    FigureInputs,
    load_figure_inputs,
    save_figure_inputs,
    sti_levels,
)
from ivy_gpu.report.review import sti_image, stretch_bounds


def _inputs(sti: np.ndarray | None, seed: int = 3) -> FigureInputs:
    rng = np.random.default_rng(seed)
    n = 4 if sti is None else len(sti)
    frame = rng.integers(0, 256, size=(40, 64), dtype=np.uint8)
    return FigureInputs(
        frame, rng.random(n), rng.random(n) * 360, rng.random(n) * 90, rng.random(n), sti,
        rng.random(n) < 0.5,
    )  # fmt: skip


def test_the_stis_come_back_as_the_grey_levels_drawn_with_their_nan(tmp_path):
    rng = np.random.default_rng(7)
    sti = rng.random((5, 9, 13)).astype(np.float32) * 255
    sti[1] = np.nan  # a node whose lines left the image
    sti[3, 2:4, 5:] = np.nan  # part of one
    save_figure_inputs(tmp_path, _inputs(sti))
    with np.load(tmp_path / FIGURE_DATA) as z:
        assert z["sti_u8"].dtype == np.uint8 and "sti" not in z.files
    got = load_figure_inputs(tmp_path)
    assert got is not None and got.sti.dtype == np.float32
    want = sti_levels(sti)
    assert np.array_equal(np.isnan(got.sti), np.isnan(sti))
    assert np.array_equal(got.sti, want, equal_nan=True)
    assert np.nanmax(np.abs(got.sti - sti)) <= 0.5  # rounding only
    assert np.array_equal(got.stride_limited, _inputs(sti).stride_limited)


def test_without_nan_no_mask_is_written_and_without_stis_none_come_back(tmp_path):
    sti = np.full((2, 3, 4), 17.4, np.float32)
    save_figure_inputs(tmp_path, _inputs(sti))
    with np.load(tmp_path / FIGURE_DATA) as z:
        assert "sti_nan" not in z.files
    assert np.all(load_figure_inputs(tmp_path).sti == 17.0)
    save_figure_inputs(tmp_path, _inputs(None))
    assert load_figure_inputs(tmp_path).sti is None


def test_an_earlier_folder_with_compressed_float16_stis_still_redraws(tmp_path):
    import cv2

    data = _inputs(None)
    sti = np.linspace(0, 255, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    ok, jpeg = cv2.imencode(".jpg", data.first_frame)
    with (tmp_path / FIGURE_DATA).open("wb") as fh:  # the layout written before the bytes
        np.savez_compressed(
            fh, first_frame_jpeg=jpeg.ravel(), magnitude=data.magnitude[:2],
            direction=data.direction[:2], theta=data.theta[:2], score=data.score[:2],
            sti=sti.astype(np.float16),
        )  # fmt: skip
    got = load_figure_inputs(tmp_path)
    assert got is not None
    assert np.array_equal(got.sti, sti.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    "broken",
    [
        dict(sti_u8=np.zeros((2, 3), np.uint8)),  # not (nodes, P, T)
        dict(sti_u8=np.zeros((2, 3, 4), np.float32)),  # not bytes
        dict(sti_u8=np.zeros((2, 3, 4), np.uint8), sti_nan=np.zeros(1, np.uint8)),  # short
    ],
)
def test_a_damaged_sti_array_reads_as_no_inputs(tmp_path, broken):
    save_figure_inputs(tmp_path, _inputs(np.zeros((2, 3, 4), np.float32)))
    with np.load(tmp_path / FIGURE_DATA) as z:
        arrays = {k: z[k] for k in z.files if k != "sti_u8"}
    arrays.update(broken)
    with (tmp_path / FIGURE_DATA).open("wb") as fh:
        np.savez(fh, **arrays)
    assert load_figure_inputs(tmp_path) is None


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=400))
def test_any_bytes_as_figure_data_read_as_none_or_inputs(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("fd")
    (d / FIGURE_DATA).write_bytes(raw)
    got = load_figure_inputs(d)
    assert got is None or isinstance(got, FigureInputs)


_KEYS = (
    "first_frame_jpeg", "magnitude", "direction", "theta", "score", "sti_u8", "sti_nan",
    "stride_limited",
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    key=st.sampled_from(_KEYS),
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, "U3"]),
    shape=st.lists(st.integers(0, 5), max_size=4),
)
def test_any_array_under_any_key_reads_as_none_or_inputs(tmp_path_factory, key, dtype, shape):
    d = tmp_path_factory.mktemp("fd")
    sti = np.full((4, 3, 5), 9.0, np.float32)
    sti[0] = np.nan
    save_figure_inputs(d, _inputs(sti))
    with np.load(d / FIGURE_DATA) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = np.zeros(shape, dtype)
    with (d / FIGURE_DATA).open("wb") as fh:
        np.savez(fh, **arrays)
    got = load_figure_inputs(d)
    assert got is None or isinstance(got, FigureInputs)


def test_the_stretch_is_numpys_percentiles_of_the_grey_levels():
    rng = np.random.default_rng(11)
    for _ in range(300):
        img = rng.integers(0, 256, size=(rng.integers(1, 30), rng.integers(1, 30)))
        img = img.astype(np.float32)
        img[rng.random(img.shape) < rng.random() * 0.5] = np.nan
        got = stretch_bounds(img)
        if np.isnan(img).all():
            assert got is None and sti_image(img, 30.0) is None
            continue
        assert got == pytest.approx(tuple(np.nanpercentile(img, [1, 99])), abs=1e-9)


def test_an_sti_image_is_the_stretched_sti_sampled_down_with_its_streak():
    import base64

    import cv2

    sti = np.tile(np.arange(300, dtype=np.float32) % 200, (138, 1))  # a ramp in time
    uri = sti_image(sti, float("nan"))  # no streak: only the stretched grey
    png = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), 0)
    lo, hi = stretch_bounds(sti)
    cols = np.arange(240) * 300 // 240  # nearest neighbour's columns
    want = np.clip((sti[0, cols] - lo) / (hi - lo) * 255, 0, 255)
    assert png.shape == (96, 240)
    assert np.abs(png[48].astype(float) - want).max() <= 12  # JPEG at quality 82


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
    nan_share=st.floats(0.0, 1.0),
)
def test_packing_keeps_every_grey_level_and_every_nan(shape, seed, nan_share):
    from ivy_gpu.pipeline.outputs import pack_stis, unpack_stis

    rng = np.random.default_rng(seed)
    sti = (rng.random(shape) * 300 - 20).astype(np.float32)  # beyond 0-255 too: clipped
    sti[rng.random(shape) < nan_share] = np.nan
    got = unpack_stis(pack_stis(sti))
    assert got.shape == sti.shape and got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(sti))
    ok = ~np.isnan(sti)
    assert np.array_equal(got[ok], np.clip(np.rint(sti[ok]), 0, 255))
