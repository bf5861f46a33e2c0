"""``report.html``: one self-contained page per batch (no network; opens from a file).

It holds the discharge record over measurement time with its 95 % uncertainty (ISO
748), the gauge record beside it when one is given (with the relative difference of
every video), a table of the videos (status, discharge, quality, stage of failure),
and per video the vectors over the rectified frame, the section, the STIs of the
best, median and worst-scoring nodes and the warnings. Everything is read back from
the batch folder (``batch_summary.csv``, each video's ``results.json`` and figures),
so ``ivy-gpu report OUT_DIR`` rebuilds it without reprocessing.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ivy_gpu.fileio import atomic_write_text, csv_cell_text, read_json
from ivy_gpu.log import IvyGpuWarning
from ivy_gpu.report.figures import FIGURES
from ivy_gpu.report.record import MAX_GAUGE_GAP_S, gauge_at, parse_zone, read_gauge
from ivy_gpu.report.review import REVIEW
from ivy_gpu.results import stated_u95
from ivy_gpu.units import describe_row, format_value, unit_system

REPORT = "report.html"
#: Videos given a detailed section (failed ones first, then the largest gauge differences,
#: then batch order); the others are in the table only, so a page of 5000 videos stays light.
DETAIL_LIMIT = 200


@dataclass
class VideoEntry:
    """One video of the report."""

    name: str
    folder: Path | None
    status: str
    discharge_m3s: float | None = None
    u95: float | None = None
    when: _dt.datetime | None = None
    quality: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    gauge_m3s: float | None = None
    detail: str = ""


def _float(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _when(text: str, tz: _dt.tzinfo | None) -> _dt.datetime | None:
    if not text:
        return None
    t = pd.Timestamp(text).to_pydatetime()
    return t.replace(tzinfo=tz) if t.tzinfo is None and tz is not None else t


def _row_detail(row: pd.Series, units: str) -> str:
    """What tells a summary row apart (:func:`ivy_gpu.units.describe_row`)."""
    ft = row.get("water_surface_elevation_ft") if units == "English" else None
    wse = _float(ft) if ft else _float(row.get("water_surface_elevation_m"))
    return describe_row(
        wse, "ft" if ft else "m", _float(row.get("start_time_s")),
        _float(row.get("end_time_s")), row.get("comments"), row.get("wse_source"),
    )  # fmt: skip


def collect(out_dir: Path, tz: _dt.tzinfo | None) -> tuple[list[VideoEntry], str]:
    """The videos of a batch folder, in CSV order, and the site's display units."""
    summary = out_dir / "batch_summary.csv"
    entries: list[VideoEntry] = []
    units = "Metric"
    if summary.is_file():
        try:
            frame = pd.read_csv(summary, dtype=str, keep_default_na=False).map(csv_cell_text)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ValueError(f"{summary}: not a readable batch summary ({exc})") from None
        if "video_path" not in frame.columns or "status" not in frame.columns:
            raise ValueError(f"{summary}: not a batch summary (no video_path and status columns)")
        if "discharge_cfs" in frame.columns:
            units = "English"
        for _, row in frame.iterrows():
            folder = out_dir / row["output_folder"] if row.get("output_folder") else None
            stage, msg = row.get("error_stage", ""), row.get("error_message", "")
            name = Path(row["video_path"]).name
            if row.get("output_folder") and row["output_folder"] != Path(name).stem:
                name += f" ({row['output_folder']})"  # a repeated video: which row
            entries.append(
                VideoEntry(
                    name=name,
                    folder=folder,
                    status=row["status"],
                    discharge_m3s=_float(row.get("discharge_m3s")),
                    u95=_float(row.get("uncertainty_95") or row.get("uncertainty_iso_95")),
                    when=_when(row.get("measurement_datetime", ""), tz),
                    quality=(
                        (f"{row['quality_rating']}: " if row.get("quality_rating") else "")
                        + f"{row['valid_nodes']} valid / {row['filled_nodes']} filled / "
                        f"{row['flagged_nodes']} flagged" if row.get("valid_nodes") else ""
                    ) + (
                        f" / {row['overrides']} overridden by hand"
                        if row.get("overrides") else ""
                    ),
                    error=f"{stage}: {msg}" if stage else msg,
                    warnings=[w for w in row.get("warnings", "").split(" | ") if w],
                    detail=_row_detail(row, units),
                )
            )  # fmt: skip
        return entries, units
    for res in sorted(out_dir.glob("*/results.json")):  # a folder of single runs
        data = read_json(res, "result")
        if not isinstance(data, dict):
            raise ValueError(f"{res}: not a results.json (not a JSON object)")
        units = data.get("display_units", units)
        meas = data.get("measurement") or {}
        ok = data.get("status") == "completed"
        entries.append(
            VideoEntry(
                name=Path(data.get("video_path", res.parent.name)).name,
                folder=res.parent,
                status=data.get("status", "failed"),
                discharge_m3s=data.get("discharge_m3s") if ok else None,
                u95=stated_u95(
                    {"u95": data.get("uncertainty_95"), "iso_u95": data.get("uncertainty_iso_95")}
                )
                if ok
                else None,
                when=_when(meas.get("measurement_datetime") or "", tz),
                quality=(f"{data['quality_rating']}: " if data.get("quality_rating") else "")
                + f"{data.get('valid_nodes')} valid / {data.get('filled_nodes')} filled / "
                f"{data.get('flagged_nodes')} flagged"
                if ok
                else "",
                error="" if ok else f"{data.get('error_stage')}: {data.get('error_message')}",
                warnings=list(data.get("warnings") or []),
            )
        )
    if not entries:
        raise ValueError(f"{out_dir}: no batch_summary.csv and no results.json to report on")
    return entries, units


def _data_uri(png: Path, max_width: int = 1100, jpeg: bool = True) -> str | None:
    """An inline image (JPEG for the per-video figures, to keep big batches' pages small)."""
    img = cv2.imread(str(png), cv2.IMREAD_COLOR) if png.is_file() else None
    if img is None:
        return None
    h, w = img.shape[:2]
    if w > max_width:
        img = cv2.resize(img, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        kind = "jpeg"
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def record_figure(
    entries: list[VideoEntry], gauge: pd.DataFrame | None, units: str, path: Path
) -> Path:
    """Discharge over measurement time (or video order) with U95 bars, and the gauge."""
    from ivy_gpu.report.figures import _figure, _save

    u = unit_system(units)
    fig = _figure(10, 4.2)
    ax = fig.subplots()
    done = [e for e in entries if e.discharge_m3s is not None]
    timed = bool(done) and all(e.when is not None for e in done)
    if timed:
        x = [pd.Timestamp(e.when) for e in done]
        ax.set_xlabel(
            "measurement time" + (f" ({done[0].when.tzname()})" if done[0].when.tzinfo else "")
        )
    else:
        x = [entries.index(e) + 1 for e in done]
        ax.set_xlabel("video (batch order)")
    q = np.array([e.discharge_m3s for e in done], float) * u.discharge
    err = np.array([(e.u95 or 0.0) for e in done]) * q
    if done:
        ax.errorbar(x, q, yerr=err, fmt="o", color="crimson", ms=5, capsize=3,
                    label="ivy_gpu STIV (stated U95)")  # fmt: skip
    if timed:  # a lone video or a short batch gets an hour or so around it, not years
        lo, hi = min(x), max(x)
        pad = max((hi - lo) * 0.1, pd.Timedelta(minutes=30))
        ax.set_xlim(lo - pad, hi + pad)
        zone = done[0].when.tzinfo
        if gauge is not None and not gauge.empty and zone is not None:
            pad = max((hi - lo) * 0.1, pd.Timedelta(hours=2))
            g = gauge[(gauge["time"] >= lo - pad) & (gauge["time"] <= hi + pad)]
            if not g.empty:
                ax.plot(g["time"].dt.tz_convert(zone), g["discharge_m3s"] * u.discharge, "-",
                        color="steelblue", lw=1.2, label="gauge")  # fmt: skip
    ax.set_ylabel(f"discharge ({u.discharge_label})")
    ax.grid(alpha=0.3)
    if done:
        ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path)


def build_report(
    out_dir: str | Path,
    gauge: str | Path | None = None,
    tz: str | None = None,
    gauge_units: str = "m3/s",
) -> Path:
    """Write ``OUT_DIR/report.html`` from the saved results of a batch (or single runs).

    Parameters
    ----------
    out_dir : path
        A batch output folder (``batch_summary.csv`` and one folder per video).
    gauge : path, optional
        A gauge record (NWIS RDB or ``time,value`` CSV, see :mod:`ivy_gpu.report.record`).
    tz : str, optional
        Zone of measurement times that carry none (default: the gauge file's zone).
    gauge_units : {"m3/s", "cfs"}
        Units of a plain CSV gauge whose header does not say.

    Raises
    ------
    ValueError
        One line: nothing to report on, or an unreadable gauge record.
    """
    out = Path(out_dir)
    zone = parse_zone(tz) if tz else None
    g = None
    if gauge is not None:
        g = read_gauge(gauge, zone, "cfs" if gauge_units == "cfs" else "m3/s")
        zone = zone or g.attrs["zone"]
    entries, units = collect(out, zone)
    u = unit_system(units)
    if g is not None:
        for e in entries:
            e.gauge_m3s = gauge_at(g, e.when)
        timed = [e for e in entries if e.when is not None]
        if timed and all(e.gauge_m3s is None for e in timed):
            warnings.warn(
                f"{gauge}: no gauge value within {MAX_GAUGE_GAP_S / 3600:.0f} h of any "
                "measurement time: check the record's dates and zone (--tz)",
                IvyGpuWarning,
                stacklevel=2,
            )
    rec = record_figure(entries, g, units, out / ".report_record.png")
    record_uri = _data_uri(rec, 1400, jpeg=False)
    rec.unlink(missing_ok=True)
    done = [e for e in entries if e.discharge_m3s is not None]
    diffs = [(e.discharge_m3s / e.gauge_m3s - 1) for e in done if e.gauge_m3s]
    ql = u.discharge_label
    rows = []
    for k, e in enumerate(entries, 1):
        q = format_value(None if e.discharge_m3s is None else e.discharge_m3s * u.discharge, ".4g")
        gq = format_value(None if e.gauge_m3s is None else e.gauge_m3s * u.discharge, ".4g")
        rd = (
            format_value(100 * (e.discharge_m3s / e.gauge_m3s - 1), "+.1f")
            if e.discharge_m3s and e.gauge_m3s
            else ""
        )
        when = e.when.isoformat(sep=" ") if e.when else ""
        rows.append(
            f'<tr class="{html.escape(e.status)}"><td>{k}</td>'
            f'<td><a href="#v{k}">{html.escape(e.name)}</a>'
            + (f"<br><small>{html.escape(e.detail)}</small>" if e.detail else "")
            + f"</td><td>{html.escape(when)}</td>"
            f"<td>{html.escape(e.status)}</td><td class=num>{q}</td>"
            f"<td class=num>{format_value(None if e.u95 is None else 100 * e.u95, '.1f')}</td>"
            f"<td class=num>{gq}</td><td class=num>{rd}</td><td>{html.escape(e.quality)}</td>"
            f"<td>{html.escape(e.error)}</td><td class=num>{len(e.warnings) or ''}</td></tr>"
        )

    def priority(k: int) -> tuple:
        e = entries[k]
        d = abs(e.discharge_m3s / e.gauge_m3s - 1) if e.discharge_m3s and e.gauge_m3s else 0.0
        return (e.status == "completed", -d, k)

    detailed = set(sorted(range(len(entries)), key=priority)[:DETAIL_LIMIT])
    sections = []
    for k, e in enumerate(entries, 1):
        if k - 1 not in detailed:
            continue
        figs = []
        for fname, caption in FIGURES:
            uri = _data_uri(e.folder / fname) if e.folder is not None else None
            if uri:
                figs.append(
                    f'<figure><img alt="{caption}" src="{uri}"><figcaption>{caption}'
                    "</figcaption></figure>"
                )
        if e.folder is not None and (e.folder / REVIEW).is_file():
            link = html.escape(f"{e.folder.name}/{REVIEW}")
            figs.append(f'<p><a href="{link}">review every node of this video</a></p>')
        warn = "".join(f"<li>{html.escape(w)}</li>" for w in e.warnings)
        head = (
            f"Q = {e.discharge_m3s * u.discharge:.4g} {ql}" if e.discharge_m3s is not None
            else f"failed at {html.escape(e.error)}"
        )  # fmt: skip
        sections.append(
            f'<section class="video" id="v{k}"><h3>{k}. {html.escape(e.name)}: {head}</h3>'
            + (f"<p>{html.escape(e.detail)}</p>" if e.detail else "")
            + (f"<ul class=warnings>{warn}</ul>" if warn else "")
            + "".join(figs)
            + "</section>"
        )
    stats = f"{len(done)} of {len(entries)} videos completed"
    if diffs:
        stats += (
            f"; against the gauge: median difference {100 * np.median(diffs):+.1f} %, "
            f"{len(diffs)} videos compared"
        )
    gauge_note = f"Gauge: {html.escape(Path(gauge).name)}. " if gauge else ""
    if len(detailed) < len(entries):
        gauge_note += (
            f"Per-video detail for {len(detailed)} of {len(entries)} videos (failed ones and "
            "the largest gauge differences first). "
        )
    page = _PAGE.format(
        title=html.escape(f"ivy_gpu batch report: {out.resolve().name}"),
        stats=html.escape(stats),
        record=f'<img id="record" alt="discharge record" src="{record_uri}">' if record_uri else "",
        gauge_note=gauge_note,
        made=html.escape(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
        ql=html.escape(ql),
        rows="\n".join(rows),
        sections="\n".join(sections),
    )
    path = out / REPORT
    atomic_write_text(path, page)
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; }} h3 {{ font-size: 1.05em; margin-top: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ background: #eef; cursor: pointer; }} td.num {{ text-align: right; }}
tr.failed td {{ background: #fdecea; }}
img {{ max-width: 100%; }} #record {{ max-width: 1100px; }}
figure {{ display: inline-block; margin: 0.3em; vertical-align: top; max-width: 48%; }}
figcaption {{ font-size: 0.8em; color: #555; }}
ul.warnings {{ color: #8a5a00; font-size: 0.85em; }}
</style></head>
<body>
<h1>{title}</h1>
<p id="stats">{stats}</p>
<h2>Discharge record</h2>
{record}
<p class="note">{gauge_note}Bars: the stated 95 % uncertainty (ISO 748 with the time
sampling of each clip). Made {made}.</p>
<h2>Videos</h2>
<table id="videos"><thead><tr><th>#</th><th>video</th><th>measured</th><th>status</th>
<th>Q ({ql})</th><th>U95 (%)</th><th>gauge Q ({ql})</th><th>difference (%)</th>
<th>nodes</th><th>failure</th><th>warnings</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Per video</h2>
{sections}
<script>
(function () {{
  var table = document.getElementById("videos");
  var heads = table.tHead.rows[0].cells;
  for (var i = 0; i < heads.length; i++) {{
    heads[i].addEventListener("click", (function (col) {{
      return function () {{
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = table.dataset.sort !== String(col);
        rows.sort(function (a, b) {{
          var x = a.cells[col].textContent, y = b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
          return asc ? c : -c;
        }});
        rows.forEach(function (r) {{ body.appendChild(r); }});
        table.dataset.sort = asc ? String(col) : "";
      }};
    }})(i));
  }}
  document.body.dataset.ready = "1";
}})();
</script>
</body></html>
"""
