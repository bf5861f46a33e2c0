"""The house rules of the package layout (docs/architecture.md).

Every module of the installed package (cli and benchmarks included) is parsed; every import
counts, lazy ones inside functions too: a part imports only the parts allowed below, no module
imports itself back through others, few modules stay at the top, none is over 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ivy_gpu
import ivy_gpu.benchmarks
import ivy_gpu.cli
import ivy_gpu.kernels

CORE = "core"
#: part -> the parts it may import (core is always allowed); docs/architecture.md's table
ALLOWED = {
    CORE: set(),
    "kernels": set(),
    "hydraulics": {"kernels"},
    "scaffold": {"kernels", "hydraulics"},
    "engines": {"kernels", "scaffold"},
    "stiv": {"kernels", "engines"},
    "frames": {"kernels", "hydraulics", "scaffold", "engines", "stiv"},
    "report": set(),
    "synthetic": {"kernels", "hydraulics", "scaffold"},
    "pipeline": {"kernels", "hydraulics", "scaffold", "engines", "stiv", "frames", "report"},
    "site": {"kernels", "hydraulics", "scaffold", "engines", "stiv", "frames", "report"},
}
ALLOWED["benchmarks"] = set(ALLOWED) - {CORE}
ALLOWED["cli"] = set(ALLOWED) - {CORE}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the installed package."""
    roots = {
        "ivy_gpu": Path(ivy_gpu.__file__).parent,
        "ivy_gpu.kernels": Path(ivy_gpu.kernels.__file__).parent,
        "ivy_gpu.cli": Path(ivy_gpu.cli.__file__).parent,
        "ivy_gpu.benchmarks": Path(ivy_gpu.benchmarks.__file__).parent,
    }
    mods = {}
    for pkg, root in roots.items():
        for f in root.rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and t != "ivy_gpu":
                found.add(t)
    return found


def _part(name: str) -> str:
    """``ivy_gpu.<part>...`` -> part; a module directly in ``ivy_gpu`` -> core."""
    bits = name.split(".")
    return bits[1] if len(bits) > 1 and bits[1] in ALLOWED else CORE


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def test_every_part_imports_only_the_parts_below_it():
    graph = _graph()
    assert {_part(m) for m in graph} == set(ALLOWED), "a part is missing from the rules"
    upward = sorted(
        f"{a} -> {b}"
        for a, deps in graph.items()
        for b in deps
        if _part(b) not in ALLOWED[_part(a)] | {CORE, _part(a)}
    )
    assert not upward, "imports against docs/architecture.md's table:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*path[path.index(d) :], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_top_stays_small_and_modules_stay_readable():
    mods = _modules()
    top = sorted(m for m in mods if _part(m) == CORE)
    assert len(top) <= 10, top
    long = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_the_rules_see_a_planted_upward_import(tmp_path):
    """The checker itself: an upward import and a cycle in a made-up module are found."""
    mods = {
        "ivy_gpu.hydraulics.grid": tmp_path / "grid.py",
        "ivy_gpu.pipeline.batch": tmp_path / "b.py",
    }
    mods["ivy_gpu.hydraulics.grid"].write_text("def f():\n    from ivy_gpu.pipeline import batch\n")
    mods["ivy_gpu.pipeline.batch"].write_text("from ..hydraulics.grid import f\n")
    grid = _imports("ivy_gpu.hydraulics.grid", mods["ivy_gpu.hydraulics.grid"], mods)
    batch = _imports("ivy_gpu.pipeline.batch", mods["ivy_gpu.pipeline.batch"], mods)
    assert grid == {"ivy_gpu.pipeline.batch"} and batch == {"ivy_gpu.hydraulics.grid"}
    assert "pipeline" not in ALLOWED[_part("ivy_gpu.hydraulics.grid")]
