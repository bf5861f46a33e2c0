"""The discharge record of a batch: when each video was taken, and the gauge beside it.

Measurement times come from the batch CSV (``measurement_date`` and
``measurement_time``, ISO 8601; an offset such as ``-05:00`` is honoured), or, when
the CSV gives no time of day, from a ``YYYYMMDD-HHMMSS`` stamp in the video's name
(the USGS camera convention, e.g. ``03337000_bullet_20170630-115500.mp4``). Times
without a zone are taken in the zone given (``--tz``), else in the gauge record's.

Gauge records: USGS NWIS RDB / tab-separated files (``datetime`` and ``tz_cd``
columns, a discharge column in cfs such as ``Discharge_cfs`` or ``..._00060``, a gage
height column in feet such as ``..._00065``), or a plain ``time,value`` CSV (ISO times;
the value's unit from its header: ``discharge_cfs``, ``discharge_m3s`` (m³/s otherwise);
``stage_m``, ``stage_ft``, ``gage_height_ft`` (metres otherwise)). One file may hold both:
the discharge for the report, the stage for the water level of rows without one
(:func:`stage_lookup`).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ivy_gpu.units import FT_PER_M

#: US time-zone codes of NWIS files, as UTC offsets (hours).
TZ_CODES = {
    "UTC": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7,
    "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "AST": -4, "ADT": -3,
    # common abbreviations elsewhere (fixed offsets; IANA names carry daylight saving)
    "WAT": 1, "CAT": 2, "EAT": 3, "SAST": 2, "WET": 0, "WEST": 1, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "BST": 1, "MSK": 3, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11,
    "ACST": 9.5, "AWST": 8, "NZST": 12, "NZDT": 13,
}  # fmt: skip
#: Largest gap (s) between gauge values that is interpolated across.
MAX_GAUGE_GAP_S = 3 * 3600.0
_STAMP = re.compile(r"(?<!\d)(\d{8})[-_T]?(\d{6})(?!\d)")


def parse_zone(text: str | None) -> _dt.tzinfo | None:
    """A zone from ``UTC``, ``CST`` (NWIS codes), ``-05:00`` or an IANA name."""
    if text is None or not str(text).strip():
        return None
    t = str(text).strip()
    if t.upper() in TZ_CODES:
        return _dt.timezone(_dt.timedelta(hours=TZ_CODES[t.upper()]), t.upper())
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", t)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        return _dt.timezone(sign * _dt.timedelta(minutes=minutes))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(t)
    except Exception:
        raise ValueError(
            f"time zone: {t!r} is not UTC, an NWIS code, an offset or a zone name"
        ) from None


def name_stamp(video_path: str | Path | None) -> str | None:
    """The ``YYYYMMDDHHMMSS`` of a ``YYYYMMDD-HHMMSS`` stamp in a video's name, or None."""
    m = _STAMP.search(Path(video_path).stem) if video_path is not None else None
    return None if m is None else m.group(1) + m.group(2)


def measurement_datetime(
    cfg, video_path: str | Path | None = None, tz: _dt.tzinfo | None = None
) -> _dt.datetime | None:
    """When a video was taken (see the module docstring), or None when nothing says."""
    date = (getattr(cfg, "measurement_date", None) or "").strip()
    time = (getattr(cfg, "measurement_time", None) or "").strip()
    stamp = name_stamp(video_path)
    when = None
    if date and time:
        when = pd.Timestamp(f"{date} {time}")
    elif stamp is not None:
        when = pd.Timestamp(pd.to_datetime(stamp, format="%Y%m%d%H%M%S"))
        if date and pd.Timestamp(date).date() != when.date():
            when = pd.Timestamp(date)  # the CSV's date wins over a name that disagrees
    elif date:
        when = pd.Timestamp(date)
    if when is None:
        return None
    out = when.to_pydatetime()
    if out.tzinfo is None and tz is not None:
        out = out.replace(tzinfo=tz)
    return out


def measurement_of(cfg) -> dict:
    """The batch CSV's metadata of a video, and its measurement time (ISO 8601), if any."""
    when = measurement_datetime(cfg, getattr(cfg, "video_path", None))
    out = {
        "measurement_number": cfg.measurement_number,
        "measurement_date": cfg.measurement_date,
        "measurement_time": cfg.measurement_time,
        "measurement_datetime": None if when is None else when.isoformat(),
        "gage_height": cfg.gage_height,
        "comments": cfg.comments,
        "start_time_s": cfg.start_time,
        "end_time_s": cfg.end_time,
    }
    return {k: v for k, v in out.items() if v is not None}


def _units_factor(name: str, default: str) -> tuple[float, str]:
    n = name.lower()
    if "cfs" in n or "00060" in n or "ft3" in n:
        return 1.0 / FT_PER_M**3, "cfs"
    if "m3s" in n or "cms" in n or "m3/s" in n or "m³/s" in n:
        return 1.0, "m3/s"
    return (1.0 / FT_PER_M**3, "cfs") if default == "cfs" else (1.0, "m3/s")


#: Header words of a stage (gage height) column; NWIS gage height is parameter 00065, in feet.
_STAGE_WORDS = ("00065", "stage", "gage_height", "gauge_height", "gh_")
_DISCHARGE_WORDS = ("00060", "discharge", "cfs", "m3s", "cms", "flow")


def _value_column(low: list[str], skip: set[str], quantity: str) -> int | None:
    """The column of ``quantity`` (``discharge`` or ``stage``) among the headers ``low``."""
    cands = [i for i, h in enumerate(low) if h not in skip and not h.endswith("_cd")]
    is_stage = [any(w in low[i] for w in _STAGE_WORDS) for i in cands]
    if quantity == "stage":
        return next((i for i, s in zip(cands, is_stage, strict=True) if s), None)
    named = [i for i in cands if any(w in low[i] for w in _DISCHARGE_WORDS)]
    if named:
        return named[0]
    return next((i for i, s in zip(cands, is_stage, strict=True) if not s), None)


def _stage_factor(name: str) -> float:
    """Metres per unit of a stage column: feet for NWIS 00065 and ``_ft`` headers."""
    n = name.lower()
    return 1.0 / FT_PER_M if ("00065" in n or "ft" in n or "feet" in n) else 1.0


def read_gauge(
    path: str | Path,
    tz: _dt.tzinfo | None = None,
    units: str = "m3/s",
    quantity: str = "discharge",
) -> pd.DataFrame:
    """A gauge record as a frame with ``time`` (UTC) and ``discharge_m3s``, sorted.

    With ``quantity="stage"`` the frame has ``stage_m`` instead: the file's gage height
    column (see the module docstring), in metres.

    Times without a zone are in ``tz``, else in the zone of the file's first NWIS
    ``tz_cd`` code, which ``attrs["zone"]`` also gives (None without one): the zone of
    measurement times that carry none.

    Raises
    ------
    ValueError
        One line naming the file: unreadable, no time or value column, unknown zone.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the gauge record ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the gauge record is not a UTF-8 text file") from None
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    if len(lines) < 2:
        raise ValueError(f"{path}: the gauge record has no data rows")
    sep = "\t" if "\t" in lines[0] else ","
    header = [h.strip() for h in lines[0].split(sep)]
    body = lines[1:]
    first_line = 2  # of the data (comments aside)
    if body and re.fullmatch(r"(\d+[sdnSDN]\s*)+", body[0].replace(sep, " ").strip()):
        body, first_line = body[1:], 3  # the RDB format line (5s 15s 20d ...)
    rows = [ln.split(sep) for ln in body]
    low = [h.lower() for h in header]
    t_col = next(
        (i for i, h in enumerate(low) if h in ("datetime", "time", "date_time", "timestamp")), None
    )
    if t_col is None:
        t_col = 0
    skip = {"agency_cd", "site_no", "datetime", "tz_cd", header[t_col].lower()}
    v_col = _value_column(low, skip, quantity)
    if v_col is None:
        what = (
            "stage (gage height) column such as stage_m or ..._00065"
            if quantity == "stage"
            else "value column"
        )
        raise ValueError(f"{path}: the gauge record has no {what}")
    if quantity == "stage":
        factor = _stage_factor(header[v_col])
    else:
        factor, _ = _units_factor(header[v_col], units)
    z_col = low.index("tz_cd") if "tz_cd" in low else None
    first_zone = None  # the zone of the first row with a tz_cd: for rows and times without
    zones: dict[str, _dt.tzinfo | None] = {}

    def zone_of(code: str, line: int) -> _dt.tzinfo | None:
        """A row's ``tz_cd`` (an NWIS code, an abbreviation or an IANA name), or one line."""
        if code not in zones:
            try:
                zones[code] = parse_zone(code)
            except ValueError:
                raise ValueError(
                    f"{path}: line {line}: tz_cd {code!r} is not a zone ivy_gpu knows (an NWIS "
                    "code, UTC, an offset like +02:00 or an IANA name like Africa/Lusaka)"
                ) from None
        return zones[code]

    if z_col is not None:
        first = next(
            (
                (k, r[z_col].strip())
                for k, r in enumerate(rows, first_line)
                if len(r) > z_col and r[z_col].strip()
            ),
            None,
        )
        first_zone = zone_of(first[1], first[0]) if first else None
    tz = tz if tz is not None else first_zone
    times, values = [], []
    for k, r in enumerate(rows, start=first_line):
        try:
            v = float(r[v_col])
        except (ValueError, IndexError):
            continue  # NWIS marks missing values with codes (Ice, Eqp, ...)
        try:
            t = pd.Timestamp(r[t_col].strip())
        except (ValueError, IndexError):
            raise ValueError(
                f"{path}: line {k}: {r[t_col] if len(r) > t_col else ''!r} is not a time"
            ) from None
        code = r[z_col].strip() if z_col is not None and len(r) > z_col else ""
        zone = zone_of(code, k) if code else tz
        if t.tzinfo is None:
            if zone is None:
                raise ValueError(f"{path}: times without a zone; give the gauge's zone (--tz)")
            t = t.tz_localize(zone)
        times.append(t.tz_convert("UTC"))
        values.append(v * factor)
    if not times:
        raise ValueError(f"{path}: the gauge record has no numeric values")
    column = "stage_m" if quantity == "stage" else "discharge_m3s"
    out = pd.DataFrame({"time": pd.DatetimeIndex(times), column: values})
    out = out.sort_values("time", kind="stable").reset_index(drop=True)
    out.attrs["zone"] = first_zone
    return out


def gauge_at(gauge: pd.DataFrame, when: _dt.datetime | None) -> float | None:
    """The gauge's value (m³/s, or m for a stage) at ``when`` (linear in time; None across gaps)."""
    if when is None or when.tzinfo is None or gauge.empty:
        return None
    t = pd.Timestamp(when).tz_convert("UTC").value  # ns since the epoch
    ns = pd.DatetimeIndex(gauge["time"]).as_unit("ns").asi8
    q = gauge[gauge.columns[1]].to_numpy(float)
    i = int(np.searchsorted(ns, t))
    if i < len(ns) and ns[i] == t:
        return float(q[i])
    if i == 0 or i == len(ns) or (ns[i] - ns[i - 1]) / 1e9 > MAX_GAUGE_GAP_S:
        return None
    w = (t - ns[i - 1]) / (ns[i] - ns[i - 1])
    return float(q[i - 1] + w * (q[i] - q[i - 1]))


StageLookup = Callable[[Any, Path], "tuple[float | None, str]"]


def stage_lookup(path: str | Path, datum_m: float, tz: _dt.tzinfo | None = None) -> StageLookup:
    """``lookup(row, video_path) -> (wse_m, why)``: a row's WSE from the gauge's stage.

    WSE = stage + ``datum_m`` (the gauge datum's elevation in the site's vertical system),
    at the row's measurement time (:func:`measurement_datetime`); ``(None, why)`` when the
    row has no time or the record no stage near it.

    Raises
    ------
    ValueError
        The record cannot be read or has no stage column (one line naming the file).
    """
    gauge = read_gauge(path, tz, quantity="stage")
    zone = tz if tz is not None else gauge.attrs.get("zone")

    def lookup(row: Any, video_path: Path) -> tuple[float | None, str]:
        when = measurement_datetime(row, video_path, zone)
        if when is None:
            return None, (
                "empty, and no measurement time to read the gauge at (measurement_date and "
                "measurement_time, or a YYYYMMDD-HHMMSS stamp in the video's name)"
            )
        if when.tzinfo is None:
            return None, f"empty, and {when.isoformat()} has no zone (give --tz)"
        stage = gauge_at(gauge, when)
        if stage is None:
            return None, (
                f"empty, and {path} has no stage within {MAX_GAUGE_GAP_S / 3600:g} h "
                f"around {when.isoformat()}"
            )
        return stage + float(datum_m), ""

    return lookup
