"""No import cycles in the product's packages: neither between modules nor between the
operator's subpackages (api, builders, challenge, gating, promsource, handlers, ...).

Read from the source with `ast`, nothing is imported. Imports inside functions count (a deferred
import only hides a cycle); imports under `if TYPE_CHECKING:` do not (annotations only).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "modelops_operator": ROOT / "operator" / "modelops_operator",
    "modelops_serving": ROOT / "serving" / "modelops_serving",
}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        for statement in node.orelse:
            yield from _imports(statement)
        return
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _imports(child)


def module_graph() -> dict[str, set[str]]:
    """Who imports whom, with the packages whose `__init__` an import runs first."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, (path, is_package) in known.items():
        own = name.split(".")
        ancestors = {".".join(own[:i]) for i in range(1, len(own) + 1)}
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    here = own if is_package else own[:-1]
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                           for a in node.names]  # fmt: skip
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    imported = ".".join(parts[:i])
                    if imported in known and imported not in ancestors:
                        graph[name].add(imported)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        return list(error.args[1])
    return None


def test_no_cycle_between_modules() -> None:
    assert cycle(module_graph()) is None


def test_no_cycle_between_the_operators_subpackages() -> None:
    def layer(name: str) -> str:
        return ".".join(name.split(".")[:2])

    layers: dict[str, set[str]] = {}
    for name, imported in module_graph().items():
        if name.startswith("modelops_operator."):
            layers.setdefault(layer(name), set()).update(
                layer(other) for other in imported if layer(other) != layer(name)
            )
    assert cycle(layers) is None


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"a"}}, {"a", "b"}), ({"a": {"b"}, "b": set()}, None)],
)
def test_cycle_finds_one(graph: dict[str, set[str]], expected: set[str] | None) -> None:
    found = cycle(graph)
    assert (set(found) if found else None) == expected
