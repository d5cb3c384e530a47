"""The package's import structure: no import cycles, and the layers contract of pyproject.toml holds.

A cycle makes modules impossible to read, test or move on their own, and "fixing" one with an import inside a
function only hides it: grimp reads every import statement, wherever it sits (also under TYPE_CHECKING), so
both count here. The layers themselves (../shared/ARCHITECTURE.md) are import-linter's `layers` contract;
running `lint-imports` here makes `pytest` alone enough to catch a layer violation.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

PACKAGE = "fulqrun_ml"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports directly."""
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def package_edges(edges: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between top-level subpackages (fulqrun_ml.data, ...); imports inside one are dropped."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {top(m): set() for m in edges}
    for importer, imported in edges.items():
        packages[top(importer)].update(top(i) for i in imported if top(i) != top(importer))
    return packages


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of nodes that reach each other (size > 1 only)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def describe_cycle(graph: grimp.ImportGraph, group: list[str]) -> str:
    """One concrete cycle through the group, with the line of every import on it."""
    first = group[0]
    second = min(m for m in graph.find_modules_directly_imported_by(first) if m in group)
    chain = [first, *(graph.find_shortest_chain(importer=second, imported=first) or ())]
    hops = []
    for importer, imported in itertools.pairwise(chain):
        details = graph.get_import_details(importer=importer, imported=imported)
        line = details[0]["line_number"] if details else "?"
        hops.append(f"    {importer} (l.{line}) -> {imported}")
    return f"  cycle among {group}:\n" + "\n".join(hops)


def test_no_import_cycle_between_modules(graph: grimp.ImportGraph) -> None:
    cycles = strongly_connected(module_edges(graph))
    assert not cycles, "import cycles inside the package:\n" + "\n".join(describe_cycle(graph, g) for g in cycles)


def test_no_import_cycle_between_packages(graph: grimp.ImportGraph) -> None:
    edges = module_edges(graph)
    cycles = strongly_connected(package_edges(edges))
    details = []
    for group in cycles:
        crossing = sorted(
            f"    {importer} -> {imported}"
            for importer, imported_set in edges.items()
            for imported in imported_set
            if ".".join(importer.split(".")[:2]) in group
            and ".".join(imported.split(".")[:2]) in group
            and ".".join(importer.split(".")[:2]) != ".".join(imported.split(".")[:2])
        )
        details.append(f"  packages {group} import each other:\n" + "\n".join(crossing))
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(details)


def test_cycle_finder_finds_a_planted_cycle() -> None:
    """The finder itself: a three-module loop and a two-module loop are found, a chain is not."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert strongly_connected(edges) == [["d", "e"], ["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_contracts_hold() -> None:
    """`lint-imports` over pyproject.toml: the layers contract and the forbidden external imports."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
