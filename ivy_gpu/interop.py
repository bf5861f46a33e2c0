"""Results as other tools read them: CF NetCDF through xarray, and GeoJSON for GIS.

:func:`velocity_dataset` is one video's nodes (``velocities.nc``), :func:`velocity_geojson`
the same nodes as points with their vectors (``velocities.geojson``), :func:`record_dataset`
a batch's discharges as a CF ``timeSeries`` (``record.nc``). Every variable carries its
units; positions are in the site's world coordinates, with its CRS when the scaffold names
one (``rectification_parameters.crs``).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ivy_gpu.params import NODE_FLAGS

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

#: A :class:`ivy_gpu.results.ProcessingResult` (not imported: results builds on this module).
ProcessingResult = Any

CONVENTIONS = "CF-1.11"
#: Where a node's velocity in the discharge comes from (the discharge table's ``Source``;
#: ``override``: set or kept by hand, :mod:`ivy_gpu.pipeline.overrides`).
NODE_SOURCES = ("measured", "excluded", "filled", "override")
#: How times are stored: seconds (with their fraction) since 1970 UTC.
TIME_ENCODING = {
    "units": "seconds since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64",
    "_FillValue": None,
}  # fmt: skip
#: Python's UTC times count no leap seconds (CF 1.11's ``units_metadata``).
TIME_ATTRS = {"units_metadata": "leap_seconds: none"}
#: ``quality_rating`` as integers in ``record.nc``.
RATINGS = ("good", "fair", "poor")


def _xarray():
    try:
        import xarray
    except ImportError:  # pragma: no cover - a core dependency
        raise ValueError("NetCDF outputs need xarray (pip install xarray h5netcdf)") from None
    return xarray


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ivy_gpu")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


def flag_bits(flags: list[str]) -> np.ndarray:
    """Each node's flags as a bitmask: bit k set when it carries ``NODE_FLAGS[k]``."""
    out = np.zeros(len(flags), np.int32)
    for k, name in enumerate(NODE_FLAGS):
        out |= np.array([name in fl.split(";") for fl in flags], bool).astype(np.int32) << k
    return out


def crs_attributes(crs: str | None) -> dict[str, Any] | None:
    """The CF grid-mapping attributes of a CRS (pyproj's), None without a CRS.

    Without pyproj the CRS is kept by name only (``spatial_ref``).
    """
    if not crs:
        return None
    try:
        from pyproj import CRS
    except ImportError:
        return {"spatial_ref": crs}
    try:
        c = CRS.from_user_input(crs)
    except Exception:  # an unknown name: kept as given  # noqa: BLE001
        return {"spatial_ref": crs}
    attrs = {k: v for k, v in c.to_cf().items() if isinstance(v, (str, int, float))}
    attrs["spatial_ref"] = crs
    return attrs


def clip_window(result: ProcessingResult) -> tuple[float, float]:
    """Start and end (s into the video) of the frames the result measured."""
    start = float(result.measurement.get("start_time_s") or 0.0)
    dt = result.timestep_seconds or 0.0
    return start, start + dt * max(result.num_frames, 0)


def clip_datetime(result: ProcessingResult, tz: _dt.tzinfo | None = None) -> _dt.datetime | None:
    """When the measured frames start (UTC), None when the video's time is unknown.

    A time without a zone is in ``tz``, else taken as UTC (:func:`naive_time`).
    """
    text = result.measurement.get("measurement_datetime")
    if not text:
        return None
    try:
        when = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz or _dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc) + _dt.timedelta(seconds=clip_window(result)[0])


def naive_time(result: ProcessingResult) -> bool:
    """True when the result's measurement time carries no zone."""
    text = result.measurement.get("measurement_datetime")
    try:
        return bool(text) and _dt.datetime.fromisoformat(str(text)).tzinfo is None
    except ValueError:
        return False


def _utc64(when: _dt.datetime) -> np.datetime64:
    return np.datetime64(when.astimezone(_dt.timezone.utc).replace(tzinfo=None), "ns")


def node_sources(result: ProcessingResult) -> list[str]:
    """Each node's ``Source`` in the discharge (measured, excluded or filled)."""
    n = len(result.stiv_magnitudes)
    table = result.discharge_dataframe
    if table is None or "Source" not in table or len(table) != n + 2:
        return ["measured" if np.isfinite(v) else "filled" for v in result.stiv_normal_velocities]
    return [str(s) for s in table["Source"].to_numpy()[1:-1]]


def _need_nodes(result: ProcessingResult) -> None:
    if result.error_message or result.stiv_magnitudes is None or result.node_positions is None:
        raise ValueError(
            f"{result.video_path}: no per-node results to export "
            "(a failed video, or a result read back from results.json: open velocities.nc)"
        )


def velocity_dataset(result: ProcessingResult, u95: float | None = None) -> xr.Dataset:
    """One video's nodes as a CF dataset (what ``velocities.nc`` holds).

    ``u95`` is the result's stated U95 (:func:`ivy_gpu.results.stated_u95`), kept in the
    global attributes.

    Raises
    ------
    ValueError
        For a failed result, or one without per-node arrays.
    """
    _need_nodes(result)
    xr = _xarray()
    n = len(result.stiv_magnitudes)
    world = result.node_world_xy is not None
    frame = "world" if world else "plan view"
    comp = result.node_velocity_xy
    if comp is None:
        comp = np.full((n, 2), np.nan)
    grid_map = crs_attributes(result.crs) if world else None
    pos = result.node_positions
    coords: dict[str, Any] = {
        "node": ("node", np.arange(n, dtype=np.int32), {"long_name": "node index"}),
        "station": (
            "node",
            np.asarray(result.node_stations, float),
            {"long_name": "distance along the cross-section from its start bank", "units": "m"},
        ),
        "x_px": ("node", pos[:, 0], {"long_name": "plan-view column", "units": "1"}),
        "y_px": ("node", pos[:, 1], {"long_name": "plan-view row", "units": "1"}),
    }
    if world:
        for k, axis in enumerate("xy"):
            attrs = {"long_name": f"world {axis.upper()} of the node (site coordinates)"}
            attrs["units"] = "m"
            if grid_map is not None:
                attrs["standard_name"] = f"projection_{axis}_coordinate"
            coords[axis] = ("node", result.node_world_xy[:, k], attrs)
        ll = lonlat(result.node_world_xy, result.crs)
        if ll is not None:
            coords["lon"] = (
                "node",
                ll[:, 0],
                {"standard_name": "longitude", "units": "degrees_east"},
            )
            coords["lat"] = (
                "node",
                ll[:, 1],
                {"standard_name": "latitude", "units": "degrees_north"},
            )
    east = "world X (eastward)" if world else "plan-view rightward"
    north = "world Y (northward)" if world else "plan-view upward"
    sources = node_sources(result)

    def var(values, long_name: str, units: str, **extra) -> tuple:
        return (
            "node",
            np.asarray(values, float),
            {"long_name": long_name, "units": units, **extra},
        )

    data = {
        "velocity_x": var(comp[:, 0], f"surface velocity, {east} component", "m s-1"),
        "velocity_y": var(comp[:, 1], f"surface velocity, {north} component", "m s-1"),
        "speed": var(result.stiv_magnitudes, "surface speed", "m s-1"),
        "direction": var(
            result.stiv_directions,
            f"direction the surface moves, clockwise from {frame} north",
            "degree",
        ),
        "normal_velocity": var(
            result.stiv_normal_velocities,
            "surface velocity normal to the section, positive downstream",
            "m s-1",
        ),
        "sigma_v": var(
            np.full(n, np.nan) if result.node_sigma_v is None else result.node_sigma_v,
            "spread of the node's normal velocity over the time windows (1 sigma)",
            "m s-1",
        ),
        "flags": (
            "node",
            flag_bits(result.node_flags or [""] * n),
            {
                "long_name": "quality flags of the node",
                "units": "1",
                "flag_masks": np.array([1 << k for k in range(len(NODE_FLAGS))], np.int32),
                "flag_meanings": " ".join(NODE_FLAGS),
            },
        ),
        "source": (
            "node",
            np.array([NODE_SOURCES.index(s) if s in NODE_SOURCES else 2 for s in sources], np.int8),
            {
                "long_name": "where the node's velocity in the discharge comes from",
                "units": "1",
                "flag_values": np.arange(len(NODE_SOURCES), dtype=np.int8),
                "flag_meanings": " ".join(NODE_SOURCES),
            },
        ),
        "clip_window": (
            "nv",
            np.array(clip_window(result)),
            {"long_name": "start and end of the frames measured, into the video", "units": "s"},
        ),
    }
    ds = xr.Dataset(data, coords=coords)
    when = clip_datetime(result)
    if when is not None:
        start, end = clip_window(result)
        t0 = _utc64(when)
        t1 = t0 + np.timedelta64(int(round((end - start) * 1e9)), "ns")
        t_attrs = {"standard_name": "time", "bounds": "time_bnds", **TIME_ATTRS}
        t_attrs["long_name"] = "start of the frames measured"
        if naive_time(result):
            t_attrs["comment"] = "the video's time has no zone: taken as UTC"
        ds = ds.assign_coords(time=("time", [t0], t_attrs))
        ds["time_bnds"] = (("time", "nv"), np.array([[t0, t1]]))
        for name in ("time", "time_bnds"):
            ds[name].encoding.update(TIME_ENCODING)
    if grid_map is not None:
        ds["crs"] = ((), np.int32(0), grid_map)
    for name in ("velocity_x", "velocity_y", "speed", "direction", "normal_velocity", "sigma_v"):
        if grid_map is not None:
            ds[name].attrs["grid_mapping"] = "crs"
    ds["speed"].attrs["ancillary_variables"] = "flags source sigma_v"
    ds.attrs = {
        "Conventions": CONVENTIONS,
        "title": f"Surface velocities of {result.video_path.name} (ivy_gpu, STIV)",
        "source": f"ivy_gpu {_version()}: Space-Time Image Velocimetry",
        "history": f"{_now()} ivy_gpu {_version()}: {result.video_path.name}",
        "video": result.video_path.name,
        "velocity_frame": frame,
        "crs": result.crs or "",
        "water_surface_elevation_m": _num(result.water_surface_elevation),
        "alpha": _num(result.alpha),
        "discharge_m3s": _num(result.total_discharge),
        "uncertainty_95": _num(u95),
        "quality_rating": result.quality_rating or "",
        "fingerprint": result.fingerprint or "",
    }
    return ds


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _num(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _json_number(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _urn(crs: str) -> str:
    """GeoJSON's (2008) name of a CRS: ``urn:ogc:def:crs:EPSG::32735`` for an EPSG code.

    A WKT or PROJ string (pyorc keeps WKT) is named by its EPSG code when pyproj finds one.
    """
    head, _, code = crs.partition(":")
    if head.upper() == "EPSG" and code.isdigit():
        return f"urn:ogc:def:crs:EPSG::{code}"
    try:
        from pyproj import CRS

        epsg = CRS.from_user_input(crs).to_epsg()
    except Exception:  # noqa: BLE001 - kept as given
        epsg = None
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs


def velocity_geojson(result: ProcessingResult) -> dict[str, Any]:
    """One video's nodes as a GeoJSON FeatureCollection of points with their vectors.

    Points are at the nodes' world X, Y, with the site's CRS as a named ``crs`` member
    (read by QGIS and GDAL); a site without a world grid gives plan-view metres from the
    plan view's top-left corner (``x`` right, ``y`` up), said in ``ivy_gpu_coordinates``.
    """
    _need_nodes(result)
    n = len(result.stiv_magnitudes)
    if result.node_world_xy is not None:
        xy = np.asarray(result.node_world_xy, float)
        frame = "world"
    else:
        gsd = result.pixel_gsd or 1.0
        xy = np.column_stack([result.node_positions[:, 0], -result.node_positions[:, 1]]) * gsd
        frame = "plan view (m from its top-left corner, y up), not geolocated"
    comp = (
        result.node_velocity_xy if result.node_velocity_xy is not None else np.full((n, 2), np.nan)
    )
    flags = result.node_flags or [""] * n
    sources = node_sources(result)
    sigma = result.node_sigma_v if result.node_sigma_v is not None else np.full(n, np.nan)
    features = []
    for k in range(n):
        props = {
            "node": k,
            "station_m": _json_number(result.node_stations[k]),
            "speed_ms": _json_number(result.stiv_magnitudes[k]),
            "direction_deg": _json_number(result.stiv_directions[k]),
            "velocity_x_ms": _json_number(comp[k, 0]),
            "velocity_y_ms": _json_number(comp[k, 1]),
            "normal_velocity_ms": _json_number(result.stiv_normal_velocities[k]),
            "sigma_v_ms": _json_number(sigma[k]),
            "flags": flags[k],
            "source": sources[k],
            "x_px": _json_number(result.node_positions[k, 0]),
            "y_px": _json_number(result.node_positions[k, 1]),
        }
        point = [float(xy[k, 0]), float(xy[k, 1])]
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": point},
                         "properties": props})  # fmt: skip
    out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if result.crs and result.node_world_xy is not None:
        out["crs"] = {"type": "name", "properties": {"name": _urn(result.crs)}}
    out["ivy_gpu_coordinates"] = frame
    out["ivy_gpu_video"] = result.video_path.name
    return out


def record_dataset(
    results: list[ProcessingResult],
    u95: list[float | None] | None = None,
    site_name: str = "site",
    gauge_discharge: list[float | None] | None = None,
    gauge_stage: list[float | None] | None = None,
    wse_sources: list[str] | None = None,
    tz: _dt.tzinfo | None = None,
    station_lonlat: tuple[float, float] | None = None,
) -> xr.Dataset:
    """A batch's discharges as a CF ``timeSeries`` of one station (what ``record.nc`` holds).

    Only completed videos with a known time are kept, in time order (``attrs`` says how
    many were left out). ``gauge_discharge`` (m³/s) and ``gauge_stage`` (m) are the gauge's
    values at each result's time, ``wse_sources`` where each WSE came from (``csv``,
    ``gauge`` or ``fixed``) and ``u95`` each result's stated U95 (fraction), all aligned
    with ``results``. Times without a zone are in ``tz``, else taken as UTC (the ``time``
    variable says so). ``station_lonlat`` places the station (the section's midpoint) for
    GIS and CF checkers: :func:`station_lonlat`.
    """
    xr = _xarray()
    when = [clip_datetime(r, tz) for r in results]
    keep = [
        k for k, r in enumerate(results)
        if r.success and r.total_discharge is not None and when[k] is not None
    ]  # fmt: skip
    keep.sort(key=lambda k: when[k])
    rs = [results[k] for k in keep]
    times = np.array([_utc64(when[k]) for k in keep], "datetime64[ns]")

    def col(values, long_name: str, units: str, **extra) -> tuple:
        return ("time", np.array(values, float), {"long_name": long_name, "units": units, **extra})

    q = np.array([r.total_discharge for r in rs], float)
    u = np.array([_num(None if u95 is None else u95[k]) for k in keep], float)
    data: dict[str, Any] = {
        "discharge": col(
            q, "discharge", "m3 s-1", standard_name="water_volume_transport_in_river_channel",
            ancillary_variables="discharge_lower_95 discharge_upper_95 uncertainty_95 "
            "quality_rating",
        ),
        "discharge_lower_95": col(q * (1 - u), "discharge, lower 95 % bound", "m3 s-1"),
        "discharge_upper_95": col(q * (1 + u), "discharge, upper 95 % bound", "m3 s-1"),
        "uncertainty_95": col(u, "expanded relative uncertainty of the discharge (95 %)", "1"),
        "area": col([_num(r.total_area) for r in rs], "wetted cross-section area", "m2"),
        "mean_velocity": col(
            [_num(r.mean_velocity) for r in rs], "mean velocity of the section", "m s-1"
        ),
        "water_surface_elevation": col(
            [_num(r.water_surface_elevation) for r in rs], "water-surface elevation", "m"
        ),
        "quality_rating": (
            "time",
            np.array([RATINGS.index(r.quality_rating) if r.quality_rating in RATINGS else -1
                      for r in rs], np.int8),  # fmt: skip
            {
                "long_name": "quality rating of the measurement",
                "units": "1",
                "flag_values": np.arange(len(RATINGS), dtype=np.int8),
                "flag_meanings": " ".join(RATINGS),
            },
        ),
        "valid_nodes": ("time", np.array([r.valid_nodes for r in rs], np.int32),
                        {"long_name": "nodes with a valid measured velocity", "units": "1"}),
        "filled_nodes": ("time", np.array([r.filled_nodes for r in rs], np.int32),
                         {"long_name": "nodes filled by interpolation", "units": "1"}),
        "video": ("time", np.array([r.video_path.name for r in rs], object),
                  {"long_name": "video file"}),
        "output_folder": ("time", np.array([_folder(r) for r in rs], object),
                          {"long_name": "the video's folder in the batch output"}),
    }  # fmt: skip
    if gauge_discharge is not None:
        data["gauge_discharge"] = col(
            [_num(gauge_discharge[k]) for k in keep], "discharge of the gauge record", "m3 s-1"
        )
    if gauge_stage is not None:
        data["gauge_stage"] = col(
            [_num(gauge_stage[k]) for k in keep], "stage of the gauge record", "m"
        )
    if wse_sources is not None:
        data["water_surface_elevation_source"] = (
            "time", np.array([wse_sources[k] for k in keep], object),
            {"long_name": "where the water-surface elevation came from (csv or gauge)"},
        )  # fmt: skip
    t_attrs = {"standard_name": "time", "long_name": "start of the frames measured", **TIME_ATTRS}
    coords: dict[str, Any] = {
        "time": ("time", times, t_attrs),
        "station_name": ((), site_name, {"long_name": "station", "cf_role": "timeseries_id"}),
    }
    if station_lonlat is not None:
        lon, lat = station_lonlat
        coords["lon"] = ((), lon, {"standard_name": "longitude", "units": "degrees_east"})
        coords["lat"] = ((), lat, {"standard_name": "latitude", "units": "degrees_north"})
    ds = xr.Dataset(data, coords=coords)
    ds["time"].encoding.update(TIME_ENCODING)
    if (ds["quality_rating"] < 0).any():  # a result without a rating: missing, not -1
        ds["quality_rating"].encoding["_FillValue"] = np.int8(-1)
    if tz is None and any(naive_time(r) for r in rs):
        ds["time"].attrs["comment"] = "times given without a zone are taken as UTC"
    ds.attrs = {
        "Conventions": CONVENTIONS,
        "featureType": "timeSeries",
        "title": f"Discharge record of {site_name} (ivy_gpu)",
        "source": f"ivy_gpu {_version()}: Space-Time Image Velocimetry",
        "history": f"{_now()} ivy_gpu {_version()}: batch record",
        "videos_left_out": len(results) - len(rs),
        "comment": "completed videos with a measurement time, in time order; failed videos "
        "and videos without a time are left out (videos_left_out)",
    }
    return ds


def lonlat(xy: np.ndarray, crs: str | None) -> np.ndarray | None:
    """Longitude and latitude (n, 2) of world points (n, 2) in ``crs``; None when unknown.

    None without a CRS, without pyproj, or for a CRS pyproj cannot place.
    """
    if not crs:
        return None
    try:
        from pyproj import CRS, Transformer

        t = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
        xy = np.asarray(xy, float).reshape(-1, 2)
        lon, lat = t.transform(xy[:, 0], xy[:, 1])
    except Exception:  # no pyproj, or a CRS it cannot place  # noqa: BLE001
        return None
    out = np.column_stack([lon, lat])
    return out if np.isfinite(out).all() else None


def _folder(result: ProcessingResult) -> str:
    return result.output_directory.name if result.output_directory is not None else ""


#: The variables of ``record.nc`` that a recompute of one video changes.
RECOMPUTED = (
    "discharge", "discharge_lower_95", "discharge_upper_95", "uncertainty_95", "area",
    "mean_velocity", "quality_rating", "valid_nodes", "filled_nodes",
)  # fmt: skip


def update_record(ds: xr.Dataset, result: ProcessingResult, u95: float | None) -> bool:
    """Put a recomputed ``result`` into its row of a loaded record (by ``output_folder``).

    Returns False when the record has no row of that folder (the video had no time, or
    failed when the batch ran): nothing is changed then.
    """
    if "output_folder" not in ds:
        return False
    rows = np.flatnonzero(ds["output_folder"].to_numpy() == _folder(result))
    if rows.size != 1 or not result.success:
        return False
    one = record_dataset([result], [u95], tz=_dt.timezone.utc)  # the values, time aside
    for name in RECOMPUTED:
        ds[name][rows[0]] = one[name].to_numpy()[0]
    ds["time"].encoding.update(TIME_ENCODING)  # as written first (read back, it would gain a fill)
    return True


def station_lonlat(xy: tuple[float, float], crs: str | None) -> tuple[float, float] | None:
    """Longitude and latitude of one world point in ``crs``, None when not known."""
    ll = lonlat(np.array([xy], float), crs)
    return None if ll is None else (float(ll[0, 0]), float(ll[0, 1]))
