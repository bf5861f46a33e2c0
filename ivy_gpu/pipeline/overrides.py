"""A hydrologist's corrections to single nodes: the overrides file.

A CSV with the columns ``node,action,velocity_ms,note`` (``velocity_ms`` and ``note`` may be
left out when no row needs them). ``node`` is the 0-based row of ``stiv_results.csv``;
``action`` is one of:

``exclude``
    Leave the node out and fill it from its neighbours, like a flagged node.
``keep``
    Use the node's measured normal velocity although a flag left it out.
``set``
    Use ``velocity_ms`` (m/s, the signed normal velocity: negative upstream) for the node.

Every problem is one ``ValueError`` line naming the file, the row (the header is row 1) and
the column. :func:`ivy_gpu.pipeline.recompute.recompute` applies the overrides.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ACTIONS = ("exclude", "keep", "set")
COLUMNS = ("node", "action", "velocity_ms", "note")
#: An overrides file is a few lines per node; a larger one is refused unread.
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Override:
    """One node's correction (see the module docstring)."""

    node: int
    action: str
    velocity_ms: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The override as ``results.json`` lists it."""
        return asdict(self)


def parse_overrides(text: str, source: str, n_nodes: int) -> list[Override]:
    """The overrides in ``text`` (the content of the file ``source``), checked against the nodes.

    Raises
    ------
    ValueError
        One line naming ``source``, the row and the column.
    """
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(rows)]
    except StopIteration:
        raise ValueError(f"{source}: empty overrides file (need the columns node,action)") from None
    except csv.Error as exc:
        raise ValueError(f"{source}: row 1: not CSV ({exc})") from None
    for col in header:
        if col not in COLUMNS:
            raise ValueError(
                f"{source}: row 1: unknown column {col!r} (the columns are {', '.join(COLUMNS)})"
            )
    for col in ("node", "action"):
        if col not in header:
            raise ValueError(f"{source}: row 1: no {col!r} column")
    if len(set(header)) != len(header):
        raise ValueError(f"{source}: row 1: a column is named twice")
    out: list[Override] = []
    seen: dict[int, int] = {}
    try:
        for line, cells in enumerate(rows, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise ValueError(f"{source}: row {line}: more cells than columns")
            cell = dict(zip(header, (c.strip() for c in cells), strict=False))
            out.append(_override(cell, source, line, n_nodes, seen))
    except csv.Error as exc:
        raise ValueError(f"{source}: row {rows.line_num}: not CSV ({exc})") from None
    return out


def _override(
    cell: dict[str, str], source: str, line: int, n_nodes: int, seen: dict[int, int]
) -> Override:
    where = f"{source}: row {line}"
    text = cell.get("node", "")
    try:
        node = int(text)
    except ValueError:
        raise ValueError(f"{where}, column node: {text!r} is not a node number") from None
    if not 0 <= node < n_nodes:
        raise ValueError(f"{where}, column node: {node} is not a node (0 to {n_nodes - 1})")
    if node in seen:
        raise ValueError(f"{where}, column node: node {node} is already set on row {seen[node]}")
    seen[node] = line
    action = cell.get("action", "").lower()
    if action not in ACTIONS:
        raise ValueError(f"{where}, column action: {action!r} is not one of {', '.join(ACTIONS)}")
    text = cell.get("velocity_ms", "")
    velocity = None
    if action == "set":
        try:
            velocity = float(text)
        except ValueError:
            raise ValueError(
                f"{where}, column velocity_ms: {text!r} is not a velocity (m/s)"
            ) from None
        if not math.isfinite(velocity) or abs(velocity) > 100.0:
            raise ValueError(f"{where}, column velocity_ms: {text!r} is not a river velocity")
    elif text:
        raise ValueError(f"{where}, column velocity_ms: only a 'set' row takes a velocity")
    return Override(node, action, velocity, cell.get("note", ""))


def read_overrides(path: str | Path, n_nodes: int) -> list[Override]:
    """Read an overrides file (UTF-8, at most :data:`MAX_BYTES`) for a video of ``n_nodes``.

    Raises
    ------
    ValueError
        One line naming the file (and the row and column when the content is wrong).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the overrides file ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path}: the overrides file is over {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the overrides file is not UTF-8 text") from None
    if "\x00" in text:
        raise ValueError(f"{path}: the overrides file is not text (NUL bytes)")
    return parse_overrides(text, str(path), n_nodes)
