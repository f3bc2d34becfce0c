"""pydevts_quic's modules form layers: no import cycle, and one home for aioquic's internals.

Read from the source (``ast``), not by importing it: every import counts,
``if TYPE_CHECKING:`` ones and those inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pydevts_quic

PACKAGE = "pydevts_quic"
SOURCE = Path(pydevts_quic.__file__).parent
#: The one module allowed to touch aioquic's private attributes and modules.
COMPAT = "_aioquic"
#: Private attributes of aioquic that pydevts_quic uses (see _aioquic.py).
AIOQUIC_PRIVATE = {
    "_buffer_start",
    "_buffer_stop",
    "_close_event",
    "_encode_invalid_token_close",
    "_local_max_data",
    "_logger",
    "_loss",
    "_pto_count",
    "_streams",
}
#: Names pydevts_quic gives aioquic objects (``quic._x``, ``self.quic._x``): any private attribute counts.
AIOQUIC_OBJECTS = {"quic", "probe", "sender", "stream", "loss"}


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(SOURCE.glob("*.py"))}


def imported_modules(name: str, tree: ast.Module) -> set[str]:
    """The pydevts_quic modules that module ``name`` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ``from .x import y`` or ``from . import x``
                base = node.module
                targets = [f"{PACKAGE}.{base}"] if base else [f"{PACKAGE}.{a.name}" for a in node.names]
            else:
                targets = [node.module or ""]
                targets += [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and parts[1] != name:
                found.add(parts[1])
    return found


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imported_modules(name, tree) & trees.keys() for name, tree in trees.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for following in sorted(edges.get(node, ())):
            cycle = visit(following, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_graph_is_read_from_the_source() -> None:
    edges = graph()
    assert {"connection", "endpoint", "transport", COMPAT} <= edges.keys()
    assert {"connection", "endpoint", "udp", "tls"} <= edges["transport"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_modules_import_each_other_without_a_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_connection_does_not_import_the_endpoint() -> None:
    edges = graph()
    assert "endpoint" not in edges["connection"]  # it sees the endpoint as a Driver (a protocol)
    assert "connection" in edges["endpoint"]


def test_the_aioquic_compatibility_module_is_the_bottom_layer() -> None:
    assert graph()[COMPAT] == set()


def name_of(node: ast.expr) -> str:
    """``x`` for ``x`` and for ``a.b.x``; else ""."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def private_aioquic_uses(tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules, names = [a.name for a in node.names], []
        elif isinstance(node, ast.ImportFrom):
            modules, names = [node.module or ""], [a.name for a in node.names]
        elif isinstance(node, ast.Attribute):
            owner = name_of(node.value)
            if node.attr in AIOQUIC_PRIVATE or (
                owner.lstrip("_") in AIOQUIC_OBJECTS and node.attr.startswith("_") and node.attr[1] != "_"
            ):
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
            continue
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars":
            if any(name_of(arg).lstrip("_") in AIOQUIC_OBJECTS for arg in node.args):
                found.append(f"line {node.lineno}: vars(...)")  # aioquic's instance dict
            continue
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "aioquic":
                if any(part.startswith("_") for part in module.split(".")):
                    found.append(f"line {node.lineno}: import of {module}")
                found += [f"line {node.lineno}: import of {module}.{n}" for n in names if n.startswith("_")]
    return found


def test_only_the_compatibility_module_touches_aioquic_internals() -> None:
    trees = modules()
    assert private_aioquic_uses(trees[COMPAT]), "the check below no longer sees anything"
    touches = {
        name: uses for name, tree in trees.items() if name != COMPAT and (uses := private_aioquic_uses(tree))
    }
    assert not touches, f"aioquic internals outside {COMPAT}.py: {touches}"
