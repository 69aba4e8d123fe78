"""The import graph of `openseed`, read from the source with `ast` (imports inside functions included): no cycle
between modules or between packages, `openseed/utils` a leaf, and the top layer (benchmarks, command lines, demo)
imported by nothing below it. See docs/architecture.md for the layers."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "openseed"
TOP_LAYER = ("openseed.benchmarks", "openseed.commands", "openseed.demo")


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` under `root` (a package's `__init__.py` is the package)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Absolute dotted names `module` imports (relative imports resolved; `from a import b` gives `a` and `a.b`)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def module_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the `openseed` modules it imports (a name that is not a module counts as its longest module prefix)."""

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in modules.items():
        graph[module] = {owner(n) for n in imported_names(module, path) if n.split(".")[0] == "openseed"} - {module, ""}
    return graph


def package_of(module: str, modules: dict[str, Path]) -> str:
    """The folder a module's file sits in, as a dotted name; a module directly in `openseed/` is its own node."""
    folder = ".".join(modules[module].parent.relative_to(PACKAGE_ROOT.parent).parts)
    return module if folder == "openseed" else folder


def package_graph(modules: dict[str, Path]) -> dict[str, dict[str, list[str]]]:
    """Package -> {imported package: ["a -> b" module imports behind the edge]}. A package's `__init__` importing its
    own sub-modules (its public face) is no edge: Python imports a parent before its children anyway."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, targets in module_graph(modules).items():
        for target in targets:
            if modules[module].name == "__init__.py" and target.startswith(module + "."):
                continue
            source_package, target_package = package_of(module, modules), package_of(target, modules)
            if source_package != target_package:
                edges[source_package][target_package].append(f"{module} -> {target}")
    return edges


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle of the directed graph as [a, b, ..., a], or [] when it has none (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return module_files()


def test_the_reader_resolves_relative_and_nested_imports(tmp_path):
    source = tmp_path / "synthetic.py"
    source.write_text("from ..paths import datasets_root\nfrom . import common\n\n"
                      "def f():\n    from openseed.data import paths\n    import torch\n")
    assert imported_names("openseed.data.registration.synthetic", source) == {
        "openseed.data.paths", "openseed.data.paths.datasets_root", "openseed.data.registration",
        "openseed.data.registration.common", "openseed.data", "torch"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_between_modules(modules):
    assert find_cycle(module_graph(modules)) == []


def test_no_import_cycle_between_packages(modules):
    edges = package_graph(modules)
    cycle = find_cycle(edges)
    behind = [line for a, b in zip(cycle, cycle[1:]) for line in edges[a][b]]
    assert not cycle, f"packages import each other: {' -> '.join(cycle)}, through {behind}"


def test_utils_imports_nothing_else_of_openseed(modules):
    outside = sorted(f"{m} -> {t}" for m, targets in module_graph(modules).items() if m.startswith("openseed.utils")
                     for t in targets if not t.startswith("openseed.utils"))
    assert outside == []


def test_nothing_below_the_top_layer_imports_it(modules):
    def on_top(name: str) -> bool:
        return any(name == top or name.startswith(top + ".") for top in TOP_LAYER)

    upward = sorted(f"{m} -> {t}" for m, targets in module_graph(modules).items() if not on_top(m)
                    for t in targets if on_top(t))
    assert upward == []
