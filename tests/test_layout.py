"""The layout holds: no import circle between modules or between packages, no module over 600
lines. Imports under ``if TYPE_CHECKING:`` do not count; the one upward edge allowed is
``Topology.run`` starting a launcher (``rayflow.api.topology`` -> ``rayflow.launchers``)."""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rayflow"
MAX_LINES = 600
ALLOWED_UPWARD = {("rayflow.api.topology", "rayflow.launchers")}


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The rayflow modules ``name`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target.startswith("rayflow") and target != name:
            found.add(target)
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _room(module: str, packages: set[str]) -> str:
    """The package a module is in (``rayflow.runtime.task.core`` -> ``rayflow.runtime.task``); a
    module on the ground floor (``rayflow.keys``) is a room of its own."""
    parent = module.rpartition(".")[0]
    return module if module in packages or parent == "rayflow" else parent


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_import_circle_between_packages() -> None:
    """Packages nest (``rayflow.runtime.io`` is one, ``rayflow.runtime`` another): a package's
    ``__init__`` may import its own children, and nothing imports a parent's ``__init__``."""
    packages = {m for m, path in _modules().items() if path.name == "__init__.py"}
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in _graph().items():
        for target in targets:
            edge = (_room(module, packages), _room(target, packages))
            if (
                edge[0] != edge[1]
                and not edge[1].startswith(edge[0] + ".")  # a package gathering its children
                and (module, _top(target)) not in ALLOWED_UPWARD
            ):
                rooms[edge[0]].add(edge[1])
    assert _cycles(rooms) == []


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT.parent)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_task_core_has_no_mixins() -> None:
    """The core keeps the loop and delegates to collaborators that own their state."""
    from rayflow.runtime.task.core import TaskCore

    assert TaskCore.__bases__ == (object,)


def test_the_scan_finds_a_circle() -> None:
    """The checker itself: a circle of three is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []
