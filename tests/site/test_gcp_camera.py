"""GCP tables and the camera-matrix DLT against the Boneyard regression values (spec 13)."""

import numpy as np
import pytest

from ivy_gpu.scaffold.camera import CameraModel, solve_camera_matrix
from ivy_gpu.site.gcp import read_gcp_csv
from ivy_gpu.synthetic.sites import Site, SiteSpec


def test_boneyard_dlt_matches_the_reference(data_dir):
    g = read_gcp_csv(data_dir / "boneyard" / "IVy_Boneyard_GCP.csv")
    assert len(g.ids) == 19 and g.use_rectification.sum() == 15
    world, pixel = g.rectification_points()
    cam = CameraModel(solve_camera_matrix(world, pixel))
    assert cam.reprojection_rms_px(world, pixel) == pytest.approx(5.8, abs=0.05)
    assert np.allclose(cam.centre, [83.5, 122.0, 99.4], atol=0.1)
    assert cam.matrix[2, 3] == 1.0
    # the fixed RMSE: each GCP back-projected at its own elevation, metres
    assert 0.0 < cam.rmse_m(world, pixel) < 0.2


def test_feet_variant_gives_the_same_geometry(data_dir):
    m = read_gcp_csv(data_dir / "boneyard" / "IVy_Boneyard_GCP.csv")
    ft = read_gcp_csv(data_dir / "boneyard" / "IVy_Boneyard_GCP_fixed.csv")
    common = [i for i in m.ids if i in ft.ids]
    assert len(common) == 19
    for name in common:
        a, b = m.world[m.ids.index(name)], ft.world[ft.ids.index(name)]
        assert np.allclose(a, b, atol=1e-5), name  # feet converted with 0.3048
    # flags "n"/"no" are honoured; the re-picked pixels give a camera at the same place
    assert ft.use_rectification.sum() == 12
    cam = CameraModel(solve_camera_matrix(*ft.rectification_points()))
    assert np.allclose(cam.centre, [83.5, 122.0, 99.4], atol=1.6)


def test_known_camera_is_recovered_exactly():
    site = Site(SiteSpec())
    world, pixel, _ = site.gcps()
    cam = CameraModel(solve_camera_matrix(world, pixel))
    assert cam.reprojection_rms_px(world, pixel) < 1e-6
    assert np.allclose(cam.centre, site.camera.centre, atol=1e-6)
    assert cam.rmse_m(world, pixel) < 1e-6
    pts = np.array([[20.5, 30.2, 100.8], [24.0, 29.0, 100.8]])
    assert np.allclose(cam.back_project(cam.project(pts), 100.8), pts)


def test_bad_gcp_sets_are_clear_errors(tmp_path):
    site = Site(SiteSpec())
    world, pixel, _ = site.gcps()
    with pytest.raises(ValueError, match="needs at least 6 GCPs, got 5"):
        solve_camera_matrix(world[:5], pixel[:5])
    flat = world.copy()
    flat[:, 2] = 100.0
    with pytest.raises(ValueError, match="degenerate"):
        solve_camera_matrix(flat, pixel)
    bad = tmp_path / "gcp.csv"
    bad.write_text("# ID,X,Y\nA,1,2\n")
    with pytest.raises(ValueError, match="gcp.csv: column 'X' has no unit suffix"):
        read_gcp_csv(bad, default_units="ask")
    six = tmp_path / "six.csv"
    six.write_text("# ID,X (ft),Y (ft),Z (ft),X (pixel),Y (pixel)\nA,10,20,30,1.5,2.5\n")
    g = read_gcp_csv(six)
    assert np.allclose(g.world, [[3.048, 6.096, 9.144]]) and g.use_rectification.all()
    (tmp_path / "text.csv").write_text("# ID,X,Y,Z\nA,one,2,3\n")
    with pytest.raises(ValueError, match="text.csv: line 2 has a non-numeric coordinate"):
        read_gcp_csv(tmp_path / "text.csv")
