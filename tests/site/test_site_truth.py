"""Synthetic sites with known truth: geometry, stations and discharge."""

import av
import numpy as np
import pytest

from ivy_gpu.hydraulics.discharge import midsection, normal_component
from ivy_gpu.hydraulics.grid import node_stations, place_nodes
from ivy_gpu.scaffold.ivyfile import load_scaffold
from ivy_gpu.scaffold.rectify import Rectifier
from ivy_gpu.stiv.driver import stiv_exhaustive
from ivy_gpu.synthetic.sites import Site, SiteSpec, make_site


def _section_inputs(cfg, rect, wse):
    nodes = place_nodes(cfg.cross_section_line, cfg.num_grid_points, rect.output_shape)
    ns = node_stations(
        nodes, cfg.cross_section_line, cfg.cross_section, wse, rect.pixel_gsd, cfg.start_bank
    )
    st = np.concatenate([[ns.left_edge], ns.stations, [ns.right_edge]])
    return nodes, ns, st, cfg.cross_section.depth_at(st, wse)


@pytest.mark.parametrize("shape", ["parabola", "trapezoid", "rectangle"])
def test_true_node_velocities_give_discharge_within_1_percent(tmp_path, shape):
    spec = SiteSpec(shape=shape, flow_angle_deg=15.0, num_nodes=21)
    truth = make_site(tmp_path, spec, video=False)
    cfg = load_scaffold(tmp_path / "site.ivy")
    rect = Rectifier(cfg.rectification, spec.wse_m, cfg.calibration_size)
    nodes, ns, st, depth = _section_inputs(cfg, rect, spec.wse_m)
    assert ns.warnings == ()  # the line's ends are the water edges at this WSE
    site = Site(spec)
    # node world positions from the rectified pixels agree with the survey stations
    x, _ = rect.pixel_to_world(nodes[:, 0], nodes[:, 1])
    assert np.allclose(x - spec.x_left_m, ns.stations, atol=1e-6)
    speed = site.surface_speed(ns.stations)
    direction = np.full_like(speed, spec.flow_angle_deg)
    vn = normal_component(speed, direction, cfg.cross_section_line)
    q = midsection(st, depth, np.concatenate([[0.0], vn, [0.0]]), spec.alpha)
    assert q.area == pytest.approx(truth["area_m2"], rel=0.01)
    assert q.discharge == pytest.approx(truth["discharge_m3s"], rel=0.01)


def test_stretch_warning_when_wse_differs(tmp_path):
    spec = SiteSpec()
    make_site(tmp_path, spec, video=False)
    cfg = load_scaffold(tmp_path / "site.ivy")
    rect = Rectifier(cfg.rectification, spec.wse_m - 0.4, cfg.calibration_size)
    _, ns, _, _ = _section_inputs(cfg, rect, spec.wse_m - 0.4)
    assert len(ns.warnings) == 1 and "stretched to the wetted width" in ns.warnings[0]


def test_rectified_synthetic_video_through_stiv_gives_discharge(tmp_path):
    spec = SiteSpec(flow_angle_deg=10.0, duration_s=4.0, num_nodes=21, seed=3)
    truth = make_site(tmp_path, spec)
    cfg = load_scaffold(tmp_path / "site.ivy")
    rect = Rectifier(cfg.rectification, spec.wse_m, cfg.calibration_size)
    with av.open(str(tmp_path / "river.mp4")) as c:
        stack = np.stack([rect.rectify(f.to_ndarray(format="gray")) for f in c.decode(video=0)])
    assert stack.shape[0] == truth["num_frames"] == 120
    nodes, ns, st, depth = _section_inputs(cfg, rect, spec.wse_m)
    s = cfg.stiv
    r = stiv_exhaustive(
        stack,
        nodes[:, 0],
        nodes[:, 1],
        num_pixels=s.num_pixels,
        phi_origin=s.phi_origin,
        d_phi=s.d_phi,
        phi_range=s.phi_range,
        pixel_gsd=rect.pixel_gsd,
        d_t=1 / spec.fps,
        refine=True,
        backend="numba",
    )
    vn = normal_component(r.magnitude, r.direction, cfg.cross_section_line)
    q = midsection(st, depth, np.concatenate([[0.0], vn, [0.0]]), spec.alpha)
    assert q.discharge == pytest.approx(truth["discharge_m3s"], rel=0.03)
    inner = slice(3, -3)  # away from the banks, where speeds are near zero
    true_v = Site(spec).surface_speed(ns.stations[inner])
    assert np.allclose(r.magnitude[inner], true_v, rtol=0.06)
    err = r.direction[inner] - 10.0
    assert abs(np.median(err)) < 1.5 and np.all(np.abs(err) < 5.0), err  # slow flow near banks
