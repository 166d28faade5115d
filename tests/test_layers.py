"""The import direction, read from the source: `rpa.cli` on top; `rpa.show` renders what it is
given (it never opens the queue nor drives a run); only the CLI imports Typer; only the CLI and
`rpa.show` import Rich; nothing but `python -m rpa` imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "rpa"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (`from rpa import x`
    counts as `rpa.x` too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _importers(target: str) -> set[str]:
    return {m for m, imported in MODULES.items() if any(_within(i, target) for i in imported)}


def test_the_modules_are_found() -> None:
    assert {"rpa.cli", "rpa.show.live", "rpa.report", "rpa.run.runner"} <= set(MODULES)


@pytest.mark.parametrize("forbidden", ["rpa.queue", "rpa.queue.store", "rpa.run.runner"])
def test_the_display_never_opens_the_queue_nor_drives_a_run(forbidden: str) -> None:
    show = {m for m in MODULES if _within(m, "rpa.show")}
    assert not {m for m in show if forbidden in MODULES[m]}


@pytest.mark.parametrize("above", ["rpa.cli", "rpa.report"])
def test_the_display_imports_nothing_above_it(above: str) -> None:
    assert not {m for m in _importers(above) if _within(m, "rpa.show")}


def test_only_the_cli_imports_typer() -> None:
    assert {m for m in _importers("typer") if not _within(m, "rpa.cli")} == set()


def test_only_the_cli_and_the_display_import_rich() -> None:
    outside = {m for m in _importers("rich") if not _within(m, "rpa.cli")}
    assert {m for m in outside if not _within(m, "rpa.show")} == set()


def test_nothing_but_the_entry_point_imports_the_cli() -> None:
    assert {m for m in _importers("rpa.cli") if not _within(m, "rpa.cli")} == {"rpa.__main__"}


#: the packages from the top down; a module may import only from its own package or a lower
#: one (the ground floor's modules among themselves in this order too)
LAYERS = [
    ["rpa.__main__"],
    ["rpa.cli"],
    ["rpa.report"],
    ["rpa.show"],
    ["rpa.run", "rpa.stages"],
    ["rpa.extract"],
    ["rpa.sources"],
    ["rpa.hosts"],
    ["rpa.queue"],
    ["rpa.layout", "rpa.gates", "rpa.notices", "rpa.units", "rpa.hints"],
    ["rpa.config", "rpa.files", "rpa.metrics"],
    ["rpa.idlist"],
    ["rpa.ids", "rpa.machine", "rpa.classify", "rpa.rates", "rpa.dbname"],
    ["rpa.errors"],
    ["rpa.printable"],
]


def _layer(name: str) -> int | None:
    for depth, packages in enumerate(LAYERS):
        if any(_within(name, p) for p in packages):
            return depth
    return None


def test_imports_only_point_down_the_layers() -> None:
    upward = []
    for module, imported in MODULES.items():
        here = _layer(module)
        if here is None or _within(module, "rpa.testing"):
            continue
        for name in imported:
            there = _layer(name)
            if there is not None and there < here:
                upward.append(f"{module} -> {name}")
    assert upward == []


def test_every_core_module_has_a_layer() -> None:
    core = {m for m in MODULES if m not in ("rpa",) and not _within(m, "rpa.testing")}
    assert {m for m in core if _layer(m) is None} == set()


def test_no_module_is_over_the_size_the_structure_aims_for() -> None:
    """~400 lines a module (the test helpers under rpa/testing are not the product)."""
    sizes = {
        _module_name(p): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
        if "testing" not in p.parts
    }
    assert {m: n for m, n in sizes.items() if n > 410} == {}


def test_no_import_cycle() -> None:
    graph = {m: {i for i in imported if i in MODULES and i != m} for m, imported in MODULES.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {m: {i for i in deps if not _within(m, i)} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
