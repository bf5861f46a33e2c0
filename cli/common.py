"""What every command shares: consoles, option declarations, choices and helpers.

The command modules import from here; this module imports no command module.
"""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _backend_choices() -> type[Enum]:
    from ivy_gpu.engines.backends import BACKENDS

    return Enum("Backend", {n: n for n in ("auto", *BACKENDS)}, type=str)


#: ``--backend`` choices: ``auto`` and every engine of the registry.
Backend = _backend_choices()


class Method(str, Enum):
    """``--method`` choices."""

    acf = "acf"
    gradient = "gradient"


class Units(str, Enum):
    """``--units`` choices for WSE inputs."""

    display = "display"
    si = "si"
    english = "english"


UNITS = typer.Option(
    Units.display,
    "--units",
    help="Units of WSE inputs (--wse, the batch CSV): the scaffold's display units, or si/english.",
)


def units_of(cfg, units: Units):
    """The unit system of WSE inputs (``display`` = the scaffold's)."""
    from ivy_gpu.units import unit_system

    name = {"si": "Metric", "english": "English"}.get(Units(units).value, cfg.display_units)
    return unit_system(name)


class Interpolation(str, Enum):
    """``--interpolation`` choices."""

    bilinear = "bilinear"
    nearest = "nearest"


BACKEND = typer.Option(
    Backend.auto, "--backend", "-b", help="Compute backend (auto: the GPU when one is usable)."
)
METHOD = typer.Option(None, "--method", help="STIV method (default: the scaffold's, else acf).")
INTERPOLATION = typer.Option(
    None, "--interpolation", help="Sampling along the search lines (nearest is IVyTools' own)."
)
REFINE = typer.Option(None, "--refine/--no-refine", help="Sub-step angle refinement (default: on).")


class Compat(str, Enum):
    """``--compat`` choices."""

    none = "none"
    ivytools = "ivytools"


COMPAT = typer.Option(
    Compat.none,
    "--compat",
    help="ivytools: STIV sampled exactly as the IVyTools python port (its search lines, "
    "nearest sampling, no refinement); everything else stays corrected.",
)


class Stabilize(str, Enum):
    """``--stabilize`` choices."""

    auto = "auto"
    on = "on"
    off = "off"


STABILIZE = typer.Option(
    None,
    "--stabilize",
    help="Camera-motion correction: auto (correct frames that moved), on, off (only warn). "
    "Default: on when the scaffold asks for it, else auto.",
)
MIN_VALID = typer.Option(
    0.5,
    "--min-valid-fraction",
    help="Fail a video when fewer nodes than this fraction give a valid, unflagged velocity.",
)
STRIDE = typer.Option(
    None,
    "--stride/--no-stride",
    help="Re-measure slow nodes at k frames per step (default: on; off with --compat ivytools).",
)
D_RHO = typer.Option(None, "--d-rho", help="ACF ray step, lags (default 0.5).")
LINE_LENGTH = typer.Option(
    None, "--line-length-m", help="Search-line length, m (default: the scaffold's)."
)
FAN_CENTRE = typer.Option(
    None, "--fan-centre", help="Centre of the search fan, geographic degrees (the flow direction)."
)
FAN_RANGE = typer.Option(None, "--fan-range", help="Half-width of the search fan, degrees.")
FAN_STEP = typer.Option(None, "--fan-step", help="Step of the search fan, degrees.")
MAX_VELOCITY = typer.Option(
    None, "--max-velocity", help="Speeds above this are rejected (flag threshold), m/s."
)
D_THETA = typer.Option(None, "--d-theta", help="ACF ray-angle step, degrees (default 0.5).")
FIGURES = typer.Option(
    True,
    "--figures/--no-figures",
    help="Draw each video's PNG figures; --no-figures writes the tables and results.json only "
    "(faster on large batches).",
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars; log errors only.")
JSON = typer.Option(
    False, "--json", help="One JSON document on stdout instead of text (implies --quiet)."
)


def quiet_mode(quiet: bool, as_json: bool = False) -> bool:
    """Apply --quiet / --json to the log level; True when progress bars are off."""
    from ivy_gpu.log import configure

    if quiet or as_json:
        configure(quiet=True)
    return quiet or as_json


def print_json(data: object) -> None:
    """One JSON document on stdout."""
    from ivy_gpu.pipeline.outputs import json_text

    sys.stdout.write(json_text(data) + "\n")


DEBUG = typer.Option(False, "--debug", help="Show tracebacks.")
GAUGE = typer.Option(
    None,
    "--gauge",
    help="Gauge record (NWIS RDB or time,value CSV): its discharge beside the results in "
    "report.html and record.nc, its stage for rows without a WSE (with --stage-datum).",
)
TZ = typer.Option(
    None, "--tz", help="Zone of measurement times without one (e.g. CST, CAT, Africa/Lusaka)."
)
STAGE_DATUM = typer.Option(
    None,
    "--stage-datum",
    help="Elevation of the gauge's datum, in the WSE's units: a row without a WSE takes the "
    "gauge's stage at its time plus this.",
)


def wse_lookup(gauge, stage_datum: float | None, tz: str | None, units):
    """The WSE-from-stage lookup for rows without one (None without --stage-datum).

    Raises
    ------
    ValueError
        --stage-datum without --gauge, or a gauge record without a stage (one line).
    """
    if stage_datum is None:
        return None
    if gauge is None:
        raise ValueError("--stage-datum: needs --gauge, the record whose stage it offsets")
    from ivy_gpu.report.record import parse_zone, stage_lookup

    return stage_lookup(gauge, stage_datum / units.length, parse_zone(tz))


def fail(exc: Exception, debug: bool, code: int = 2) -> None:
    """Print one error line (the traceback too with ``--debug``) and exit with ``code``."""
    if debug:  # the traceback, and still the documented exit code
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def engine_and_stiv(backend: Backend, cfg, debug: bool, **overrides):
    """Resolve the backend and the STIV settings before any decoding (exit 2 if unusable).

    ``line_length_m`` becomes the line's pixels at the scaffold's GSD (as the GUI does),
    ``fan_centre``, ``fan_range``, ``fan_step`` and ``max_velocity`` the fan and the limit.
    """
    from ivy_gpu.engines.backends import resolve_backend
    from ivy_gpu.params import search_line_pixels
    from ivy_gpu.pipeline.process import stiv_params_for

    plain = {k: (v.value if isinstance(v, Enum) else v) for k, v in overrides.items()}
    for option, field in (
        ("fan_centre", "phi_origin"),
        ("fan_range", "phi_range"),
        ("fan_step", "d_phi"),
        ("max_velocity", "max_vel_threshold"),
    ):
        if option in plain:
            plain[field] = plain.pop(option)
    length = plain.pop("line_length_m", None)
    if length is not None:
        if not (length > 0 and math.isfinite(length)):
            fail(ValueError(f"--line-length-m: must be a positive length, got {length!r}"), debug)
        plain["num_pixels"] = search_line_pixels(length, cfg.pixel_gsd_m)
    try:
        return resolve_backend(Backend(backend).value), stiv_params_for(cfg, plain)
    except ValueError as exc:
        fail(exc, debug)


def compile_notice(backend: str, quiet: bool) -> None:
    """Say so before the numba kernels are compiled for the first time (about a minute)."""
    if quiet or backend != "numba":
        return
    from ivy_gpu.engines.numba_engine import kernels_cached

    if not kernels_cached():
        err_console.print(
            "compiling the numba kernels once (about a minute on 2 cores); "
            "they are cached for the next runs",
            highlight=False,
        )


def progress(quiet: bool) -> Progress:
    """A progress display on stderr (off when ``quiet``)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[msg]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )


def load(scaffold: Path, debug: bool):
    """The scaffold, or one error line and exit 2."""
    from ivy_gpu.scaffold.ivyfile import load_scaffold

    try:
        return load_scaffold(scaffold)
    except ValueError as exc:
        fail(exc, debug)


def row_label(r, display_units: str = "Metric") -> str:
    """`` (WSE 1182.200 m, 0-3 s, comment)``: what tells rows of one video apart."""
    from ivy_gpu.units import describe_row, unit_system

    u = unit_system(display_units)
    m = r.measurement or {}
    wse = r.water_surface_elevation
    text = describe_row(
        None if wse is None else wse * u.length, u.length_label, m.get("start_time_s"),
        m.get("end_time_s"), m.get("comments"),
    )  # fmt: skip
    return f" ({text})" if text else ""


def result_line(r, display_units: str = "Metric") -> str:
    """The console line of one video's result."""
    from ivy_gpu.results import stated_u95
    from ivy_gpu.units import unit_system

    name = escape(r.video_path.name) + escape(row_label(r, display_units))
    if r.success:
        u = unit_system(display_units)
        q = f"Q = {r.total_discharge:.4f} m³/s"
        a = f"A = {r.total_area:.4f} m²"
        if u.name == "English":
            q = f"Q = {r.total_discharge * u.discharge:.3f} cfs ({r.total_discharge:.4f} m³/s)"
            a = f"A = {r.total_area * u.area:.3f} ft² ({r.total_area:.4f} m²)"
        u95 = stated_u95(r.discharge_uncertainty)
        if u95 is not None:
            q += f" ± {100 * u95:.1f} % (U95)"
        if r.quality_rating:
            q += f", {r.quality_rating}"
        n = len(r.node_flags) if r.node_flags else r.valid_nodes
        nodes = (
            f"nodes: {r.valid_nodes} of {n} valid, {r.filled_nodes} filled, "
            f"{r.flagged_nodes} flagged"
        )
        return (
            f"[green]completed[/green] {name}: {q}, {a}, {nodes}, {r.num_frames} frames, "
            f"{r.processing_time_seconds:.1f} s"
        )
    return f"[red]failed[/red] {name} at {r.error_stage}: {escape(str(r.error_message))}"


def dask_client(workers: int, scheduler: str | None, debug: bool, backend: str = "numba"):
    """The Dask client of ``--workers``/``--scheduler``, None for neither (one line on errors).

    ``--workers N`` on a machine with several GPUs and the ``cupy`` backend pins one worker
    per GPU (:func:`ivy_gpu.pipeline.cluster.local_client`).
    """
    if workers < 0:
        fail(ValueError(f"--workers: 0 (no cluster) or a process count, not {workers}"), debug)
    if not (workers or scheduler):
        return None
    try:
        from distributed import Client
    except ImportError:
        fail(
            RuntimeError(
                "--workers/--scheduler need dask.distributed: pip install 'ivy_gpu[dist]'"
            ),
            debug,
        )
    try:
        if scheduler:
            return Client(scheduler)
        from ivy_gpu.pipeline.cluster import local_client

        return local_client(workers, backend)
    except OSError as exc:
        fail(RuntimeError(f"cannot reach the Dask scheduler {scheduler}: {exc}"), debug)


def close_client(client, scheduler: str | None) -> None:
    """Close a client from :func:`dask_client` (and the local cluster it started)."""
    if client is None:
        return
    cluster = client.cluster
    client.close()
    if cluster is not None and not scheduler:
        cluster.close()
