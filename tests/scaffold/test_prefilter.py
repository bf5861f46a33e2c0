"""The scaffold's FFmpeg pre-filters, checked against FFmpeg's own filters (PyAV)."""

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from ivy_gpu.scaffold.prefilter import PreFilters
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier
from ivy_gpu.synthetic.sites import Site, SiteSpec

W, H = 320, 240


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(4)
    img = cv2.GaussianBlur(rng.integers(0, 255, (H, W)).astype(np.float32), (0, 0), 4)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _ffmpeg(img, chain):
    graph = av.filter.Graph()
    last = graph.add_buffer(width=W, height=H, format="gray", time_base=Fraction(1, 30))
    for name, args in chain:
        node = graph.add(name, args) if args else graph.add(name)
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    graph.push(av.VideoFrame.from_ndarray(img, format="gray"))
    return graph.pull().to_ndarray().astype(float)


def _mine(img, pf):
    xx, yy = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    mx, my = pf.source_coordinates(xx, yy, W, H)
    inner = (mx > 3) & (mx < W - 4) & (my > 3) & (my < H - 4)
    out = cv2.remap(img, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR)
    return out.astype(float), inner


@pytest.mark.parametrize(
    "params,chain,tol",
    [
        (
            {"calibrate_radial": True, "cx": 0.45, "cy": 0.55, "k1": -0.2, "k2": 0.05},
            [("lenscorrection", "cx=0.45:cy=0.55:k1=-0.2:k2=0.05:i=bilinear")],
            0.05,
        ),
        # the GUI's default (k1 = k2 = 0, bilinear) is NOT an identity: it shifts by half a pixel
        ({"calibrate_radial": False}, [("lenscorrection", "k1=0:k2=0:i=bilinear")], 0.2),
        ({"video_flip": "hflip"}, [("hflip", None)], 0.0),
        ({"video_rotation": 17}, [("rotate", "17*PI/180")], 0.6),
        (
            {"video_rotation": 12, "video_flip": "vflip", "calibrate_radial": True, "k1": 0.1},
            [("rotate", "12*PI/180"), ("vflip", None), ("lenscorrection", "k1=0.1:i=bilinear")],
            1.0,
        ),
    ],
)
def test_composed_map_reproduces_ffmpeg(image, params, chain, tol):
    pf = PreFilters.from_ffmpeg_parameters(params)
    want = _ffmpeg(image, chain)
    got, inner = _mine(image, pf)
    assert np.abs(got - want)[inner].mean() <= tol


def test_half_pixel_shift_of_the_default_lens_filter_is_real(image):
    want = _ffmpeg(image, [("lenscorrection", "k1=0:k2=0:i=bilinear")])
    inner = np.zeros_like(want, bool)
    inner[4:-4, 4:-4] = True
    assert np.abs(want - image)[inner].mean() > 2.0  # not an identity


def test_gui_rules_and_bad_values():
    assert PreFilters.from_ffmpeg_parameters({"video_rotation": -5}).identity  # GUI: only > 0
    assert PreFilters.from_ffmpeg_parameters({"video_flip": "none"}).identity
    assert PreFilters.from_ffmpeg_parameters({"calibrate_radial": False}).lens == (0.5, 0.5, 0, 0)
    with pytest.raises(ValueError, match="video_flip 'mirror' is not"):
        PreFilters.from_ffmpeg_parameters({"video_flip": "mirror"}, "site.ivy")


def test_rectifier_tables_point_into_the_raw_frame():
    site = Site(SiteSpec())
    pf = PreFilters.from_ffmpeg_parameters({"video_rotation": 3, "calibrate_radial": 1, "k1": 0.1})
    base = RectificationParams(
        "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent
    )
    plain = Rectifier(base, 100.8, (640, 360))
    filt = Rectifier(
        RectificationParams(
            "camera matrix", camera_matrix=site.camera.matrix, extent=site.extent, prefilters=pf
        ),
        100.8,
        (640, 360),
    )
    mx, my = pf.source_coordinates(plain.map_x, plain.map_y, 640, 360)
    assert np.allclose(filt.map_x, mx, atol=1e-3) and np.allclose(filt.map_y, my, atol=1e-3)


def test_scaffold_reads_its_prefilters(tmp_path):
    import json
    import zipfile

    from ivy_gpu.scaffold.ivyfile import PROJECT_JSON, load_scaffold
    from ivy_gpu.synthetic.sites import make_site

    make_site(tmp_path, SiteSpec(), video=False)
    assert load_scaffold(tmp_path / "site.ivy").rectification.prefilters.identity
    src, dst = tmp_path / "site.ivy", tmp_path / "filtered.ivy"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == PROJECT_JSON:
                p = json.loads(data)
                p["ffmpeg_parameters"].update(video_rotation=2.5, calibrate_radial=False, k1=0.0)
                data = json.dumps(p)
            zout.writestr(name, data)
    pf = load_scaffold(dst).rectification.prefilters
    assert pf.rotation_deg == 2.5 and pf.lens == (0.5, 0.5, 0.0, 0.0)
