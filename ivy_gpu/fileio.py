"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The file gets the permissions of a normally created file (0666 less the
    umask). On an exception the temporary file is removed and ``path`` is left
    as it was, so readers never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


#: Names this package gives the temporaries of :func:`atomic_output`: ``.<file>.<8>.tmp``,
#: the 8 characters being :func:`tempfile.mkstemp`'s.
_TEMPORARY = r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp"


def our_temporary(name: str, targets: Iterable[str]) -> bool:
    """Whether ``name`` is a temporary that :func:`atomic_output` made for one of ``targets``."""
    m = re.fullmatch(_TEMPORARY, name)
    return m is not None and m.group("name") in set(targets)


def folder_name(stem: str, fallback: str, reserved: Iterable[str] = ()) -> str:
    """A safe name for a folder made from a file stem, inside an output folder.

    ``.``, ``..``, names with a path separator or a control character, and hidden names
    (a leading dot) cannot become a folder that escapes its parent or hides: the stem is
    cleaned, and ``fallback`` used when nothing is left. A name in ``reserved`` (the files
    the program writes beside the folders), compared case-insensitively, gets ``_`` appended.
    """
    name = "".join("_" if (c in "/\\" or ord(c) < 32) else c for c in stem).strip()
    name = name.lstrip(".").strip()
    if not name or set(name) <= {".", " "}:
        name = fallback
    taken = {r.lower() for r in reserved}
    while name.lower() in taken:
        name += "_"
    return name


#: A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """A text cell a spreadsheet will show, not run: a leading quote before ``= + - @``.

    OWASP's advice for CSV injection. Numbers (``-0.05``) are left as they are.
    """
    if not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_cell_text(value: str) -> str:
    """The text of a cell written by :func:`csv_cell` (its protecting quote removed)."""
    if value[:1] == "'" and value[1:2] and value[1] in _FORMULA_START:
        return value[1:]
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, what: str = "file") -> object:
    """Parse a JSON file; a one-line ``ValueError`` naming the file when it cannot be read."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the {what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: the {what} nests too deep to be JSON we wrote") from None
