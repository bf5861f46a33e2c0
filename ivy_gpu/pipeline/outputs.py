"""Per-video output files: a list of writers, then ``results.json`` last.

Each writer takes one :class:`OutputContext` and writes its files atomically. A new
output format is one function appended to :data:`WRITERS`. ``results.json`` is written
by :func:`write_result_json` once the video is finished (after the save stage), so its
presence with ``"status": "completed"`` marks a complete video folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ivy_gpu.fileio import atomic_output, atomic_write_text
from ivy_gpu.report.figures import FIGURES
from ivy_gpu.report.review import REVIEW, sti_levels, write_review
from ivy_gpu.results import ProcessingResult, display_twins, stated_u95
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig
from ivy_gpu.stiv.driver import StivResult
from ivy_gpu.units import unit_system

RESULT_JSON = "results.json"
#: The tables of one video (beside ``results.json`` and the figures).
TABLES = ("discharge_table.csv", "stiv_results.csv")
#: What the figures need beyond the tables: a recompute redraws them from it.
FIGURE_DATA = "figure_data.npz"
#: The per-node files other tools read (:mod:`ivy_gpu.interop`).
INTEROP = ("velocities.nc", "velocities.geojson")
#: Every file a video's folder gets from this package (``frames/`` aside).
VIDEO_FILES = (
    RESULT_JSON, *TABLES, *INTEROP, *(name for name, _ in FIGURES), FIGURE_DATA, REVIEW
)  # fmt: skip


@dataclass(frozen=True)
class OutputContext:
    """What the writers read."""

    out: Path
    scaffold: ScaffoldConfig
    result: ProcessingResult
    stiv: StivResult
    first_frame: np.ndarray
    figures: bool = True
    #: Draws the figures (:func:`draw_figures`' arguments); a batch's figure processes
    #: (:class:`ivy_gpu.pipeline.drawing.FigureProcesses`) or, when None, this thread.
    drawer: Callable[[Path, ScaffoldConfig, ProcessingResult, FigureInputs], None] | None = None


def write_discharge_table(out: Path, table: pd.DataFrame) -> None:
    """``discharge_table.csv``: IVyTools' columns and ``Source``, 7 significant digits."""
    table = table.copy()
    floats = table.select_dtypes("number").columns
    # round-off zeros (a 4.4e-16 m width) print as 0; 7 significant digits for the rest
    table[floats] = table[floats].mask(table[floats].abs() < 1e-9, 0.0)
    atomic_write_text(  # UTF-8 with a BOM: Excel then reads the "α (alpha)" header right
        out / "discharge_table.csv", "\ufeff" + table.to_csv(index=False, float_format="%.7g")
    )


def write_tables(ctx: OutputContext) -> None:
    """``discharge_table.csv`` (IVyTools columns) and ``stiv_results.csv`` (per node)."""
    r = ctx.result
    write_discharge_table(ctx.out, r.discharge_dataframe)
    nodes = r.node_positions
    sr = ctx.stiv
    stiv_table = pd.DataFrame(
        {
            "node": np.arange(len(nodes)),
            "x_px": nodes[:, 0],
            "y_px": nodes[:, 1],
            "station_m": r.node_stations,
            "speed_ms": r.stiv_magnitudes,
            "direction_deg": sr.direction,
            "normal_velocity_ms": r.stiv_normal_velocities,
            "theta_deg": sr.theta,
            "score": sr.score,
            "stride": r.node_stride,
            "sigma_v_ms": r.node_sigma_v,
            "window_median_ms": r.node_window_median,
            "window_spread_ms": r.node_window_spread,
            "flags": r.node_flags,
        }
    )
    windows = r.node_window_velocities
    for k, values in enumerate([] if windows is None else windows):
        # what each time window measured: a recompute's time-sampling term needs them
        stiv_table.insert(len(stiv_table.columns) - 1, f"window_{k + 1}_ms", values)
    atomic_write_text(
        # 9 significant digits: a recompute from this table gives the measured discharge back
        ctx.out / "stiv_results.csv",
        stiv_table.to_csv(index=False, float_format="%.9g"),
    )


def plan_north(scaffold: ScaffoldConfig) -> tuple[float, float] | None:
    """Image direction (dx, dy) of world +Y in the plan view, None when unknown (scale)."""
    r = scaffold.rectification
    if r.method == "scale":
        return None
    north_up = r.method == "camera matrix" or r.world_extent is not None
    dy = -1.0 if north_up else 1.0  # IVyTools' homography canvas puts +Y down
    return (0.0, -dy if r.flip_y else dy)


@dataclass(frozen=True)
class FigureInputs:
    """What the figures need beyond the tables (saved as :data:`FIGURE_DATA`)."""

    first_frame: np.ndarray
    magnitude: np.ndarray
    direction: np.ndarray
    theta: np.ndarray
    score: np.ndarray
    sti: np.ndarray | None = None
    stride_limited: np.ndarray | None = None
    #: ``sti`` as stored (:func:`pack_stis`) when already made, so it is packed once.
    sti_packed: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def packed_stis(self) -> dict[str, np.ndarray] | None:
        """``sti`` as :func:`pack_stis` stores it (None without STIs)."""
        if self.sti is None:
            return None
        return self.sti_packed if self.sti_packed is not None else pack_stis(self.sti)


def pack_stis(sti: np.ndarray) -> dict[str, np.ndarray]:
    """The STIs' grey levels as bytes (``sti_u8``), their NaN as a packed mask (``sti_nan``).

    The mask only when there are any. How :data:`FIGURE_DATA` stores them and a figure
    process gets them (:func:`unpack_stis` reads both).
    """
    levels = sti_levels(sti)
    nan = np.isnan(levels)
    if not nan.any():
        return {"sti_u8": levels.astype(np.uint8)}
    levels[nan] = 0.0
    return {"sti_u8": levels.astype(np.uint8), "sti_nan": np.packbits(nan, axis=None)}


def save_figure_inputs(out: Path, data: FigureInputs) -> None:
    """Write :data:`FIGURE_DATA` atomically.

    The STIs (:func:`sti_levels`) are stored uncompressed as bytes, with their NaN as a packed
    bit mask when there are any: an STI is texture that zlib shrinks by a fifth at ~40 ms per
    MB, while writing costs ~1 ms per MB (575 nodes x 138 x 300 samples: 22 MB, against 35 MB
    and 2.4 s as compressed float16). The first frame, only the vectors figure's backdrop, is
    kept as a JPEG (quality 92): a sixth of its zlib size, so a redrawn backdrop differs from
    the first drawing by JPEG's rounding, never the numbers drawn over it.
    """
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.asarray(data.first_frame), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"{out / FIGURE_DATA}: cannot encode the first frame")
    arrays = {
        "first_frame_jpeg": np.frombuffer(jpeg.tobytes(), np.uint8),
        "magnitude": data.magnitude,
        "direction": data.direction,
        "theta": data.theta,
        "score": data.score,
    }
    if data.sti is not None:
        arrays.update(data.packed_stis())
    if data.stride_limited is not None:
        arrays["stride_limited"] = np.asarray(data.stride_limited, bool)
    with atomic_output(out / FIGURE_DATA) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def unpack_stis(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The STIs of a loaded :data:`FIGURE_DATA` or :func:`pack_stis` (float32), None if none.

    Reads the byte form (``sti_u8``, ``sti_nan``) and the compressed float16 ``sti`` that
    folders written before it hold.
    """
    if "sti_u8" not in arrays:
        sti = arrays.get("sti")
        return None if sti is None else sti.astype(np.float32)
    levels = arrays["sti_u8"]
    if levels.dtype != np.uint8 or levels.ndim != 3:
        raise ValueError("sti_u8 is not a (nodes, P, T) byte array")
    sti = levels.astype(np.float32)
    if "sti_nan" in arrays:
        packed = arrays["sti_nan"]
        if packed.dtype != np.uint8 or packed.shape != ((levels.size + 7) // 8,):
            raise ValueError("sti_nan is not the bit mask of sti_u8")
        bits = np.unpackbits(packed, count=levels.size)
        sti[bits.reshape(levels.shape).astype(bool)] = np.nan
    return sti


def load_figure_inputs(out: Path) -> FigureInputs | None:
    """The saved figure inputs of a video folder, None when there are none (or unreadable)."""
    import cv2

    try:
        with np.load(out / FIGURE_DATA, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        frame = cv2.imdecode(arrays["first_frame_jpeg"], cv2.IMREAD_UNCHANGED)
        sti = unpack_stis(arrays)
        per_node = [arrays[k] for k in ("magnitude", "direction", "theta", "score")]
        n = len(per_node[0]) if per_node[0].ndim == 1 else -1
        limited = arrays.get("stride_limited")
        if (
            frame is None
            or any(a.shape != (n,) or a.dtype.kind != "f" for a in per_node)
            or (sti is not None and len(sti) != n)
            or (limited is not None and (limited.shape != (n,) or limited.dtype != bool))
        ):
            return None
        return FigureInputs(
            frame, arrays["magnitude"], arrays["direction"], arrays["theta"],
            arrays["score"], sti, limited,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, EOFError, TypeError, cv2.error):
        return None


def draw_figures(
    out: Path, scaffold: ScaffoldConfig, r: ProcessingResult, data: FigureInputs
) -> None:
    """Vectors over the first rectified frame, three STIs, the section profile, ``review.html``.

    Which nodes were filled comes from the table's ``Source`` (so a recomputed result with
    overrides is drawn as it was computed).
    """
    from ivy_gpu.report import figures

    u = unit_system(scaffold.display_units)
    nodes = r.node_positions
    flags = r.node_flags or [""] * len(nodes)
    table = r.discharge_dataframe
    filled = np.isin(table["Source"].to_numpy(), ("filled", "excluded"))  # edges never
    excluded = filled[1:-1]
    q = figures.discharge_text(r, u)
    figures.rectified_vectors(
        out / "rectified_vectors.png",
        data.first_frame,
        nodes,
        scaffold.cross_section_line,
        data.magnitude,
        data.direction,
        f"{r.video_path.name}: Q = {q}",
        excluded=excluded,
        noted=np.array([bool(fl) for fl in flags]) & ~excluded,
        gsd_m=r.pixel_gsd,
        units=u,
        north=plan_north(scaffold),
        limited=data.stride_limited,
    )
    if data.sti is not None:
        picks = figures.pick_sti_nodes(np.where(excluded, np.nan, data.score), data.magnitude)
        figures.sti_panels(
            out / "stis.png", data.sti, picks, data.theta, data.magnitude, data.score,
            r.pixel_gsd or 1.0, r.timestep_seconds or 1.0, r.node_stride, u, flags,
        )  # fmt: skip
    vn = np.asarray(r.stiv_normal_velocities, float)
    rejected = np.where(excluded & np.isfinite(vn), vn, np.nan)
    figures.section_profile(
        out / "section.png",
        table["Station Distance"].to_numpy(),
        table["Depth"].to_numpy(),
        table["Surface Velocity"].to_numpy(),
        u.length_label,
        u.length,
        u.velocity_label,
        u.velocity,
        filled=filled,
        title=f"{r.video_path.name}: Q = {q}\ncross-section at WSE "
        f"{r.water_surface_elevation * u.length:.3f} {u.length_label}",
        rejected=np.concatenate([[np.nan], rejected, [np.nan]]),
    )
    in_batch = (out.parent / "batch_summary.csv").is_file()
    write_review(
        out, r, data.sti, data.theta, data.score, u, "../report.html" if in_batch else None
    )


def remove_figures(out: Path) -> None:
    """Remove a folder's figures, their saved inputs and review page (they show other numbers)."""
    for name in (*(name for name, _ in FIGURES), FIGURE_DATA, REVIEW):
        (out / name).unlink(missing_ok=True)


def write_figures(ctx: OutputContext) -> None:
    """Draw the figures (:func:`draw_figures`) and save what a redraw needs.

    With ``ctx.figures`` False none is drawn, and those of an earlier run in the folder are
    removed: they would show another result beside this one's numbers.
    """
    if not ctx.figures:
        remove_figures(ctx.out)
        return
    sr = ctx.stiv
    packed = None if sr.sti is None else pack_stis(sr.sti)
    data = FigureInputs(  # drawn from the STIs as saved, so a redraw shows the same
        ctx.first_frame, sr.magnitude, sr.direction, sr.theta, sr.score,
        None if packed is None else unpack_stis(packed), sr.stride_limited, packed,
    )  # fmt: skip
    save_figure_inputs(ctx.out, data)
    (ctx.drawer or draw_figures)(ctx.out, ctx.scaffold, ctx.result, data)


def write_interop(ctx: OutputContext) -> None:
    """``velocities.nc`` (CF NetCDF) and ``velocities.geojson`` (points with vectors)."""
    write_interop_files(ctx.out, ctx.result)


def write_interop_files(out: Path, result: ProcessingResult) -> None:
    """Write :data:`INTEROP` for ``result`` into ``out``, each atomically."""
    from ivy_gpu.interop import velocity_dataset, velocity_geojson

    ds = velocity_dataset(result, stated_u95(result.discharge_uncertainty))
    with atomic_output(out / INTEROP[0]) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    text = json.dumps(velocity_geojson(result), indent=1, allow_nan=False)
    atomic_write_text(out / INTEROP[1], text)


def refresh_interop_files(out: Path, result: ProcessingResult) -> None:
    """Rewrite :data:`INTEROP` for a recomputed ``result`` (new normal velocities and flags).

    Positions, velocity components, directions and the CRS come from the earlier
    ``velocities.nc``; without a readable one, both files are removed (they would show the
    earlier numbers).
    """
    import xarray as xr

    try:
        with xr.open_dataset(out / INTEROP[0], engine="h5netcdf") as ds:
            ds = ds.load()
        result.node_velocity_xy = np.column_stack([ds["velocity_x"], ds["velocity_y"]])
        result.node_world_xy = np.column_stack([ds["x"], ds["y"]]) if "x" in ds else None
        result.stiv_directions = ds["direction"].to_numpy()
        result.crs = str(ds.attrs.get("crs") or "") or None
        if len(result.stiv_directions) != len(result.stiv_normal_velocities):
            raise ValueError("another node count")
        write_interop_files(out, result)
    except (OSError, ValueError, KeyError):
        for name in INTEROP:
            (out / name).unlink(missing_ok=True)


#: The per-video writers, in order (``results.json`` is not one of them: it comes last).
WRITERS: list[Callable[[OutputContext], None]] = [write_tables, write_interop, write_figures]


def write_outputs(ctx: OutputContext, figures: bool = True) -> None:
    """Run every writer into ``ctx.out`` (created if needed).

    ``figures`` False leaves :func:`write_figures` for later (a batch draws them off the
    critical path) and removes an earlier run's figures now: until they are redrawn nothing
    in the folder shows other numbers.
    """
    ctx.out.mkdir(parents=True, exist_ok=True)
    if not figures:
        remove_figures(ctx.out)
    for writer in WRITERS:
        if figures or writer is not write_figures:
            writer(ctx)


# --------------------------------------------------------------------------- results.json
def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _clean(o: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def json_text(data: Any) -> str:
    """Strict JSON (NaN as null; NumPy values and paths converted), indented."""
    return json.dumps(_clean(data), indent=1, default=_json_default)


def result_json(result: ProcessingResult, scaffold: ScaffoldConfig | None) -> dict[str, Any]:
    """The content of ``results.json``: every scalar, units in the key names, display values."""
    data = result.scalars()
    if scaffold is not None:
        data["display_units"] = scaffold.display_units
        data.update(display_twins(result, scaffold.display_units))
    data["inputs"] = {
        "water_surface_elevation_m": result.water_surface_elevation,
        "alpha": result.alpha,
        **result.inputs,
    }
    return _clean(data)


def write_result_json(out: Path, result: ProcessingResult, scaffold: ScaffoldConfig | None) -> None:
    """Write ``results.json`` atomically (the folder is created if needed).

    It is written last, sealed with ``result_sha256`` (:func:`result_digest`) over its own
    values and the tables beside it, so a resume never reuses numbers edited since.
    """
    out.mkdir(parents=True, exist_ok=True)
    data = result_json(result, scaffold)
    data[DIGEST_KEY] = result_digest(data, out)
    atomic_write_text(out / RESULT_JSON, json_text(data))


#: The key of ``results.json`` that seals its values and its tables.
DIGEST_KEY = "result_sha256"


def result_digest(data: dict[str, Any], folder: Path) -> str:
    """SHA-256 of a result's values (all but :data:`DIGEST_KEY`) and of its saved tables."""
    h = hashlib.sha256(json_text({k: v for k, v in data.items() if k != DIGEST_KEY}).encode())
    for name in TABLES:
        path = folder / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def remove_earlier_outputs(out: Path) -> None:
    """Remove an earlier run's tables and figures beside a ``results.json`` that says failed.

    Nothing left in the folder can then be read as this video's current result.
    """
    for name in VIDEO_FILES:
        if name != RESULT_JSON:
            (out / name).unlink(missing_ok=True)


def read_result(folder: Path) -> ProcessingResult | None:
    """A completed result saved in ``folder`` (``results.json`` + the discharge table), or None."""
    try:
        data = json.loads((folder / RESULT_JSON).read_text())
        table = pd.read_csv(folder / "discharge_table.csv")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("status") != "completed":
        return None
    try:
        if data.get(DIGEST_KEY) != result_digest(data, folder):
            return None  # edited (or written before the seal): not a result to stand behind
    except OSError:
        return None
    return ProcessingResult.from_scalars(data, table, folder)
