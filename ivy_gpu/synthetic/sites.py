"""A complete synthetic gauging site with known truth.

:func:`make_site` builds a channel (parabolic, trapezoidal or rectangular bed),
a camera on the bank (intrinsics and pose), ground control points, a surface
velocity field across the section (``u = u_max (d / d_max)^(2/3)``, optionally
oblique to the section normal), and renders frames of a band-limited world
texture advected by that field as the camera sees the water plane. It writes a
real ``.ivy`` scaffold, an MP4 (PyAV, H.264) and ``truth.json``.

World frame: X east, Y north (downstream), Z up, metres. The section lies along X
at ``Y = y_section``; stations run from the left bank (west) eastwards. Every
pixel is rendered as the water plane Z = WSE (banks are static texture there),
which is all STIV needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ivy_gpu.hydraulics.xsection import CrossSection, write_ac3
from ivy_gpu.params import search_line_pixels
from ivy_gpu.scaffold.camera import CameraModel, solve_camera_matrix
from ivy_gpu.scaffold.ivyfile import (
    AC3_MEMBER,
    CALIBRATION_IMAGE,
    GCP_MEMBER,
    encode_array,
    write_scaffold,
)
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier, camera_cell_size


@dataclass(frozen=True)
class SiteSpec:
    """Parameters of a synthetic site (SI units; sizes in pixels)."""

    width_px: int = 640
    height_px: int = 360
    fps: float = 30.0
    duration_s: float = 4.0
    shape: str = "parabola"  # "parabola" | "trapezoid" | "rectangle"
    top_width_m: float = 6.0
    bank_elevation_m: float = 101.5
    bed_elevation_m: float = 99.8
    wse_m: float = 100.8
    u_max: float = 0.8
    flow_angle_deg: float = 0.0  # direction of flow, geographic (0 = north = downstream)
    grain_m: float = 0.03
    x_left_m: float = 20.0
    y_section_m: float = 30.0
    camera_back_m: float = 8.0
    camera_height_m: float = 5.0
    focal_px: float | None = None
    num_nodes: int = 25
    search_line_m: float = 0.5
    alpha: float = 0.85
    display_units: str = "Metric"
    seed: int = 0
    still_width_m: float = 0.0  # still water from the left water edge (texture changes in place)
    eddy_width_m: float = 0.0  # an eddy from the right water edge, moving upstream
    eddy_speed: float = 0.15  # its speed upstream, m/s
    still_change_s: float = 1.0  # correlation time of the still water's texture, s
    noise: float = 0.0  # sensor noise, grey levels (independent per pixel and frame)


class Site:
    """Geometry, flow and camera of a :class:`SiteSpec` (no files)."""

    def __init__(self, spec: SiteSpec) -> None:
        self.spec = spec
        s = spec
        b = np.linspace(0.0, s.top_width_m, 121)
        self.section = CrossSection(*self._profile(b), units="Metric", source="synthetic")
        f = s.focal_px or 0.9 * s.width_px
        k = np.array([[f, 0, s.width_px / 2], [0, f, s.height_px / 2], [0, 0, 1]])
        xc = s.x_left_m + s.top_width_m / 2
        centre = np.array([xc, s.y_section_m - s.camera_back_m, s.wse_m + s.camera_height_m])
        target = np.array([xc, s.y_section_m + 0.5, s.wse_m])
        fwd = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        r = np.stack([right, down, fwd])
        p = k @ np.column_stack([r, -r @ centre])
        self.camera = CameraModel(p / p[2, 3])
        self.extent = np.array(
            [
                s.x_left_m - 0.4,
                s.x_left_m + s.top_width_m + 0.4,
                s.y_section_m - 2.0,
                s.y_section_m + 2.0,
            ]
        )

    def _profile(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.spec
        u = np.abs(2 * b / s.top_width_m - 1)  # 0 at the centre, 1 at the banks
        lo, hi = s.bed_elevation_m, s.bank_elevation_m
        if s.shape == "parabola":
            z = lo + (hi - lo) * u**2
        elif s.shape == "trapezoid":
            z = lo + (hi - lo) * np.clip((u - 0.4) / 0.6, 0, 1)
        elif s.shape == "rectangle":
            b = np.concatenate([[0.0], b, [s.top_width_m]])
            z = np.concatenate([[hi], np.full(b.size - 2, lo), [hi]])
        else:
            raise ValueError(f"shape: unknown channel shape {s.shape!r}")
        return b, z

    def depth(self, stations: np.ndarray, wse: float | None = None) -> np.ndarray:
        """True depth (m) at stations."""
        return self.section.depth_at(stations, self.spec.wse_m if wse is None else wse)

    def surface_speed(self, stations: np.ndarray, wse: float | None = None) -> np.ndarray:
        """True surface speed (m/s) along the flow direction at stations."""
        wse = self.spec.wse_m if wse is None else wse
        s = self.spec
        stations = np.asarray(stations, float)
        d = self.depth(stations, wse)
        dmax = wse - self.section.elevations.min()
        u = s.u_max * np.clip(d / dmax, 0, 1) ** (2.0 / 3.0)
        lo, hi = self.section.water_edges(wse)
        u = np.where(stations < lo + s.still_width_m, 0.0, u)
        return np.where(stations > hi - s.eddy_width_m, -s.eddy_speed * (d > 0), u)

    def still(self, stations: np.ndarray, wse: float | None = None) -> np.ndarray:
        """Where the water is still (``still_width_m`` from the left water edge)."""
        lo, _ = self.section.water_edges(self.spec.wse_m if wse is None else wse)
        b = np.asarray(stations, float)
        return (b >= lo) & (b < lo + self.spec.still_width_m)

    def true_discharge(self, wse: float | None = None, alpha: float | None = None) -> dict:
        """Exact area and discharge (fine numerical integration across the wetted width)."""
        wse = self.spec.wse_m if wse is None else wse
        alpha = self.spec.alpha if alpha is None else alpha
        lo, hi = self.section.water_edges(wse)
        b = np.linspace(lo, hi, 20001)
        un = self.surface_speed(b, wse) * math.cos(math.radians(self.spec.flow_angle_deg))
        d = self.depth(b, wse)
        return dict(
            wse_m=wse,
            alpha=alpha,
            area_m2=self.section.wetted_area(wse),
            discharge_m3s=float(alpha * np.trapezoid(un * d, b)),
            left_edge_m=lo,
            right_edge_m=hi,
            wetted_width_m=hi - lo,
        )

    def gcps(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Ten GCPs on the banks (two heights) and at the water line; exact pixels."""
        s = self.spec
        x0, x1 = s.x_left_m - 0.3, s.x_left_m + s.top_width_m + 0.3
        ys = [s.y_section_m - 1.5, s.y_section_m, s.y_section_m + 1.5]
        pts = []
        for y in ys:
            pts += [(x0, y, s.bank_elevation_m), (x1, y, s.bank_elevation_m)]
        pts += [
            (x0, s.y_section_m + 0.7, s.bank_elevation_m + 1.0),
            (x1, s.y_section_m - 0.7, s.bank_elevation_m + 1.0),
        ]
        lo, hi = self.section.water_edges(s.wse_m)
        pts += [
            (s.x_left_m + lo, s.y_section_m + 1.0, s.wse_m),
            (s.x_left_m + hi, s.y_section_m - 1.0, s.wse_m),
        ]
        world = np.array(pts)
        return world, self.camera.project(world), [f"GCP{i + 1}" for i in range(len(pts))]

    def render(self, wse: float | None = None, n_frames: int | None = None):
        """Yield grayscale uint8 frames (H, W) of the advected texture seen by the camera."""
        s = self.spec
        wse = s.wse_m if wse is None else wse
        n_frames = n_frames or int(round(s.duration_s * s.fps))
        res = s.grain_m / 3.0
        g = math.radians(s.flow_angle_deg)
        ex, ey = math.sin(g), math.cos(g)  # flow unit vector (X, Y)
        travel = s.u_max * n_frames / s.fps + 1.0
        cols, rows = np.meshgrid(
            np.arange(s.width_px, dtype=float), np.arange(s.height_px, dtype=float)
        )
        world = self.camera.back_project(np.stack([cols, rows], -1), wse)
        behind = (world[..., :2] - self.camera.centre[:2]) @ (
            self.camera.matrix[2, :2] / np.linalg.norm(self.camera.matrix[2, :2])
        ) <= 0
        wx, wy = world[..., 0], world[..., 1]
        visible = (
            ~behind
            & (np.abs(wx - s.x_left_m - s.top_width_m / 2) < 30)
            & (np.abs(wy - s.y_section_m) < 30)
        )
        wx = np.where(visible, wx, s.x_left_m)
        wy = np.where(visible, wy, s.y_section_m)
        tx0, ty0 = wx.min() - travel, wy.min() - travel
        nx = int((wx.max() - tx0 + travel) / res) + 2
        ny = int((wy.max() - ty0 + travel) / res) + 2
        rng = np.random.default_rng(s.seed)
        tex = cv2.GaussianBlur(rng.standard_normal((ny, nx)).astype(np.float32), (0, 0), 3.0)
        tex = np.clip(128 + 45 * tex / tex.std(), 0, 255).astype(np.float32)
        still = visible & self.still(wx - (wy - s.y_section_m) * math.tan(g) - s.x_left_m, wse)
        if still.any():
            still_a, still_b = self._still_texture(wx[still], wy[still], n_frames, rng)
        station = wx - (wy - s.y_section_m) * math.tan(g) - s.x_left_m
        speed = np.where(visible, self.surface_speed(station, wse), 0.0)
        lo, hi = self.section.water_edges(wse)
        bank = (station < lo) | (station > hi)
        for t in range(n_frames):
            shift = speed * t / s.fps
            mx = ((wx - shift * ex - tx0) / res).astype(np.float32)
            my = ((wy - shift * ey - ty0) / res).astype(np.float32)
            frame = cv2.remap(tex, mx, my, cv2.INTER_LINEAR)
            if still.any():  # static texture and a texture that changes in place
                frame[still] = np.clip(128.0 + still_a + still_b[t], 0, 255)
            frame = np.where(bank, 0.5 * frame + 20.0, frame)  # darker, static banks
            if s.noise > 0:
                frame = np.clip(frame + rng.normal(0.0, s.noise, frame.shape), 0, 255)
            yield np.where(visible, frame, 0).astype(np.uint8)

    def _still_texture(self, wx, wy, n_frames: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """Still water at world points: a static texture and one that changes in place.

        The changing part is a sum of 16 independent textures whose weights are smooth
        random series in time (correlation time ``still_change_s``): it moves nowhere, and
        once the static part is removed (each STI row is z-scored in time) its space-time
        autocorrelation peaks at zero speed, as over real still water.
        """
        s = self.spec
        res = s.grain_m / 3.0
        x0, y0 = wx.min() - 1.0, wy.min() - 1.0
        shape = (int((wy.max() - y0 + 1.0) / res) + 2, int((wx.max() - x0 + 1.0) / res) + 2)
        mx = ((wx - x0) / res).astype(np.float32)[None, :]
        my = ((wy - y0) / res).astype(np.float32)[None, :]

        def texture() -> np.ndarray:
            tex = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 3.0)
            return cv2.remap(tex / tex.std(), mx, my, cv2.INTER_LINEAR)[0]

        static = 30.0 * texture()
        k = 16
        basis = np.stack([texture() for _ in range(k)])
        white = rng.standard_normal((n_frames + 64, k))
        sigma = max(s.still_change_s * s.fps, 0.5)
        weights = cv2.GaussianBlur(white, (1, 0), sigmaX=1e-3, sigmaY=sigma)[32 : 32 + n_frames]
        weights /= np.sqrt(np.mean(np.sum(weights**2, axis=1)))
        return static, (35.0 * weights @ basis).astype(np.float32)


def write_video(path: Path, frames, fps: float, width: int, height: int, crf: int = 12) -> int:
    """Encode grayscale frames to an H.264 MP4 with PyAV; returns the frame count."""
    import av

    n = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for gray in frames:
            rgb = np.repeat(gray[..., None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def make_site(
    out_dir: str | Path,
    spec: SiteSpec | None = None,
    video: bool = True,
    video_wse: float | None = None,
    video_name: str = "river.mp4",
) -> dict:
    """Write ``site.ivy``, ``river.mp4`` (optional) and ``truth.json`` into ``out_dir``.

    Also ``gcps.csv`` (the GCPs with their pixels, rounded as a survey would give them)
    and ``survey_xyz.csv`` (the section as surveyed x, y, z points), from which
    ``ivy-gpu site create`` builds the site again.

    Returns the truth dictionary (also written to ``truth.json``).
    """
    spec = spec or SiteSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site = Site(spec)
    world, pixel, ids = site.gcps()
    p = solve_camera_matrix(world, pixel)
    w, h = spec.width_px, spec.height_px
    cell = camera_cell_size(site.extent, w, h)
    params = RectificationParams(
        "camera matrix",
        camera_matrix=p,
        extent=site.extent,
        pixel_coords=pixel,
        world_coords=world,
        calibration_wse_m=spec.wse_m,
    )
    rect = Rectifier(params, spec.wse_m, (w, h))
    lo, hi = site.section.water_edges(spec.wse_m)
    cx, cy = rect.world_to_pixel(
        np.array([spec.x_left_m + lo, spec.x_left_m + hi]), np.full(2, spec.y_section_m)
    )
    line = np.column_stack([cx, cy])
    n_y, n_x = rect.output_shape
    stored_gsd = 0.5 * (
        (site.extent[1] - site.extent[0]) / n_x + (site.extent[3] - site.extent[2]) / n_y
    )
    p_px = search_line_pixels(spec.search_line_m, cell)
    project = {
        "rectification_method": "camera matrix",
        "rectification_parameters": {
            "camera_matrix": p.tolist(),
            "extent": site.extent.tolist(),
            "pixel_coords": pixel.tolist(),
            "world_coords": world.tolist(),
            "water_surface_elev": spec.wse_m,
            "homography_matrix": np.eye(3).tolist(),
        },
        "water_surface_elevation": spec.wse_m,
        "pixel_ground_scale_distance_m": stored_gsd,
        "scene_averaged_pixel_gsd_m": stored_gsd,
        "rectification_rmse_m": CameraModel(p).rmse_m(world, pixel),
        "display_units": spec.display_units,
        "cross_section_line": encode_array(line.reshape(1, 2, 2)),
        "cross_section_start_bank": "left",
        "number_grid_points_along_xs_line": spec.num_nodes,
        "is_cross_section_grid": True,
        "stiv_num_pixels": p_px,
        "stiv_search_line_length_m": p_px * cell,
        "stiv_phi_origin": spec.flow_angle_deg % 360,
        "stiv_phi_range": 15.0,
        "stiv_dphi": 1.0,
        "stiv_max_vel_threshold_mps": 5.0,
        "stiv_gaussian_blur_sigma": 0.0,
        "extraction_timestep_ms": 1000.0 / spec.fps,
        "extraction_frame_step": 1,
        "video_frame_rate": spec.fps,
        "video_metadata": {
            "width": w,
            "height": h,
            "avg_frame_rate": spec.fps,
            "duration": spec.duration_s,
        },
        # no "calibrate_radial" key: these frames were never lens-filtered (see prefilter.py)
        "ffmpeg_parameters": {"video_rotation": 0, "video_flip": "none"},
        "bathymetry_ac3_filename": "synthetic_cross_section_ac3.mat",
        "cross_section_top_width_m": spec.top_width_m,
        "comments": "synthetic site generated by ivy_gpu.synthetic.sites",
    }
    ac3 = out / "_cross_section_ac3.mat"
    write_ac3(
        ac3,
        CrossSection(
            site.section.stations,
            site.section.elevations,
            "English" if spec.display_units == "English" else "Metric",
            "synthetic",
        ),
    )
    first = next(site.render(n_frames=1))
    ok, jpg = cv2.imencode(".jpg", first, [cv2.IMWRITE_JPEG_QUALITY, 95])
    gcp_csv = (
        "# ID,X,Y,Z,X (pixel),Y (pixel),Error X (pixel),Error Y (pixel),Tot. Error (pixel),"
        "Use in Rectification,Use in Validation\n"
        + "".join(
            f"{i},{x:.6f},{y:.6f},{z:.6f},{u:.3f},{v:.3f},0,0,0,Yes,No\n"
            for i, (x, y, z), (u, v) in zip(ids, world, pixel, strict=True)
        )
    )
    members = {
        AC3_MEMBER: ac3.read_bytes(),
        CALIBRATION_IMAGE: jpg.tobytes(),
        GCP_MEMBER: gcp_csv.encode(),
    }
    ac3.unlink()
    write_scaffold(out / "site.ivy", project, members)
    # the ingredients of a set-up from scratch (`ivy-gpu site create`, docs/user-guide.md)
    (out / "gcps.csv").write_text(
        "# ID,X (m),Y (m),Z (m),X (pixel),Y (pixel)\n"
        + "".join(
            f"{i},{x:.4f},{y:.4f},{z:.4f},{u:.2f},{v:.2f}\n"
            for i, (x, y, z), (u, v) in zip(ids, world, pixel, strict=True)
        )
    )
    (out / "survey_xyz.csv").write_text(
        "x (m),y (m),z (m)\n"
        + "".join(
            f"{spec.x_left_m + b:.4f},{spec.y_section_m:.4f},{z:.4f}\n"
            for b, z in zip(site.section.stations, site.section.elevations, strict=True)
        )
    )
    wse = spec.wse_m if video_wse is None else video_wse
    truth = site.true_discharge(wse)
    truth.update(
        spec=asdict(spec),
        gsd_m=cell,
        rectified_shape=[n_y, n_x],
        section_line_px=line.tolist(),
        camera_matrix=site.camera.matrix.tolist(),
    )
    if video:
        n = write_video(out / video_name, site.render(wse), spec.fps, w, h)
        truth.update(video=video_name, num_frames=n)
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def write_demo_batch(out_dir: str | Path, truth: dict, start: str = "2026-05-01T10:00:00") -> None:
    """``batch.csv`` (three windows of the demo clip, 20 minutes apart) and ``gauge.csv``.

    The "gauge" is the site's true discharge, every 5 minutes over two hours, so the
    batch report (``ivy-gpu batch ... --gauge gauge.csv``) shows the error of each video.
    Times are written with an explicit UTC offset (``-05:00``).
    """
    import datetime as dt

    out = Path(out_dir)
    t0 = dt.datetime.fromisoformat(start)
    rows = [("0", "2.5"), ("1.25", "3.75"), ("2.5", "")]
    lines = ["video_path,water_surface_elevation,measurement_date,measurement_time,"
             "measurement_number,start_time,end_time,comments"]  # fmt: skip
    for k, (a, b) in enumerate(rows):
        t = t0 + dt.timedelta(minutes=20 * k)
        when = f"{t.date()},{t.time()}"
        lines.append(f"{truth['video']},{truth['wse_m']},{when},{k + 1},{a},{b},window {k + 1}")
    (out / "batch.csv").write_text("\n".join(lines) + "\n")
    gauge = ["time,discharge_m3s"]
    for k in range(25):
        t = t0 - dt.timedelta(minutes=30) + dt.timedelta(minutes=5 * k)
        gauge.append(f"{t.isoformat()}-05:00,{truth['discharge_m3s']:.5f}")
    (out / "gauge.csv").write_text("\n".join(gauge) + "\n")
