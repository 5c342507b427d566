"""Modules import downward: the import graph of ``src/groveflow`` has no cycle.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
groveflow module, at module level and inside functions alike (a function-local import that
dodges a cycle still is one), except those under ``if TYPE_CHECKING:`` (never run). Importing
a module runs its packages' ``__init__`` first, so an import of ``groveflow.catalog._places``
from outside ``groveflow.catalog`` is an edge to ``groveflow.catalog`` too; a package's own
modules importing each other are not edges to it (its ``__init__`` is already running).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "groveflow"


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` at ``line`` (inside a function when ``local``)."""

    importer: str
    imported: str
    line: int
    local: bool

    def __str__(self) -> str:
        where = "in a function" if self.local else "at module level"
        return f"{self.importer} -> {self.imported} (line {self.line}, {where})"


def modules(root: Path = SOURCE) -> dict[str, tuple[Path, bool]]:
    """Every module of the package: its dotted name -> (its file, whether it is a package)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The groveflow names one module imports, each with its line and whether in a function."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.found: list[tuple[str, int, bool]] = []
        self._depth = 0

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            parts = parts if self.is_package else parts[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:  # `from groveflow import storage` names a module
            self.found.append((f"{base}.{alias.name}", node.lineno, self._depth > 0))


def _owner(name: str, known: dict[str, tuple[Path, bool]]) -> str | None:
    """The module ``name`` is, or is in (``groveflow.request.parse_data``: the module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _ancestors(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def import_graph(root: Path = SOURCE) -> dict[str, list[Edge]]:
    """Each module's edges to the other groveflow modules it imports (and their packages)."""
    known = modules(root)
    graph: dict[str, list[Edge]] = {}
    for module, (path, is_package) in known.items():
        visitor = _Imports(module, is_package)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        own = {module, *_ancestors(module)}
        edges = []
        for name, line, local in visitor.found:
            target = _owner(name, known) if name.split(".")[0] == PACKAGE else None
            if target is None:
                continue
            for imported in (*_ancestors(target), target):
                edge = Edge(module, imported, line, local)
                if imported not in own and imported in known and edge not in edges:
                    edges.append(edge)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm, then
    a shortest way back to the group's first module), as the edges that close it."""
    tarjan = _Tarjan(graph)
    for module in sorted(graph):
        if module not in tarjan.index:
            tarjan.visit(module)
    return [_cycle_in(graph, group) for group in tarjan.groups]


class _Tarjan:
    """Strongly connected groups of more than one module."""

    def __init__(self, graph: dict[str, list[Edge]]) -> None:
        self.graph = graph
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.groups: list[set[str]] = []

    def visit(self, module: str) -> None:
        self.index[module] = self.low[module] = len(self.index)
        self.stack.append(module)
        for edge in self.graph.get(module, []):
            if edge.imported not in self.index:
                self.visit(edge.imported)
                self.low[module] = min(self.low[module], self.low[edge.imported])
            elif edge.imported in self.stack:
                self.low[module] = min(self.low[module], self.index[edge.imported])
        if self.low[module] == self.index[module]:
            self._pop_group(module)

    def _pop_group(self, root: str) -> None:
        group = set()
        while True:
            member = self.stack.pop()
            group.add(member)
            if member == root:
                break
        if len(group) > 1:
            self.groups.append(group)


def _cycle_in(graph: dict[str, list[Edge]], group: set[str]) -> list[Edge]:
    start = min(group)
    paths: dict[str, list[Edge]] = {start: []}
    frontier = [start]
    while frontier:  # breadth first, inside the group, back to start
        following = []
        for module in frontier:
            for edge in graph[module]:
                if edge.imported not in group:
                    continue
                if edge.imported == start:
                    return [*paths[module], edge]
                if edge.imported not in paths:
                    paths[edge.imported] = [*paths[module], edge]
                    following.append(edge.imported)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_the_import_graph_has_no_cycle() -> None:
    # GIVEN the import graph of src/groveflow, read from the source
    graph = import_graph()
    # WHEN its cycles are looked for
    found = cycles(graph)
    # THEN there is none; each found is printed edge by edge
    listing = "\n\n".join("\n".join(f"  {edge}" for edge in cycle) for cycle in found)
    assert not found, f"{len(found)} import cycle(s) in src/groveflow:\n{listing}"


def test_the_graph_sees_function_imports_and_skips_type_checking(tmp_path: Path) -> None:
    # GIVEN a package whose modules import each other in a function, a TYPE_CHECKING block
    # and through a subpackage's private module
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from groveflow import high\n"
        "def f():\n"
        "    from groveflow.sub._inner import g\n"
    )
    (package / "high.py").write_text("from groveflow.low import f\n")
    (package / "sub" / "__init__.py").write_text("from groveflow.sub._inner import g\n")
    (package / "sub" / "_inner.py").write_text("from . import _other\ng = 1\n")
    (package / "sub" / "_other.py").write_text("from ..high import x\n")
    # WHEN its graph and cycles are read
    graph = import_graph(tmp_path)
    found = cycles(graph)
    # THEN the function's import is an edge, to the subpackage too; the TYPE_CHECKING one is
    # not; relative imports resolve; and the one cycle is printed with its lines
    assert {str(e) for e in graph["groveflow.low"]} == {
        "groveflow.low -> groveflow.sub (line 5, in a function)",
        "groveflow.low -> groveflow.sub._inner (line 5, in a function)",
    }
    assert [str(e) for e in graph["groveflow.sub._inner"]] == [
        "groveflow.sub._inner -> groveflow.sub._other (line 1, at module level)"
    ]
    assert len(found) == 1
    assert [e.imported for e in found[0]][-1] == found[0][0].importer
    assert {e.importer for e in found[0]} == {
        "groveflow.high",
        "groveflow.low",
        "groveflow.sub._inner",
        "groveflow.sub._other",
    }
