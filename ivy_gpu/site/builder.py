"""Set up a site without the IVyTools GUI: GCPs + a frame + a survey -> an ``.ivy`` scaffold.

:func:`build_site` reads as the set-up is done by hand:

1. solve the camera from the GCPs (:func:`ivy_gpu.site.calibrate.calibrate` picks the method);
2. find the section line: the survey's water edges at the WSE (``line="auto"``) or two
   given world points;
3. choose the plan view: a world extent around the GCPs and the section, and a cell
   size (default: the ground size of one frame pixel at the section's centre, so the
   plan view neither blurs nor invents detail);
4. choose STIV settings from the scene: a search line of about ten frames' travel at
   the expected speed, a fan centred on the section's downstream normal;
5. write an IVyTools-format scaffold (calibration image, GCP table, AC3 survey).

Where IVyTools can represent the result (no lens model, a cell size its own rule
gives), the scaffold reads the same in IVyTools; ivy_gpu's extra keys
(``lens_model``, ``cell_size_m``, ``world_extent``) are ignored by IVyTools, and
:attr:`SiteBuild.notes` says when that changes what IVyTools would draw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ivy_gpu.angles import ari_to_geo
from ivy_gpu.checks import check_finite, decode_image
from ivy_gpu.params import StivParams, search_line_pixels
from ivy_gpu.scaffold.ivyfile import (
    CALIBRATION_IMAGE,
    GCP_MEMBER,
    ScaffoldConfig,
    load_scaffold,
    save_scaffold,
)
from ivy_gpu.scaffold.lens import LensModel
from ivy_gpu.scaffold.rectify import RectificationParams, Rectifier, camera_cell_size, world_to_plan
from ivy_gpu.site.calibrate import Calibration, calibrate, solve_scale, with_residuals
from ivy_gpu.site.survey import Survey

#: Largest plan view the default cell size may produce (pixels); coarser cells beyond.
MAX_PLAN_PX = 16_000_000
#: Search-line length bounds (pixels) of the default rule.
SEARCH_PX = (20, 96)
#: Frames of travel at the expected speed that the default search line spans.
SEARCH_FRAMES = 10


@dataclass(frozen=True)
class SiteOptions:
    """Choices of a site set-up; ``None`` means "choose from the scene".

    Attributes
    ----------
    cell_size_m : float or None
        Plan-view cell size (m).
    extent : (x0, x1, y0, y1) or None
        Plan-view world box (m, site CRS).
    line : "auto" or array (2, 2)
        The section line's world ends (left bank first), or the survey's water edges.
    start_bank : {"left", "right"}
        The bank of the survey's first point.
    nodes : int
    search_line_m : float or None
    flow_direction : "auto" or float
        Geographic bearing (deg) of the flow, or the section's downstream normal.
    fan_deg : float
        Half-width of the search-direction fan (deg).
    d_phi : float
    expected_velocity : float
        Typical surface speed (m/s), for the default search line.
    max_velocity : float
        Speeds above this are rejected (m/s).
    fps : float
        Frame rate of the videos (for the default search line and the time step).
    display_units : {"Metric", "English"}
    stable_polygon : array (n, 2) or None
        Stable ground in frame pixels, for camera-motion estimation
        (``stabilization_polygon``); default: the frame outside the water.
    crs : str or None
        The CRS of the world coordinates (``EPSG:32735``), kept in the scaffold for the
        NetCDF and GeoJSON outputs; None for a local system.
    """

    cell_size_m: float | None = None
    extent: tuple[float, float, float, float] | None = None
    line: str | np.ndarray = "auto"
    start_bank: str = "left"
    nodes: int = 25
    search_line_m: float | None = None
    flow_direction: str | float = "auto"
    fan_deg: float = 30.0
    d_phi: float = 1.0
    expected_velocity: float = 1.0
    max_velocity: float = 5.0
    fps: float = 30.0
    display_units: str = "Metric"
    stable_polygon: np.ndarray | None = None
    crs: str | None = None

    def __post_init__(self) -> None:
        if self.start_bank not in ("left", "right"):
            raise ValueError(f"start bank must be 'left' or 'right', got {self.start_bank!r}")
        for name in ("nodes", "fan_deg", "d_phi", "expected_velocity", "max_velocity", "fps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")
        if self.cell_size_m is not None and not (1e-4 <= self.cell_size_m <= 100):
            raise ValueError(
                f"cell size must be in metres in [0.0001, 100], got {self.cell_size_m!r}"
            )
        if self.extent is not None:
            x0, x1, y0, y1 = self.extent
            if not (x1 > x0 and y1 > y0):
                raise ValueError("extent must be x0,x1,y0,y1 with x1 > x0 and y1 > y0")


@dataclass(frozen=True)
class SiteBuild:
    """A built site: the scaffold, its calibration, and what was chosen and why."""

    scaffold: ScaffoldConfig
    calibration: Calibration
    line_world: np.ndarray
    notes: tuple[str, ...]

    def report(self, ids: tuple[str, ...] | None = None) -> str:
        """Calibration residuals, the plan view and the STIV settings, as printed by the CLI."""
        sc = self.scaffold
        r = sc.rectification
        lines = [self.calibration.report(ids)]
        if r.method != "scale":
            x0, x1, y0, y1 = (r.world_extent if r.world_extent is not None else r.extent).ravel()
            lines.append(
                f"plan view: x {x0:.3f}..{x1:.3f}, y {y0:.3f}..{y1:.3f} m, "
                f"cell {sc.pixel_gsd_m * 1000:.2f} mm"
            )
        (a, b), (c, d) = self.line_world
        lo, hi = sc.cross_section.water_edges(r.calibration_wse_m)
        lines.append(
            f"section: ({a:.3f}, {b:.3f}) -> ({c:.3f}, {d:.3f}), wetted width {hi - lo:.3f} m "
            f"at WSE {r.calibration_wse_m:.3f} m, {sc.num_grid_points} nodes"
        )
        lines.append(f"STIV: {sc.stiv.describe()}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _reversed(survey: Survey) -> Survey:
    s = survey.section
    total = s.stations[-1]
    section = dataclasses.replace(
        s, stations=(total - s.stations)[::-1].copy(), elevations=s.elevations[::-1].copy()
    )
    xy = None if survey.xy is None else survey.xy[::-1].copy()
    return Survey(section, xy, survey.crs)


def native_cell(calib: Calibration, point: np.ndarray, wse_m: float) -> float:
    """Ground size (m) of one frame pixel at a world point on the water plane."""
    uv = calib.project(np.array([[point[0], point[1], wse_m]]))[0]
    probe = uv + np.array([[-0.5, 0], [0.5, 0], [0, -0.5], [0, 0.5]])
    xy = calib.back_project(probe, wse_m)
    gx, gy = np.hypot(*(xy[1] - xy[0])), np.hypot(*(xy[3] - xy[2]))
    return float(np.sqrt(gx * gy))


def _round3(x: float) -> float:
    return float(f"{x:.3g}")


def _plan_view(
    calib: Calibration,
    line: np.ndarray,
    wse_m: float,
    size: tuple[int, int],
    opts: SiteOptions,
    margin_m: float,
) -> tuple[np.ndarray, float, list[str]]:
    """World extent and cell size; IVyTools' own cell rule kept where possible."""
    notes: list[str] = []
    w, h = size
    cell = opts.cell_size_m or _round3(native_cell(calib, line.mean(0), wse_m))
    if opts.extent is not None:
        extent = np.array(opts.extent, float)
    else:
        pts = np.vstack([line, calib.world[calib.inliers, :2]])
        lo, hi = pts.min(0), pts.max(0)
        pad = np.maximum(0.1 * (hi - lo), margin_m)
        lo, hi = lo - pad, hi + pad
        # grow the box so IVyTools' rule (as many plan pixels as frame pixels) gives `cell`
        grow = cell * math.sqrt(w * h) / math.sqrt(float(np.prod(hi - lo)))
        if grow >= 1:
            c = 0.5 * (lo + hi)
            lo, hi = c - grow * (c - lo), c + grow * (hi - c)
        extent = np.array([lo[0], hi[0], lo[1], hi[1]])
    n_px = (extent[1] - extent[0]) * (extent[3] - extent[2]) / cell**2
    if n_px > MAX_PLAN_PX:
        cell = _round3(cell * math.sqrt(n_px / MAX_PLAN_PX) * 1.001)
        notes.append(f"cell size raised to {cell * 1000:.2f} mm to keep the plan view small")
    ivy = camera_cell_size(extent, w, h)
    if abs(ivy / cell - 1) > 0.01:
        notes.append(
            f"IVyTools would rectify this extent at {ivy * 1000:.2f} mm cells (its own rule), "
            f"not {cell * 1000:.2f} mm: redraw the section line there if IVyTools processes it"
        )
    return extent, cell, notes


def _rectification(
    calib: Calibration, wse_m: float, extent: np.ndarray, cell: float, crs: str | None = None
) -> RectificationParams:
    world, pixel = calib.world[calib.inliers], calib.pixel[calib.inliers]
    common = dict(pixel_coords=pixel, world_coords=world, calibration_wse_m=wse_m, crs=crs)
    if calib.method == "camera matrix":
        return RectificationParams(
            "camera matrix", camera_matrix=calib.camera_matrix, extent=extent,
            lens=calib.lens, cell_size_m=cell, **common,
        )  # fmt: skip
    if calib.method == "homography":
        h = world_to_plan(extent, cell) @ np.linalg.inv(calib.homography)  # pixel -> plan
        return RectificationParams(
            "homography", homography=h / h[2, 2], world_extent=extent, cell_size_m=cell,
            **common,
        )  # fmt: skip
    return RectificationParams("scale", **common)


def _to_plan(rect: Rectifier, calib: Calibration, xy: np.ndarray, wse_m: float) -> np.ndarray:
    """Plan-view (col, row) of world X, Y on the water plane."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    if rect.has_world_grid:
        return np.column_stack(rect.world_to_pixel(xy[:, 0], xy[:, 1]))
    return calib.project(np.column_stack([xy, np.full(len(xy), wse_m)]))


def downstream_bearing(line_px: np.ndarray) -> float:
    """Geographic bearing (deg) of the downstream normal of a left-to-right plan line."""
    tx, ty = line_px[1, 0] - line_px[0, 0], -(line_px[1, 1] - line_px[0, 1])
    return float(ari_to_geo(math.degrees(math.atan2(tx, -ty))))


def _search_pixels(opts: SiteOptions, cell: float) -> int:
    if opts.search_line_m is not None:
        return search_line_pixels(opts.search_line_m, cell)
    p = int(np.clip(round(SEARCH_FRAMES * opts.expected_velocity / opts.fps / cell), *SEARCH_PX))
    return p + (p % 2)  # even, as IVyTools' lines are


def encode_jpeg(frame: np.ndarray) -> bytes:
    """The calibration frame as the scaffold stores it."""
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError("calibration frame: cannot encode as JPEG")
    return buf.tobytes()


def gcp_csv(calib: Calibration, ids: tuple[str, ...]) -> bytes:
    """IVyTools' 11-column GCP table with this calibration's residuals."""
    err = calib.project(calib.world) - calib.pixel
    rows = ["# ID,X,Y,Z,X (pixel),Y (pixel),Error X (pixel),Error Y (pixel),"
            "Tot. Error (pixel),Use in Rectification,Use in Validation"]  # fmt: skip
    for i, name in enumerate(ids):
        (x, y, z), (u, v), (ex, ey) = calib.world[i], calib.pixel[i], err[i]
        use = "Yes" if calib.inliers[i] else "No"
        rows.append(
            f"{name},{x:.4f},{y:.4f},{z:.4f},{u:.2f},{v:.2f},{ex:.2f},{ey:.2f},"
            f"{math.hypot(ex, ey):.2f},{use},No"
        )
    return ("\n".join(rows) + "\n").encode()


def build_site(
    world: np.ndarray,
    pixel: np.ndarray,
    frame: np.ndarray,
    survey: Survey,
    wse_m: float,
    lens: LensModel | None = None,
    options: SiteOptions | None = None,
    ids: tuple[str, ...] | None = None,
    source: str = "GCPs",
) -> SiteBuild:
    """Build a scaffold from GCPs, a calibration frame and a survey (see the module).

    Parameters
    ----------
    world, pixel : ndarray
        GCPs: (n, 3) metres in the site CRS, (n, 2) pixels of ``frame``.
    frame : ndarray
        The calibration frame (BGR or gray); its size is the videos' size.
    survey : Survey
        The section; its first point is on ``options.start_bank``.
    wse_m : float
        Water-surface elevation of the calibration frame (m).
    lens : LensModel, optional
        Known intrinsics: the pose is then solved from >= 4 GCPs.
    options : SiteOptions, optional
        Plan view, line, nodes and STIV choices (default: chosen from the scene).
    ids : tuple of str, optional
        GCP names for the report and the stored table.
    source : str
        Names the GCPs in error messages (the file).

    Raises
    ------
    ValueError
        One line: unusable GCPs, a WSE outside the survey, a section outside the view.
    """
    opts = options or SiteOptions()
    wse_m = check_finite("wse", wse_m, "water level in metres")
    h, w = frame.shape[:2]
    ids = ids or tuple(f"GCP{i + 1}" for i in range(len(world)))
    px = np.asarray(pixel, float)
    outside = ~(
        (px[:, 0] >= -0.5) & (px[:, 0] <= w - 0.5) & (px[:, 1] >= -0.5) & (px[:, 1] <= h - 0.5)
    )
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{source}: GCP {ids[k]} at pixel ({px[k, 0]:g}, {px[k, 1]:g}) lies outside the "
            f"{w}x{h} frame ({int(outside.sum())} GCP(s) outside): a GCP must be seen in it"
        )
    if lens is not None and (lens.camera_matrix[0, 2] > w or lens.camera_matrix[1, 2] > h):
        raise ValueError(f"intrinsics: principal point lies outside the {w}x{h} frame")
    calib = calibrate(world, pixel, lens, source)
    if opts.start_bank == "right":  # stations then run from the left bank, as in AC3
        survey = _reversed(survey)
    section = survey.section
    left, right = section.water_edges(wse_m)
    if isinstance(opts.line, str):
        if opts.line != "auto":
            raise ValueError(f"line must be 'auto' or two world points, got {opts.line!r}")
        line = survey.edge_points(wse_m)
    else:
        line = np.asarray(opts.line, float).reshape(2, 2)
    width = right - left
    notes: list[str] = []
    length = float(np.hypot(*(line[1] - line[0])))
    if abs(length / width - 1) > 0.05:
        notes.append(
            f"the section line is {length:.3f} m long but the survey's wetted width is "
            f"{width:.3f} m: stations will be stretched to the wetted width"
        )
    margin = 2.0 * (opts.search_line_m or SEARCH_FRAMES * opts.expected_velocity / opts.fps)
    extent, cell = None, None
    if calib.method != "scale":
        extent, cell, more = _plan_view(calib, line, wse_m, (w, h), opts, margin)
        notes += more
    rect_params = _rectification(calib, wse_m, extent, cell, opts.crs)
    rect = Rectifier(rect_params, wse_m, (w, h))
    line_px = _to_plan(rect, calib, line, wse_m)
    rows, cols = rect.output_shape
    if np.any(line_px < 0) or np.any(line_px[:, 0] > cols - 1) or np.any(line_px[:, 1] > rows - 1):
        raise ValueError(
            "the section's water edges fall outside the plan view; widen the extent or "
            "check the survey's CRS"
        )
    uv = calib.project(np.column_stack([line, np.full(2, wse_m)]))
    if np.any(uv < 0) or np.any(uv[:, 0] > w - 1) or np.any(uv[:, 1] > h - 1):
        notes.append("part of the section line lies outside the camera frame")
    gsd = rect.pixel_gsd
    if opts.flow_direction == "auto":
        phi = downstream_bearing(line_px)
    else:
        mid = line.mean(0)
        ang = math.radians(float(opts.flow_direction))
        ahead = mid + 0.1 * np.array([math.sin(ang), math.cos(ang)])
        a, b = _to_plan(rect, calib, np.vstack([mid, ahead]), wse_m)
        phi = float(ari_to_geo(math.degrees(math.atan2(-(b[1] - a[1]), b[0] - a[0]))))
    p_px = _search_pixels(opts, gsd)
    stiv = StivParams(
        num_pixels=p_px,
        phi_origin=round(phi, 1) % 360,
        phi_range=opts.fan_deg,
        d_phi=opts.d_phi,
        max_vel_threshold=opts.max_velocity,
    )
    dt_ms = 1000.0 / opts.fps
    project = {
        "water_surface_elevation": wse_m,
        "stiv_search_line_length_m": p_px * gsd,
        "scene_averaged_pixel_gsd_m": gsd,
        "extraction_timestep_ms": dt_ms,
        "extraction_frame_step": 1,
        "video_frame_rate": opts.fps,
        "video_metadata": {"width": w, "height": h, "avg_frame_rate": opts.fps},
        # no "calibrate_radial": these frames are not FFmpeg lens-filtered (prefilter.py)
        "ffmpeg_parameters": {"video_rotation": 0, "video_flip": "none"},
        "bathymetry_ac3_filename": Path(section.source).name,
        "cross_section_top_width_m": width,
        "is_cross_section_grid": True,
        "line_mode": "cross_section",
        "comments": f"site set up by ivy_gpu.site.builder ({calib.method}, {calib.solver})",
    }
    if opts.stable_polygon is not None:
        poly = np.asarray(opts.stable_polygon, float).reshape(-1, 2)
        if len(poly) < 3:
            raise ValueError("stable polygon: at least 3 (column, row) points are needed")
        project["stabilization_polygon"] = poly.tolist()
    if calib.method == "camera matrix":  # the GUI's default entry, kept for its loader
        project["rectification_parameters"] = {"homography_matrix": np.eye(3).tolist()}
    members = {CALIBRATION_IMAGE: encode_jpeg(frame), GCP_MEMBER: gcp_csv(calib, ids)}
    config = ScaffoldConfig(
        path=None,
        display_units=opts.display_units,
        rectification=rect_params,
        pixel_gsd_m=gsd,
        calibration_size=(w, h),
        cross_section_line=line_px,
        start_bank="left",
        num_grid_points=opts.nodes,
        results_grid=None,
        mask_polygons=(),
        stiv=stiv,
        cross_section=section,
        rectification_rmse_m=calib.rms_m,
        project=project,
        members=members,
    )
    return SiteBuild(config, calib, line, tuple(notes))


def write_site(build: SiteBuild, path: str | Path) -> ScaffoldConfig:
    """Save the scaffold and read it back (what every later command will see)."""
    save_scaffold(build.scaffold, path)
    return load_scaffold(path)


def calibration_of(scaffold: ScaffoldConfig) -> Calibration | None:
    """The stored calibration as a :class:`Calibration` (None for IVyTools' own canvas)."""
    r = scaffold.rectification
    if r.world_coords is None or r.pixel_coords is None:
        return None
    world = np.asarray(r.world_coords, float).reshape(-1, 3)
    pixel = np.asarray(r.pixel_coords, float).reshape(-1, 2)
    if r.method == "camera matrix":
        c = Calibration("camera matrix", "stored", world, pixel, r.camera_matrix, lens=r.lens)
    elif r.method == "homography" and r.world_extent is not None and r.cell_size_m:
        hw = np.linalg.inv(r.homography) @ world_to_plan(r.world_extent, r.cell_size_m)
        c = Calibration("homography", "stored", world, pixel, homography=hw / hw[2, 2])
    elif r.method == "scale" and len(world) == 2:
        return solve_scale(world, pixel)
    else:
        return None
    return with_residuals(c)


def read_frame(path: str | Path) -> tuple[np.ndarray, float | None]:
    """The calibration frame from an image or the first frame of a video, and the fps."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: frame file not found")
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the image ({exc.strerror})") from None
        return decode_image(data, str(path)), None
    from ivy_gpu.frames.video import first_frame, probe

    return first_frame(path), probe(path).fps


def site_from_pyorc(
    camera_json: str | Path,
    section: str | Path,
    video: str | Path,
    wse_m: float | None = None,
    h: float | None = None,
    options: SiteOptions | None = None,
    units: str = "m",
) -> SiteBuild:
    """A site from a pyorc camera configuration, a surveyed section and a video (or frame).

    The water level is ``wse_m`` when given, else pyorc's ``z_0 + (h - h_ref)``
    (``z_0`` when ``h`` is None too). pyorc's ``bbox`` and ``resolution`` become the
    plan view's extent and cell size unless ``options`` sets them.
    """
    from ivy_gpu.site.pyorc import read_pyorc_camera
    from ivy_gpu.site.survey import read_survey

    cam = read_pyorc_camera(camera_json)
    frame, fps = read_frame(video)
    size = (frame.shape[1], frame.shape[0])
    if cam.size is not None and cam.size != size:
        raise ValueError(
            f"{video}: frame size {size[0]}x{size[1]} differs from the camera "
            f"configuration's {cam.size[0]}x{cam.size[1]} ({cam.source})"
        )
    survey = read_survey(section, units=units, crs=cam.crs)
    opts = options or SiteOptions()
    fill = {}
    if opts.cell_size_m is None and cam.resolution:
        fill["cell_size_m"] = cam.resolution
    if opts.extent is None and cam.extent is not None:
        fill["extent"] = cam.extent
    if fps:
        fill["fps"] = fps
    if opts.crs is None and cam.crs:
        fill["crs"] = cam.crs
    if opts.stable_polygon is None and cam.stabilize is not None:
        fill["stable_polygon"] = cam.stabilize
    opts = dataclasses.replace(opts, **fill)
    wse = float(wse_m) if wse_m is not None else cam.water_level(h)
    build = build_site(cam.world, cam.pixel, frame, survey, wse, cam.lens, opts, source=cam.source)
    if cam.lens_position is not None and build.calibration.camera_matrix is not None:
        from ivy_gpu.scaffold.camera import CameraModel

        d = np.linalg.norm(CameraModel(build.calibration.camera_matrix).centre - cam.lens_position)
        build = dataclasses.replace(
            build, notes=(*build.notes, f"camera centre is {d:.3f} m from pyorc's lens_position")
        )
    return build
