"""``ivy-gpu site``: set up a site without the IVyTools GUI, and check it by eye."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path

import numpy as np
import typer

from ivy_gpu.cli.common import console, fail, load

site_app = typer.Typer(
    no_args_is_help=True,
    help="Set up a site: GCPs + a frame + a survey -> an IVyTools scaffold (.ivy).",
)


class Bank(str, Enum):
    """``--start-bank`` choices."""

    left = "left"
    right = "right"


class Length(str, Enum):
    """Units of lengths in GCP and survey files without a unit suffix."""

    m = "m"
    ft = "ft"


def _numbers(text: str | None, n: int, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{what} must be {n} comma-separated numbers") from None
    if len(vals) != n:
        raise typer.BadParameter(f"{what} must be {n} comma-separated numbers")
    return vals


def _options(
    cell_size, extent, line, start_bank, nodes, search_line_m, flow_direction, fan, velocity,
    max_velocity, english,
):  # fmt: skip
    from ivy_gpu.site.builder import SiteOptions

    ext = _numbers(extent, 4, "--extent")
    ln = "auto" if line in (None, "auto") else np.asarray(_numbers(line, 4, "--line"))
    flow = "auto" if flow_direction in (None, "auto") else _numbers(flow_direction, 1, "--flow")[0]
    return SiteOptions(
        cell_size_m=cell_size,
        extent=ext,
        line=ln,
        start_bank=Bank(start_bank).value,
        nodes=nodes,
        search_line_m=search_line_m,
        flow_direction=flow,
        fan_deg=fan,
        expected_velocity=velocity,
        max_velocity=max_velocity,
        display_units="English" if english else "Metric",
    )


def _with_stable(opts, stable_polygon: str | None):
    """``opts`` with the ``--stable-polygon`` (frame pixels) when one is given."""
    if not stable_polygon:
        return opts
    vals = _numbers(stable_polygon, len(stable_polygon.split(",")), "--stable-polygon")
    if len(vals) < 6 or len(vals) % 2:
        raise typer.BadParameter("--stable-polygon needs 3 or more x,y pairs")
    return dataclasses.replace(opts, stable_polygon=np.reshape(vals, (-1, 2)))


OUT = typer.Option(..., "--output", "-o", help="The scaffold to write (.ivy).")
STABLE = typer.Option(
    None, "--stable-polygon", help="Stable ground for motion estimation: x1,y1,x2,y2,... px."
)
CELL = typer.Option(None, "--cell-size", help="Plan-view cell size, m (default: the camera's).")
EXTENT = typer.Option(None, "--extent", help="Plan-view box x0,x1,y0,y1 (site CRS, m).")
LINE = typer.Option(
    "auto", "--line", help="auto (the survey's water edges) or X1,Y1,X2,Y2 (left bank first)."
)
BANK = typer.Option(Bank.left, "--start-bank", help="Bank of the survey's first point.")
NODES = typer.Option(25, "--nodes", help="Nodes along the section.")
SEARCH = typer.Option(None, "--search-line-m", help="Search-line length, m (default: scene).")
FLOW = typer.Option(
    "auto", "--flow-direction", help="auto (the downstream normal) or a bearing, degrees."
)
FAN = typer.Option(30.0, "--fan", help="Half-width of the search-direction fan, degrees.")
VEL = typer.Option(1.0, "--velocity", help="Typical surface speed, m/s (sets the search line).")
VMAX = typer.Option(5.0, "--max-velocity", help="Speeds above this are rejected, m/s.")
ENGLISH = typer.Option(False, "--english", help="Show results in feet and cfs.")
UNITS = typer.Option(Length.m, "--units", help="Lengths in files without a (m)/(ft) suffix.")
DEBUG = typer.Option(False, "--debug", help="Show tracebacks.")


def _finish(build, output: Path, ids=None) -> None:
    from ivy_gpu.site.builder import write_site

    write_site(build, output)
    console.print(build.report(ids), highlight=False)
    console.print(f"wrote {output}", highlight=False)


@site_app.command("create")
def create(
    output: Path = OUT,
    gcps: Path = typer.Option(..., "--gcps", help="GCP table (IVyTools CSV: 11, 6, 4 or 3 cols)."),
    frame: Path = typer.Option(..., "--frame", help="Calibration frame: an image or a video."),
    section: Path = typer.Option(
        ..., "--section", help="Survey: .csv (x,y,z or station,elevation), .mat or .geojson."
    ),
    wse: float = typer.Option(..., "--wse", help="Water-surface elevation of the frame, m."),
    intrinsics: Path = typer.Option(
        None, "--intrinsics", help="Camera intrinsics JSON (pose from >= 4 GCPs)."
    ),
    crs: str = typer.Option(
        None,
        "--crs",
        help="The site's CRS, e.g. EPSG:32735 (GeoJSON surveys are reprojected to it; kept "
        "for the NetCDF and GeoJSON outputs).",
    ),
    cell_size: float = CELL,
    extent: str = EXTENT,
    line: str = LINE,
    start_bank: Bank = BANK,
    nodes: int = NODES,
    search_line_m: float = SEARCH,
    flow_direction: str = FLOW,
    fan: float = FAN,
    velocity: float = VEL,
    max_velocity: float = VMAX,
    english: bool = ENGLISH,
    units: Length = UNITS,
    stable_polygon: str = STABLE,
    debug: bool = DEBUG,
) -> None:
    """Solve the camera from GCPs and write a scaffold (method chosen from what is given)."""
    from ivy_gpu.scaffold.lens import read_intrinsics
    from ivy_gpu.site.builder import build_site, read_frame
    from ivy_gpu.site.gcp import read_gcp_csv
    from ivy_gpu.site.survey import read_survey

    try:
        opts = _options(
            cell_size, extent, line, start_bank, nodes, search_line_m, flow_direction, fan,
            velocity, max_velocity, english,
        )  # fmt: skip
        table = read_gcp_csv(gcps, default_units=Length(units).value)
        world, pixel = table.rectification_points()
        ids = tuple(i for i, u in zip(table.ids, table.use_rectification, strict=True) if u)
        img, fps = read_frame(frame)
        if fps:
            opts = dataclasses.replace(opts, fps=fps)
        opts = dataclasses.replace(_with_stable(opts, stable_polygon), crs=crs or None)
        lens = read_intrinsics(intrinsics) if intrinsics else None
        survey = read_survey(section, units=Length(units).value, crs=crs)
        build = build_site(world, pixel, img, survey, wse, lens, opts, ids, source=str(gcps))
        _finish(build, output, ids)
    except ValueError as exc:
        fail(exc, debug)


@site_app.command("from-pyorc")
def from_pyorc(
    camera: Path = typer.Argument(..., help="pyorc camera configuration (JSON)."),
    section: Path = typer.Option(..., "--section", help="Survey: .csv (x,y,z), .geojson or .mat."),
    video: Path = typer.Option(..., "--video", help="A video (or frame) of the site."),
    output: Path = OUT,
    wse: float = typer.Option(None, "--wse", help="Water-surface elevation, m (default z_0)."),
    h_a: float = typer.Option(None, "--h-a", help="Gauge reading: WSE = z_0 + (h_a - h_ref)."),
    nodes: int = NODES,
    search_line_m: float = SEARCH,
    flow_direction: str = FLOW,
    fan: float = FAN,
    velocity: float = VEL,
    max_velocity: float = VMAX,
    start_bank: Bank = BANK,
    units: Length = UNITS,
    stable_polygon: str = STABLE,
    debug: bool = DEBUG,
) -> None:
    """Import a pyOpenRiverCam camera configuration as a scaffold.

    ``--stable-polygon`` replaces the configuration's ``stabilize`` polygon.
    """
    from ivy_gpu.site.builder import site_from_pyorc

    try:
        opts = _options(
            None, None, "auto", start_bank, nodes, search_line_m, flow_direction, fan, velocity,
            max_velocity, False,
        )  # fmt: skip
        opts = _with_stable(opts, stable_polygon)
        build = site_from_pyorc(camera, section, video, wse, h_a, opts, Length(units).value)
        _finish(build, output)
    except ValueError as exc:
        fail(exc, debug)


@site_app.command("show")
def show(
    scaffold: Path = typer.Argument(..., help="The scaffold (.ivy)."),
    output: Path = typer.Option(Path("site.png"), "--output", "-o", help="PNG to write."),
    frame: Path = typer.Option(None, "--frame", help="Draw on this image or video instead."),
    wse: float = typer.Option(None, "--wse", help="Water level, m (default: the calibration's)."),
    debug: bool = DEBUG,
) -> None:
    """Draw the calibration frame with GCPs, section, nodes and search-line fan."""
    from ivy_gpu.site.builder import read_frame
    from ivy_gpu.site.figure import site_figure

    cfg = load(scaffold, debug)
    try:
        img = read_frame(frame)[0] if frame else None
        site_figure(cfg, output, img, wse)
    except ValueError as exc:
        fail(exc, debug)
    console.print(f"wrote {output}", highlight=False)
