"""The core's modules form layers: nothing imported while loading a module imports it back.

Read from the source (``ast``), not by importing it, subpackages included. The graph
counts the imports that run when a module is loaded: ``if TYPE_CHECKING:`` imports
(annotations only) and imports inside functions (run later, on a call) are left out.

The folders are the layers, in this order (:data:`LAYERS`); a module may import, at load
time, its own layer and the layers before it, never a later one:

1. ``vocabulary``: the top-level modules every layer uses (``errors``, ``address``,
   ``fields``, ``members``, ``headers``, ``settings``, ``limits``, ``protocols``, ...);
2. ``plugins`` (the plugin system); 3. ``observe`` (the hooks plugins implement, trace ids);
4. ``wire`` (framing, messages, handshake, links); 5. ``swim`` (failure detection);
6. ``routing`` (the router API, the link host); 7. ``cluster`` (joining, membership views);
8. ``node`` (the node, its dispatch, its system handlers, the client);
9. ``testing``; 10. ``cli``; 11. ``api``: the package's face (``pydevts/__init__``,
   ``__main__``, ``replicated``).

An import of a later layer is allowed only under ``if TYPE_CHECKING:`` (annotations,
e.g. ``wire.linkinfo`` naming ``Link`` is fine, ``observe.hooks`` naming ``Node`` is
too) or inside a function (run on a call, once everything is loaded).

:class:`~pydevts.address.Address` lives in :mod:`pydevts.address`, which imports nothing
of pydevts, so that :mod:`pydevts.wire` and :mod:`pydevts.settings` need not import
:mod:`pydevts.protocols` (whose ``TYPE_CHECKING`` imports name ``Link`` and ``Hello``)
for it; :mod:`pydevts.protocols` re-exports it. The bounded field parsers
(``id_field``, ``tags_field``, ...) live in :mod:`pydevts.fields` (vocabulary) for the
same reason: :mod:`pydevts.wire` and :mod:`pydevts.settings` use them, and
:mod:`pydevts.swim.wire` re-exports them.

Cycles that remain once ``TYPE_CHECKING`` imports are counted too (harmless at run
time), e.g. ``wire.link -> protocols -> wire.link`` (``Router`` and ``RouterContext``
annotate with ``Link``), ``node.core -> node.system -> node.core``,
``node.dispatch -> node.handling -> node.dispatch``, ``admission -> limits -> admission``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pydevts

PACKAGE = "pydevts"
SOURCE = Path(pydevts.__file__).parent
#: The modules of the old ``protocols`` <-> ``link`` <-> ``wire`` cycle (through ``Address``).
LAYERED = ("address", "protocols", "wire.link", "wire.messages")
#: Modules that need nothing of ``protocols`` but ``Address``: they take it from ``address``.
ADDRESS_ONLY = ("wire.messages", "settings", "wire.datagrams", "cluster.snapshot", "cli.options")


def modules() -> dict[str, tuple[ast.Module, bool]]:
    """Each module's name below ``pydevts`` (``""`` for the package) -> (its tree, is a package)."""
    found: dict[str, tuple[ast.Module, bool]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        found[name] = (ast.parse(path.read_text(), str(path)), package)
    return found


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is loaded (also in ``try``, ``if``, class bodies)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # runs on a call, not on import
            elif isinstance(child, ast.If) and is_type_checking(child.test):
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]))
            else:
                visit(child)

    visit(tree)
    return found


def all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def imported_modules(
    name: str, package: bool, nodes: list[ast.Import | ast.ImportFrom], known: set[str]
) -> set[str]:
    """The core modules (names below ``pydevts``) that these import statements of ``name`` load."""
    here = name.split(".") if name else []
    if not package:
        here = here[:-1]

    def module_of(dotted: str) -> str | None:
        """The longest known module ``dotted`` (``pydevts.x.y``, maybe ``.attribute``) starts with."""
        parts = dotted.split(".")
        if parts[0] != PACKAGE:
            return None
        parts = parts[1:]
        while parts and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts)

    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = [PACKAGE, *here[: len(here) - (node.level - 1)]]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from .x import y`` loads ``x.y`` if that is a module, else just ``x``
            targets = [f"{source}.{alias.name}" for alias in node.names]
        for target in targets:
            module = module_of(target)
            if module is not None and module != name:
                found.add(module)
    return found


def graph(*, everything: bool = False) -> dict[str, set[str]]:
    """Module -> the core modules it imports on load (``everything``: anywhere in it)."""
    trees = modules()
    known = set(trees)
    return {
        name: imported_modules(name, package, (all_imports if everything else load_time_imports)(tree), known)
        for name, (tree, package) in trees.items()
    }


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


def cycle_through(edges: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest import cycle through ``start`` (``[start, ..., start]``), or None."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(edges.get(node, ())):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    return None


def test_the_graph_is_read_from_the_source() -> None:
    edges = graph()
    assert {"", "address", "protocols", "wire.link", "wire.messages", "cli.options"} <= edges.keys()
    assert {"protocols", "wire.messages"} <= edges["wire.link"]
    assert "address" in edges["protocols"]
    assert "wire.link" not in edges["protocols"]  # a TYPE_CHECKING import: left out ...
    assert "wire.link" in graph(everything=True)["protocols"]  # ... unless everything counts
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": {"a"}, "c": {"a"}}, "c") is None
    assert cycle_through({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "c", "a"]


def test_no_import_cycle_through_address_protocols_link_or_wire() -> None:
    edges = graph()
    cycles = {name: " -> ".join(cycle) for name in LAYERED if (cycle := cycle_through(edges, name))}
    assert cycles == {}


def test_the_core_modules_import_each_other_without_a_cycle_on_load() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_address_is_the_bottom_layer() -> None:
    assert graph(everything=True)["address"] == set()


def test_modules_that_need_only_address_do_not_import_protocols() -> None:
    edges = graph(everything=True)
    assert {name: "protocols" for name in ADDRESS_ONLY if "protocols" in edges[name]} == {}
    assert all("address" in edges[name] for name in ADDRESS_ONLY)


def test_protocols_still_offers_address() -> None:
    from pydevts import address, protocols

    assert protocols.Address is address.Address and "Address" in protocols.__all__
    assert (protocols.MAX_HOST_CHARS, protocols.MAX_ADDRESS_CHARS) == (253, 261)
    assert address.Address.parse("[::1]:80") == address.Address("::1", 80)


#: The layers, bottom first; a top-level module is ``vocabulary`` unless it is in :data:`API`.
LAYERS = (
    "vocabulary",
    "plugins",
    "observe",
    "wire",
    "swim",
    "routing",
    "cluster",
    "node",
    "testing",
    "cli",
    "api",
)
#: The top-level modules that make the package's face: they import the node.
API = ("", "__main__", "replicated")


def layer_of(name: str) -> str:
    if name in API:
        return "api"
    if "." not in name and name not in LAYERS:
        return "vocabulary"  # a top-level module
    return name.split(".")[0]


def test_every_module_is_in_a_layer_and_every_folder_says_what_it_is_for() -> None:
    trees = modules()
    assert {layer_of(name) for name in trees} <= set(LAYERS)
    folders = {name for name, (_, package) in trees.items() if package and "." not in name and name}
    assert folders == set(LAYERS) - {"vocabulary", "api"}
    for folder in folders:
        doc = ast.get_docstring(trees[folder][0])
        assert (doc and "Layer" in doc) or "layer" in (doc or ""), folder


def test_no_module_imports_a_later_layer_on_load() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = sorted(
        f"{name} ({layer_of(name)}) -> {target} ({layer_of(target)})"
        for name, targets in graph().items()
        for target in targets
        if rank[layer_of(target)] > rank[layer_of(name)]
    )
    assert upward == []


def test_the_layer_check_sees_an_upward_import() -> None:
    assert layer_of("wire.link") == "wire" and layer_of("settings") == "vocabulary"
    assert layer_of("") == layer_of("replicated") == "api"
    assert "node.core" in graph()["replicated"]  # api -> node: downward, allowed
    assert "node.core" in graph(everything=True)["observe.hooks"]  # TYPE_CHECKING only: left out ...
    assert "node.core" not in graph()["observe.hooks"]  # ... of the load-time graph
