"""IVyTools scaffold ``.ivy`` files: read into a :class:`ScaffoldConfig`, write back.

Domain specification, section 2. A scaffold is a ZIP holding ``project_data.json``
(many keys; unknown ones are kept but ignored), the AreaComp cross-section under
``5-discharge/`` and optionally the calibration image and GCP table under
``2-orthorectification/``. Arrays come in two encodings (a JSON string holding a
nested list, or a plain list); both are read. Inside, everything is SI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivy_gpu.fileio import atomic_output
from ivy_gpu.hydraulics.xsection import CrossSection, read_ac3
from ivy_gpu.params import SCAFFOLD_KEYS, StivParams
from ivy_gpu.scaffold.camera import CameraModel
from ivy_gpu.scaffold.lens import LensModel
from ivy_gpu.scaffold.prefilter import PreFilters
from ivy_gpu.scaffold.rectify import METHODS, RectificationParams
from ivy_gpu.scaffold.values import check_extent, check_pairs, frame_size
from ivy_gpu.units import unit_system

PROJECT_JSON = "project_data.json"
AC3_MEMBER = "5-discharge/cross_section_ac3.mat"
CALIBRATION_IMAGE = "2-orthorectification/!calibration_image.jpg"
GCP_MEMBER = "2-orthorectification/ground_control_points.csv"
REQUIRED_KEYS = ("rectification_method", "rectification_parameters", "cross_section_line")


@dataclass(frozen=True)
class ScaffoldConfig:
    """A site set-up read from an IVyTools scaffold (SI units inside).

    Attributes
    ----------
    path : Path or None
        Where it was read from.
    display_units : str
        ``"English"`` or ``"Metric"``: units of batch-CSV WSEs and of reported results.
    rectification : RectificationParams
    pixel_gsd_m : float
        Stored GSD (``pixel_ground_scale_distance_m``).
    calibration_size : (width, height) or None
        Size of the frames the calibration applies to.
    cross_section_line : ndarray, shape (2, 2)
        Line ends in rectified pixels, start bank first.
    start_bank : str
        ``"left"`` or ``"right"``.
    num_grid_points : int
    results_grid : ndarray or None
        The GUI's exact node grid, (n, 2) rectified pixels.
    mask_polygons : tuple of ndarray
    stiv : StivParams
        The STIV settings (IVyTools' keys and ivy_gpu's own, see :mod:`ivy_gpu.params`).
    cross_section : CrossSection
    rectification_rmse_m : float or None
        Recomputed from the GCPs when they are stored (each at its own Z), else the
        stored value.
    """

    path: Path | None
    display_units: str
    rectification: RectificationParams
    pixel_gsd_m: float
    calibration_size: tuple[int, int] | None
    cross_section_line: np.ndarray
    start_bank: str
    num_grid_points: int
    results_grid: np.ndarray | None
    mask_polygons: tuple[np.ndarray, ...]
    stiv: StivParams
    cross_section: CrossSection
    rectification_rmse_m: float | None
    project: dict = field(default_factory=dict, compare=False, repr=False)
    members: dict = field(default_factory=dict, compare=False, repr=False)


def decode_array(value: Any, key: str, source: str) -> np.ndarray | None:
    """Decode either array encoding (JSON string of a nested list, or a list)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{source}: key {key!r} is not a valid serialized array") from None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: key {key!r} is not a numeric array") from None


def encode_array(a: np.ndarray) -> str:
    """IVyTools' "serialized numpy array": a JSON string of the nested list."""
    return json.dumps(np.asarray(a).tolist())


def _as_number(v: Any, key: str, default: float | None, source: str) -> float | None:
    """``v`` as a float (``default`` for None), else one line naming the key."""
    if v is None:
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: key {key!r} is not a number ({repr(v)[:60]})") from None


def _whole(project: dict, key: str, default: int, source: str) -> int:
    """A count: a number with no fraction (2.5 grid points is a mistake, not 2)."""
    v = _number(project, key, default, source)
    if v != int(v):
        raise ValueError(f"{source}: key {key!r} must be a whole number, got {v!r}")
    return int(v)


def _number(project: dict, key: str, default: float, source: str) -> float:
    return _as_number(project.get(key, default), key, default, source)


def _stiv_params(project: dict, src: str) -> StivParams:
    """STIV settings from the scaffold's keys (defaults where absent)."""
    values: dict[str, object] = {}
    for name, key in SCAFFOLD_KEYS.items():
        raw = project.get(key)
        if raw is None:
            continue
        default = getattr(StivParams(), name)
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise ValueError(f"{src}: key {key!r} must be true or false ({raw!r})")
            values[name] = raw
        elif isinstance(default, str):
            values[name] = str(raw)
        else:
            values[name] = _number(project, key, default, src)
    p = int(values.get("num_pixels", StivParams().num_pixels))
    values["num_pixels"] = p + (p % 2)  # even, as the GUI forces it (spec 14.16)
    try:
        return StivParams(**values)
    except ValueError as exc:
        raise ValueError(f"{src}: STIV settings: {exc}") from None


#: Largest member read from a scaffold, and the whole archive, in bytes (a scaffold holds
#: a JSON file, a small survey and a calibration image: far below these).
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20


def _check_sizes(infos: list[zipfile.ZipInfo], src: str) -> None:
    """Refuse members whose declared size is too large, before decompressing anything."""
    total = 0
    for info in infos:
        if info.file_size > MAX_MEMBER_BYTES:
            raise ValueError(
                f"{src}: member {info.filename!r} declares {info.file_size} bytes "
                f"(limit {MAX_MEMBER_BYTES}); not a scaffold"
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"{src}: members declare {total} bytes in all (limit {MAX_TOTAL_BYTES})")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, src: str) -> bytes:
    """Read one member, at most its declared size (plus one byte to catch a lie)."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise ValueError(f"{src}: member {info.filename!r} is corrupt ({exc})") from None
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
        raise ValueError(f"{src}: member {info.filename!r} cannot be read ({exc})") from None
    if len(data) > info.file_size:
        raise ValueError(f"{src}: member {info.filename!r} is larger than it declares")
    return data


#: Type and range rules of the project keys ivy_gpu reads: key -> (kind, low, high).
SCHEMA: dict[str, tuple[str, float | None, float | None]] = {
    "rectification_method": ("str", None, None),
    "rectification_parameters": ("object", None, None),
    "display_units": ("str", None, None),
    "cross_section_start_bank": ("str", None, None),
    "pixel_ground_scale_distance_m": ("number", 1e-6, 1e3),
    "number_grid_points_along_xs_line": ("number", 1, 10000),
    "stiv_num_pixels": ("number", 4, 4096),
    "stiv_phi_origin": ("number", -3600, 3600),
    "stiv_phi_range": ("number", 0, 180),
    "stiv_dphi": ("number", 1e-3, 180),
    "stiv_max_vel_threshold_mps": ("number", 1e-6, 1e3),
    "stiv_gaussian_blur_sigma": ("number", 0, 100),
    "rectification_rmse_m": ("number", 0, 1e6),
    "mask_polygons": ("list", None, None),
    "ffmpeg_parameters": ("object", None, None),
    "video_metadata": ("object", None, None),
    "is_ortho_flip_x": ("bool", None, None),
    "is_ortho_flip_y": ("bool", None, None),
}


def check_schema(project: dict, src: str) -> None:
    """Check the types and ranges of the keys ivy_gpu reads; one line naming the key."""
    for key, (kind, low, high) in SCHEMA.items():
        value = project.get(key)
        if value is None:
            continue
        where = f"{src}: key {key!r}"
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where} must be a number, got {type(value).__name__}")
            if not math.isfinite(value) or not (low <= value <= high):
                raise ValueError(
                    f"{where} must be a finite number in [{low:g}, {high:g}], got {value!r}"
                )
        elif kind == "str" and not isinstance(value, str):
            raise ValueError(f"{where} must be text, got {type(value).__name__}")
        elif kind == "object" and not isinstance(value, dict):
            raise ValueError(f"{where} must be an object, got {type(value).__name__}")
        elif kind == "list" and not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        elif kind == "bool" and not isinstance(value, (bool, int)):
            raise ValueError(f"{where} must be true or false, got {type(value).__name__}")
    meta = project.get("video_metadata") or {}
    for dim in ("width", "height"):
        v = meta.get(dim)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not (1 <= v <= 100000)
        ):
            raise ValueError(
                f"{src}: key 'video_metadata.{dim}' must be a size in pixels, got {v!r}"
            )


def _polygon(a: np.ndarray, src: str, key: str = "mask_polygons") -> np.ndarray:
    a = np.asarray(a, float)
    if a.size % 2 or a.size < 6:
        raise ValueError(f"{src}: key {key!r} must hold polygons of 3 or more (x, y) pairs")
    if not np.isfinite(a).all():
        raise ValueError(f"{src}: key {key!r} holds a NaN or infinite coordinate")
    return a.reshape(-1, 2)


def _find_ac3(names: list[str]) -> str | None:
    if AC3_MEMBER in names:
        return AC3_MEMBER
    mats = [n for n in names if n.lower().endswith(".mat")]
    for n in mats:
        if n.startswith("5-discharge/") and "cross" in Path(n).name.lower():
            return n
    return mats[0] if mats else None


def _crs(value: Any, where: str) -> str | None:
    """``rectification_parameters.crs`` (ivy_gpu's own): a CRS name or definition, or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 4000:
        raise ValueError(f"{where}.crs must be a CRS name such as 'EPSG:32735', got {value!r:.60}")
    return value


def _rectification(project: dict, source: str) -> RectificationParams:
    method = project.get("rectification_method")
    if method not in METHODS:
        raise ValueError(
            f"{source}: rectification_method {method!r} is not one of {', '.join(METHODS)}"
        )
    rp = project.get("rectification_parameters")
    if not isinstance(rp, dict):
        raise ValueError(f"{source}: rectification_parameters must be a dict")

    def arr(key: str) -> np.ndarray | None:
        return decode_array(rp.get(key), f"rectification_parameters.{key}", source)

    wse = rp.get("water_surface_elev", rp.get("water_surface_elevation"))
    lens = rp.get("lens_model")
    where = f"{source}: rectification_parameters"
    cell = _number(rp, "cell_size_m", 0.0, where) or None
    if cell is not None and not (1e-4 <= cell <= 100):  # NaN fails too
        raise ValueError(
            f"{where}.cell_size_m must be a cell size in metres in [0.0001, 100], got {cell!r}"
        )
    params = RectificationParams(
        method=method,
        camera_matrix=arr("camera_matrix"),
        homography=arr("homography_matrix"),
        extent=arr("extent"),
        pixel_coords=arr("pixel_coords"),
        world_coords=arr("world_coords"),
        calibration_wse_m=_as_number(wse, "water_surface_elev", None, where),
        pad_x=_as_number(rp.get("pad_x") or 0, "pad_x", 0.0, where),
        pad_y=_as_number(rp.get("pad_y") or 0, "pad_y", 0.0, where),
        flip_x=bool(project.get("is_ortho_flip_x", False)),
        flip_y=bool(project.get("is_ortho_flip_y", False)),
        prefilters=PreFilters.from_ffmpeg_parameters(project.get("ffmpeg_parameters"), source),
        lens=None
        if lens is None
        else LensModel.from_dict(lens, f"{source}: rectification_parameters.lens_model"),
        cell_size_m=cell,
        world_extent=arr("world_extent"),
        crs=_crs(rp.get("crs"), where),
    )
    for key in ("world_extent", "extent"):
        check_extent(getattr(params, key), f"{where}.{key}")
    if method == "camera matrix":
        if params.camera_matrix is None or params.camera_matrix.shape != (3, 4):
            raise ValueError(f"{source}: rectification_parameters.camera_matrix must be 3x4")
        if params.extent is None:
            raise ValueError(
                f"{source}: rectification_parameters.extent must be [x_min, x_max, y_min, y_max]"
            )
        m = params.camera_matrix
        if not np.isfinite(m).all():
            raise ValueError(f"{where}.camera_matrix holds NaN or infinite values")
        if np.linalg.matrix_rank(m[:, :3]) < 3:
            raise ValueError(
                f"{where}.camera_matrix: not a camera (its 3x3 part is singular: no "
                "viewing direction)"
            )
    check_pairs(params, where)
    return params


def load_scaffold(path: str | Path) -> ScaffoldConfig:
    """Read an IVyTools ``.ivy`` scaffold.

    Raises
    ------
    ValueError
        One line naming the file and the problem: not a ZIP, no ``project_data.json``,
        invalid JSON, missing keys, unknown units or method, no cross-section.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ValueError(f"{src}: scaffold file not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{src}: not a ZIP archive (an IVyTools .ivy scaffold is a ZIP)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            names = [i.filename for i in infos]
            if PROJECT_JSON not in names:
                raise ValueError(f"{src}: archive has no {PROJECT_JSON}")
            _check_sizes(infos, src)
            raw = {
                i.filename: _read_member(zf, i, src)
                for i in infos
                if not i.filename.endswith(".dat")
            }
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{src}: not a readable ZIP archive ({exc})") from None
    try:
        project = json.loads(raw.pop(PROJECT_JSON).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{src}: {PROJECT_JSON} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{src}: {PROJECT_JSON} nests too deep to be a project") from None
    members = raw
    if not isinstance(project, dict):
        raise ValueError(f"{src}: {PROJECT_JSON} does not hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if project.get(k) is None]
    if missing:
        raise ValueError(f"{src}: {PROJECT_JSON} is missing required keys: {', '.join(missing)}")
    check_schema(project, src)
    units = unit_system(project.get("display_units", "Metric"), f"{src}: display_units").name
    rect = _rectification(project, src)

    line = decode_array(project["cross_section_line"], "cross_section_line", src)
    if line is None or line.size != 4:
        raise ValueError(f"{src}: cross_section_line must hold two (x, y) points")
    line = line.reshape(2, 2)
    if not (np.isfinite(line).all() and np.abs(line).max() < 1e7):
        raise ValueError(
            f"{src}: cross_section_line must be two finite (x, y) points in rectified pixels, "
            f"got {[[float(f'{v:.6g}') for v in p] for p in line.tolist()]}"
        )

    grid = decode_array(project.get("results_grid"), "results_grid", src)
    if grid is not None and grid.size % 2:
        raise ValueError(
            f"{src}: key 'results_grid' must hold (x, y) pairs, got {grid.size} numbers"
        )
    if grid is not None and grid.size:
        grid = grid.reshape(-1, 2)
    else:
        grid = None
    masks = tuple(
        _polygon(decode_array(m, "mask_polygons", src), src)
        for m in (project.get("mask_polygons") or [])
        if m is not None
    )
    stable = project.get("stabilization_polygon")
    if stable is not None:
        try:
            _polygon(np.asarray(stable, float), src, "stabilization_polygon")
        except (TypeError, ValueError) as exc:
            said = str(exc) if str(exc).startswith(src) else ""
            raise ValueError(
                said or f"{src}: key 'stabilization_polygon' must be a list of (x, y) points"
            ) from None

    ac3_name = _find_ac3(list(members))
    if ac3_name is None:
        raise ValueError(f"{src}: archive holds no cross-section .mat (expected {AC3_MEMBER})")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mat_path = Path(tmp) / Path(ac3_name).name
            mat_path.write_bytes(members[ac3_name])
            try:
                section = read_ac3(mat_path)
            except ValueError as exc:
                raise ValueError(f"{src}: {ac3_name}: {str(exc).split(': ', 1)[-1]}") from None
    except OSError as exc:  # a full or size-limited temporary disk (ENOSPC, EFBIG)
        raise ValueError(
            f"{src}: {ac3_name}: cannot unpack to a temporary file ({exc.strerror or exc})"
        ) from None
    # name the scaffold, not the temporary copy, in later messages (a WSE above a bank...)
    section = dataclasses.replace(section, source=f"{src}: {ac3_name}")

    size = frame_size(project, members.get(CALIBRATION_IMAGE), src, CALIBRATION_IMAGE)

    rmse = _as_number(project.get("rectification_rmse_m"), "rectification_rmse_m", None, src)
    if (
        rect.method == "camera matrix"
        and rect.world_coords is not None
        and rect.pixel_coords is not None
        and len(rect.world_coords) >= 6
    ):
        picked = rect.pixel_coords if rect.lens is None else rect.lens.undistort(rect.pixel_coords)
        rmse = CameraModel(rect.camera_matrix).rmse_m(rect.world_coords, picked)

    stiv = _stiv_params(project, src)
    bank = str(project.get("cross_section_start_bank", "left")).lower()
    if bank not in ("left", "right"):
        raise ValueError(f"{src}: cross_section_start_bank must be 'left' or 'right', got {bank!r}")
    return ScaffoldConfig(
        path=path,
        display_units=units,
        rectification=rect,
        pixel_gsd_m=_number(project, "pixel_ground_scale_distance_m", 0.01, src),
        calibration_size=size,
        cross_section_line=line,
        start_bank=bank,
        num_grid_points=_whole(project, "number_grid_points_along_xs_line", 25, src),
        results_grid=grid,
        mask_polygons=masks,
        stiv=stiv,
        cross_section=section,
        rectification_rmse_m=rmse,
        project=project,
        members=members,
    )


def as_scaffold(scaffold: str | Path | ScaffoldConfig) -> ScaffoldConfig:
    """A :class:`ScaffoldConfig` as given, or loaded from a path."""
    return scaffold if isinstance(scaffold, ScaffoldConfig) else load_scaffold(scaffold)


def write_scaffold(path: str | Path, project: dict, members: dict[str, bytes]) -> None:
    """Write a scaffold ZIP atomically (temporary file, then rename)."""
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(PROJECT_JSON, json.dumps(dict(sorted(project.items())), indent=2))
        for name, data in sorted(members.items()):
            zf.writestr(name, data)


def save_scaffold(config: ScaffoldConfig, path: str | Path) -> None:
    """Write ``config`` as an ``.ivy`` scaffold that IVyTools' loader layout accepts.

    The typed fields overwrite their keys in the original project dictionary; every
    other key and archive member is kept as read.
    """
    project = {k: v for k, v in config.project.items() if k not in SCAFFOLD_KEYS.values()}
    r = config.rectification
    rp = dict(project.get("rectification_parameters") or {})
    for key, value in (
        ("camera_matrix", r.camera_matrix),
        ("homography_matrix", r.homography),
        ("extent", r.extent),
        ("pixel_coords", r.pixel_coords),
        ("world_coords", r.world_coords),
        ("world_extent", r.world_extent),
    ):
        if value is not None:
            rp[key] = np.asarray(value).tolist()
    if r.lens is not None:
        rp["lens_model"] = r.lens.to_dict()
    if r.cell_size_m is not None:
        rp["cell_size_m"] = r.cell_size_m
    if r.crs is not None:
        rp["crs"] = r.crs
    if r.calibration_wse_m is not None:
        rp["water_surface_elev"] = r.calibration_wse_m
    project.update(
        {
            "rectification_method": r.method,
            "rectification_parameters": rp,
            "is_ortho_flip_x": r.flip_x,
            "is_ortho_flip_y": r.flip_y,
            "display_units": config.display_units,
            "pixel_ground_scale_distance_m": config.pixel_gsd_m,
            "cross_section_line": encode_array(config.cross_section_line.reshape(1, 2, 2)),
            "cross_section_start_bank": config.start_bank,
            "number_grid_points_along_xs_line": config.num_grid_points,
            **config.stiv.to_scaffold(),
            "rectification_rmse_m": config.rectification_rmse_m,
            "mask_polygons": [encode_array(m) for m in config.mask_polygons] or None,
        }
    )
    if config.results_grid is not None:
        project["results_grid"] = encode_array(config.results_grid)
    if config.calibration_size is not None:  # the frame size the tables need, kept
        meta = dict(project.get("video_metadata") or {})
        meta["width"], meta["height"] = (int(v) for v in config.calibration_size)
        project["video_metadata"] = meta
    members = dict(config.members)
    if not any(n.lower().endswith(".mat") for n in members):
        from ivy_gpu.hydraulics.xsection import write_ac3

        buf = Path(tempfile.mkdtemp()) / "cross_section_ac3.mat"
        write_ac3(buf, config.cross_section)
        members[AC3_MEMBER] = buf.read_bytes()
    write_scaffold(path, project, members)
