"""Recompute a video's discharge from its saved per-node results, with overrides, no video.

:func:`recompute` reads a completed video folder (``results.json``, ``stiv_results.csv``,
``figure_data.npz`` when figures were drawn) and the scaffold it was measured with, applies
the overrides (:mod:`ivy_gpu.pipeline.overrides`) to the *measured* node velocities, and
rewrites the discharge table, the figures and ``results.json`` (last, atomically), plus this
video's row of the batch summary when the folder sits in a batch folder. The measurement itself
(``stiv_results.csv``) is never changed, so overrides do not pile up: each recompute starts from
what was measured, and one without overrides gives the measured result back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ivy_gpu.fileio import csv_cell_text, read_json
from ivy_gpu.hydraulics.grid import node_stations
from ivy_gpu.hydraulics.uncertainty import rating
from ivy_gpu.pipeline.analysis import node_sources, section_discharge, window_velocities
from ivy_gpu.pipeline.batch_csv import result_cells, write_summary
from ivy_gpu.pipeline.outputs import (
    RESULT_JSON,
    draw_figures,
    load_figure_inputs,
    refresh_interop_files,
    remove_figures,
    write_discharge_table,
    write_result_json,
)
from ivy_gpu.pipeline.overrides import Override, read_overrides
from ivy_gpu.pipeline.provenance import scaffold_sha256
from ivy_gpu.results import ProcessingResult
from ivy_gpu.scaffold.ivyfile import ScaffoldConfig, as_scaffold
from ivy_gpu.stiv.quality import QualityRules, excluded_by, has_flag

#: The columns of ``stiv_results.csv`` a recompute reads.
NODE_COLUMNS = ("node", "x_px", "y_px", "station_m", "normal_velocity_ms", "sigma_v_ms", "flags")
#: Warnings of the measurement that a recompute writes anew.
_FILLED_NOTE = "node velocities were missing or flagged and filled by interpolation"
_UPSTREAM_NOTE = "move upstream and count as negative discharge"


def _nodes(folder: Path) -> pd.DataFrame:
    path = folder / "stiv_results.csv"
    try:
        nodes = pd.read_csv(path, dtype={"flags": str}, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the per-node results ({exc})") from None
    missing = [c for c in NODE_COLUMNS if c not in nodes.columns]
    if missing:
        raise ValueError(
            f"{path}: no column {missing[0]!r} (an older ivy_gpu wrote it: process the video again)"
        )
    if list(nodes["node"]) != list(range(len(nodes))):
        raise ValueError(f"{path}: column node: the rows are not nodes 0 to {len(nodes) - 1}")
    nodes["flags"] = nodes["flags"].fillna("").astype(str)
    return nodes


def _scaffold(folder: Path, data: dict, scaffold: str | Path | ScaffoldConfig | None):
    prov = data.get("provenance") or {}
    if scaffold is None:
        scaffold = prov.get("scaffold_path")
        if not scaffold:
            raise ValueError(f"{folder / RESULT_JSON}: no scaffold recorded; give the scaffold")
    cfg = as_scaffold(scaffold)
    want = prov.get("scaffold_sha256")
    if want and scaffold_sha256(cfg) != want:
        raise ValueError(
            f"{cfg.path or 'scaffold'}: not the scaffold this video was measured with "
            f"(its SHA-256 differs from {folder / RESULT_JSON}'s provenance)"
        )
    return cfg


def recompute(
    folder: str | Path,
    overrides: str | Path | list[Override] | None = None,
    scaffold: str | Path | ScaffoldConfig | None = None,
) -> ProcessingResult:
    """Discharge, uncertainty, tables, figures and ``results.json`` again, with ``overrides``.

    Parameters
    ----------
    folder : path
        A completed video folder (``<output>/<video>/``).
    overrides : path or list of Override, optional
        An overrides file (:func:`ivy_gpu.pipeline.overrides.read_overrides`) or its rows;
        none gives back the measured result (earlier overrides are dropped).
    scaffold : path or ScaffoldConfig, optional
        The site; by default the scaffold recorded in ``results.json``. Refused when it is not
        the file the video was measured with (its SHA-256 differs).

    Raises
    ------
    ValueError
        One line naming the file (and row and column for an overrides file): no completed
        result, missing per-node results, another scaffold, a bad override.
    """
    folder = Path(folder)
    data = read_json(folder / RESULT_JSON, "result")
    if not isinstance(data, dict) or data.get("status") != "completed":
        raise ValueError(f"{folder / RESULT_JSON}: not a completed result; nothing to recompute")
    nodes = _nodes(folder)
    cfg = _scaffold(folder, data, scaffold)
    n = len(nodes)
    rows = read_overrides(overrides, n) if isinstance(overrides, (str, Path)) else overrides or []
    result = ProcessingResult.from_scalars(data, None, folder)
    vn = nodes["normal_velocity_ms"].to_numpy(float, copy=True)
    flags = nodes["flags"].tolist()
    excluded = excluded_by(flags) | ~np.isfinite(vn)
    sources = node_sources(vn, excluded)
    used = np.where(excluded, np.nan, vn)
    measured_sigma = nodes["sigma_v_ms"].to_numpy(float)
    sigma_v = measured_sigma.copy()
    fixed = has_flag(flags, ("still",))  # no time window decides them
    for o in rows:
        k = o.node
        if o.action == "exclude":
            used[k], sources[k] = np.nan, "excluded" if np.isfinite(vn[k]) else "filled"
        elif o.action == "keep":
            if not np.isfinite(vn[k]):
                raise ValueError(f"overrides: node {k} has no measured velocity to keep")
            used[k], sources[k] = vn[k], "override"
        else:  # set: the hydrologist's value has no measured spread
            used[k], sources[k], sigma_v[k] = o.velocity_ms, "override", np.nan
            fixed[k] = True
    windows = [c for c in nodes.columns if c.startswith("window_") and c.endswith("_ms")]
    windows = [c for c in windows if c[len("window_") : -len("_ms")].isdigit()]
    window_used = None
    if windows:
        window_vn = nodes[windows].to_numpy(float).T
    wse = float(result.water_surface_elevation)
    xy = nodes[["x_px", "y_px"]].to_numpy(float)
    try:
        ns = node_stations(
            xy, cfg.cross_section_line, cfg.cross_section, wse, result.pixel_gsd, cfg.start_bank
        )
        if not np.allclose(ns.stations, nodes["station_m"].to_numpy(float), atol=1e-4):
            raise ValueError("its stations differ from the saved ones")
        quality = SimpleNamespace(sigma_v=sigma_v, windows=result.quality_windows)
        if windows:
            window_used = window_velocities(window_vn, used, fixed, ns.stations, QualityRules())
        q, unc = section_discharge(cfg, ns, wse, used, result.alpha, quality, sources, window_used)
    except ValueError as exc:
        raise ValueError(f"{folder}: cannot recompute the discharge ({exc})") from None
    result.total_discharge, result.total_area = q.discharge, q.area
    result.mean_velocity = q.mean_velocity
    result.discharge_dataframe = q.table
    result.discharge_uncertainty = dataclasses.asdict(unc)
    result.filled_nodes = q.filled_nodes
    result.quality_rating, result.quality_reasons = rating(
        unc.u95, q.filled_nodes, n, result.quality_windows
    )
    result.valid_nodes = int(np.isin(sources, ("measured", "override")).sum())
    result.overrides = [o.as_dict() for o in rows]
    notes = (_FILLED_NOTE, _UPSTREAM_NOTE, "overrides applied")
    result.warnings = [w for w in result.warnings if not any(s in w for s in notes)]
    if q.filled_nodes:
        result.warnings.append(f"{q.filled_nodes} of {n} {_FILLED_NOTE} along the section")
    if np.any(used < 0):
        result.warnings.append(f"{int(np.sum(used < 0))} node(s) {_UPSTREAM_NOTE}")
    if rows:
        said = ", ".join(
            f"node {o.node} {o.action}"
            + (f" {o.velocity_ms:g} m/s" if o.velocity_ms is not None else "")
            for o in rows
        )
        result.warnings.append(f"overrides applied: {said}")
    result.node_positions, result.node_stations = xy, ns.stations
    result.stiv_normal_velocities, result.node_flags = vn, flags
    result.stiv_magnitudes = nodes["speed_ms"].to_numpy(float) if "speed_ms" in nodes else None
    result.node_stride = nodes["stride"].to_numpy(float) if "stride" in nodes else None
    result.node_sigma_v = measured_sigma
    write_discharge_table(folder, q.table)
    refresh_interop_files(folder, result)
    figure_data = load_figure_inputs(folder)
    if figure_data is not None:
        draw_figures(folder, cfg, result, figure_data)
    else:  # drawn for the earlier numbers, and not redrawable: they would show another Q
        remove_figures(folder)
    write_result_json(folder, result, cfg)
    _update_summary(folder, result)
    _update_record(folder, result)
    return result


def _update_record(folder: Path, r: ProcessingResult) -> None:
    """Put this video's new numbers into its row of the batch's ``record.nc`` (if any)."""
    path = folder.parent / "record.nc"
    if not path.is_file():
        return
    import xarray as xr

    from ivy_gpu.fileio import atomic_output
    from ivy_gpu.interop import update_record
    from ivy_gpu.results import stated_u95

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
        if update_record(ds, r, stated_u95(r.discharge_uncertainty)):
            with atomic_output(path) as tmp:
                ds.to_netcdf(tmp, engine="h5netcdf")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot update the record ({exc})") from None


def _update_summary(folder: Path, r: ProcessingResult) -> None:
    """Rewrite this video's row of the batch summary beside it (when there is one)."""
    path = folder.parent / "batch_summary.csv"
    if not path.is_file():
        return
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).map(csv_cell_text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot update the batch summary ({exc})") from None
    rows = frame.index[frame.get("output_folder", pd.Series(dtype=str)) == folder.name]
    if len(rows) == 0:
        return
    units = "English" if "discharge_cfs" in frame.columns else "Metric"
    for col, value in result_cells(r, units).items():
        if col in frame.columns:
            frame.loc[rows, col] = value
    write_summary(path, frame.to_dict("records"), units)
