"""Every flag on a planted bad node, node by node, on clean and on noisy texture.

One stack, one band of rows per node, each band its own scene: steady flow east at 1 px/frame
(the truth of the clean nodes), or one planted fault: no data, too fast, a direction outside
the search fan, a speed that changes half way through the clip, a fast thread among slow
neighbours, texture-less noise, slow flow the clip is too short to stride, still water. STIV,
the time windows, the zero-speed test and the flags run as the pipeline runs them; each
node's flags are asserted exactly, and each clean node's velocity against the truth.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import ivy_gpu.engines.backends as backends
from ivy_gpu.frames.stack import LoadedVideo
from ivy_gpu.params import StivParams
from ivy_gpu.stiv.driver import run_stiv
from ivy_gpu.stiv.quality import (
    QualityRules,
    assess,
    signed_normal,
    window_normals,
    zero_speed_ratios,
)
from ivy_gpu.synthetic.scenes import advected_texture

T, BAND, WIDTH = 200, 16, 110
PLAN = [
    "clean",
    "clean",
    "invalid",
    "clean",
    "threshold",
    "clean",
    "fan_edge",
    "clean",
    "unsteady",
    "clean",
    "outlier",
    "clean",
    "low_score",
    "clean",
    "stride_limited",
    "clean",
    "still",
    "clean",
]
#: Flags each planted node must carry (others may join where the fault implies them).
EXPECTED = {
    "invalid": {"invalid"},
    "threshold": {"threshold"},
    "fan_edge": {"fan_edge"},
    "unsteady": {"unsteady"},
    "outlier": {"outlier"},
    "low_score": {"low_score"},
    "stride_limited": {"stride_limited"},
    "still": {"still"},
}
#: Flags that leave the planted node out of the discharge (True) or keep it (False).
LEFT_OUT = {
    "invalid": True,
    "threshold": True,
    "fan_edge": False,
    "unsteady": True,
    "outlier": True,
    "low_score": True,
    "still": False,
}


def _moving(speed: float, direction: float, seed: int, noise: float) -> np.ndarray:
    return advected_texture(
        (T, BAND, WIDTH), speed_px=speed, direction_geo=direction, seed=seed, noise=noise,
        dtype=np.float32,
    )  # fmt: skip


def _still(seed: int, noise: float) -> np.ndarray:
    """A static texture plus one that changes in place (9-frame correlation time)."""
    rng = np.random.default_rng(seed)

    def tex() -> np.ndarray:
        t = cv2.GaussianBlur(rng.standard_normal((BAND, WIDTH)).astype(np.float32), (0, 0), 1.5)
        return t / t.std()

    basis = np.stack([tex() for _ in range(16)])
    w = cv2.GaussianBlur(rng.standard_normal((T + 64, 16)), (1, 0), sigmaX=1e-3, sigmaY=9.0)
    w = w[32 : 32 + T] / np.sqrt(np.mean(np.sum(w[32 : 32 + T] ** 2, axis=1)))
    out = 128 + 25 * tex()[None] + 35 * np.einsum("tk,khw->thw", w, basis)
    return (out + rng.normal(0, noise, out.shape)).astype(np.float32)


def _band(kind: str, i: int, noise: float) -> np.ndarray:
    if kind == "invalid":
        return np.zeros((T, BAND, WIDTH), np.float32)  # no data: constant in time
    if kind == "threshold":
        return _moving(3.0, 90.0, 100 + i, noise)
    if kind == "fan_edge":
        return _moving(1.0, 90.0 + 25.0, 100 + i, noise)
    if kind == "unsteady":
        a, b = _moving(1.0, 90.0, 100 + i, noise), _moving(0.45, 90.0, 200 + i, noise)
        return np.concatenate([a[: T // 2], b[T // 2 :]])
    if kind == "outlier":
        return _moving(1.8, 90.0, 100 + i, noise)
    if kind == "low_score":  # a faint streak under strong noise (rain, a dull surface)
        rng = np.random.default_rng(100 + i)
        faint = 128 + 0.15 * (_moving(1.0, 90.0, 100 + i, 0.0) - 128)
        return (faint + rng.normal(0, 25, faint.shape)).astype(np.float32)
    if kind == "stride_limited":
        return _moving(0.2, 90.0, 100 + i, noise)  # wants k = 8, 200 frames allow 6
    if kind == "still":
        return _still(100 + i, noise)
    return _moving(1.0, 90.0, 100 + i, noise)


@pytest.fixture(scope="module", params=[0.0, 8.0], ids=["clean", "noisy"])
def planted(request):
    noise = request.param
    stack = np.concatenate([_band(k, i, noise) for i, k in enumerate(PLAN)], axis=1)
    stack = np.clip(stack, 0, 255).astype(np.uint8)
    y = BAND * np.arange(len(PLAN)) + BAND / 2 - 0.5
    x = np.full(y.size, 20.0)
    params = StivParams(
        num_pixels=32, phi_origin=90.0, phi_range=10.0, d_phi=1.0, max_vel_threshold=2.5,
        refine=True,
    )  # fmt: skip
    engine = backends.get_engine("numba")
    nodes = np.column_stack([x, y])
    sr = run_stiv(stack, x, y, params, pixel_gsd=1.0, d_t=1.0, backend=engine)
    n_hat = np.array([1.0, 0.0])  # the section runs down the image; downstream is east
    vn = signed_normal(sr.magnitude, sr.direction, n_hat)
    loaded = LoadedVideo(stack, stack[0], np.arange(float(T)), 1.0, SimpleNamespace(pixel_gsd=1.0))
    rules = QualityRules()
    windows = window_normals(loaded, nodes, sr, params, engine, n_hat, rules)
    zero = zero_speed_ratios(loaded, nodes, sr, params, engine, rules)
    q = assess(sr, vn, y, windows, params.phi_range, rules, zero)
    return q, q.velocity(vn), sr


def test_every_clean_node_is_clean_and_right(planted):
    q, vn, _ = planted
    for k, kind in enumerate(PLAN):
        if kind != "clean":
            continue
        assert q.flags[k] == (), (k, q.flags[k])
        assert not q.excluded[k], k
        assert vn[k] == pytest.approx(1.0, abs=0.02), (k, vn[k])
        assert q.sigma_v[k] < 0.02, (k, q.sigma_v[k])


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_planted_node_carries_its_flag(planted, kind):
    q, vn, sr = planted
    k = PLAN.index(kind)
    assert EXPECTED[kind] <= set(q.flags[k]), (kind, q.flags[k])
    if kind in LEFT_OUT:
        assert q.excluded[k] == LEFT_OUT[kind], (kind, q.flags[k])
    if kind == "still":
        assert vn[k] == 0.0 and q.flags[k] == ("still",)
    if kind == "fan_edge":  # kept: the speed along the fan's edge line still reads near 1
        assert 0.8 < vn[k] < 1.05
    if kind == "stride_limited":  # kept at the largest stride the clip allows
        assert sr.stride[k] == T // 32 and vn[k] == pytest.approx(0.2, rel=0.1)


def test_the_counts_add_up(planted):
    q, _, _ = planted
    counts = q.counts()
    clean = PLAN.count("clean")
    left_out = sum(LEFT_OUT.values())
    # the stride-limited node (0.2 among 1.0) is an outlier too: left out as well
    assert counts["valid"] == clean + 2  # + fan_edge and still, kept
    assert q.excluded.sum() == left_out + 1
    for kind in EXPECTED:
        assert counts[kind] >= 1, kind
