"""``pydevts members --graph``: the links between members as Graphviz DOT.

Built from the ``pydevts.stats`` fan-out (:mod:`pydevts.node.inspect`), so it shows
what each node's open links are, for any router: a full mesh for ``peer``,
the tree or chain the ``hop`` router built. Each link is one undirected edge,
whichever end reported it (a member that did not answer still shows its links
to those that did); nodes are labelled with id and state, and a member that
did not answer is drawn dashed. Render with ``dot -Tsvg``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..members import Member, MemberState
from ..node.inspect import ClusterStats

__all__ = ["dot", "edges"]

_STYLE = {
    MemberState.ALIVE: "",
    MemberState.SUSPECT: ', color="orange"',
    MemberState.FAILED: ', color="red", fontcolor="red"',
    MemberState.LEFT: ', color="gray", fontcolor="gray"',
}


def _escape(text: str) -> str:
    """Text for a DOT string: quotes and backslashes escaped, control characters shown as ``?``."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'


def edges(cluster: ClusterStats) -> set[frozenset[str]]:
    """Every member link any answering node reported, once (undirected)."""
    found = set()
    for node in cluster.nodes:
        for link in node.links:
            if link.role == "member" and link.peer != node.id:
                found.add(frozenset((node.id, link.peer)))
    return found


def dot(cluster: ClusterStats, keep: Callable[[list[Member]], list[Member]] = lambda ms: ms) -> str:
    """The graph as DOT text; ``keep`` selects the members shown (``--tag``, ``--state``)."""
    members = keep(cluster.members)
    shown = {m.id for m in members}
    answered = {n.id for n in cluster.nodes}
    lines = ["graph pydevts {", "  node [shape=box];"]
    for member_id, why in sorted(cluster.missing.items()):
        lines.append(f"  // {_escape(member_id)} did not answer: {_escape(why)}")
    for m in members:
        label = f'"{_escape(m.id)}\\n{m.state.value}"'
        dashed = ', style="dashed"' if m.id not in answered and m.alive else ""
        lines.append(f"  {_quote(m.id)} [label={label}{_STYLE[m.state]}{dashed}];")
    for a, b in sorted(tuple(sorted(e)) for e in edges(cluster)):
        if a in shown and b in shown:
            lines.append(f"  {_quote(a)} -- {_quote(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
