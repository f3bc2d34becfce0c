"""The link-state graph and its shortest-path trees (sans-IO).

An edge ``u - v`` exists only when *both* adverts list each other, so one
node's stale or forged advert cannot invent a link. A node whose advert says
``left`` is not part of the graph (it neither receives nor relays), except
the local node itself: after it leaves it still relays what is in flight
until its links close.

Every tree is a breadth-first shortest-path tree with one deterministic rule
for ties: the parent of ``v`` is the *smallest id* among ``v``'s neighbours one
step closer to the root. Every node that holds the same adverts computes the
same tree for a given root, which is what lets a broadcast follow its
origin's tree with each node sending it only to its own children.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .wire import Advert

__all__ = ["Graph", "Routes", "Tree", "bfs_tree", "first_hops"]


class Graph:
    """Undirected adjacency kept up to date one advert at a time (``O(degree)`` each)."""

    def __init__(self, local_id: str) -> None:
        self.local_id = local_id
        self.adj: dict[str, set[str]] = {local_id: set()}

    def update(self, adverts: Mapping[str, Advert], node: str) -> bool:
        """Recompute ``node``'s edges from ``adverts`` (its advert changed or went); True if they changed."""

        def present(nid: str) -> Advert | None:
            adv = adverts.get(nid)
            return adv if adv is not None and (not adv.left or nid == self.local_id) else None

        adv = present(node)
        new: set[str] = set()
        if adv is not None:
            for n in adv.neighbours:
                other = present(n)
                if other is not None and node in other.neighbours:
                    new.add(n)
        old = self.adj.get(node)
        if (old is None and adv is None) or (old == new and adv is not None):
            return False
        for n in (old or set()) - new:
            self.adj[n].discard(node)
        for n in new - (old or set()):
            self.adj.setdefault(n, set()).add(node)
        if adv is None:
            del self.adj[node]
        else:
            self.adj[node] = new
        return True

    def neighbours(self, node: str) -> list[str]:
        return sorted(self.adj.get(node, ()))


@dataclass
class Tree:
    """A shortest-path tree rooted at ``root``."""

    root: str
    depth: dict[str, int]
    parent: dict[str, str]
    _hops: dict[tuple[str, str], str | None] = field(default_factory=dict, repr=False)

    @property
    def height(self) -> int:
        """The largest distance from the root (its eccentricity)."""
        return max(self.depth.values())

    def children(self, node: str, graph: Graph) -> list[str]:
        """``node``'s neighbours whose parent in this tree is ``node`` (sorted)."""
        return [n for n in graph.neighbours(node) if self.parent.get(n) == node]

    def next_hop(self, via: str, dest: str) -> str | None:
        """The child of ``via`` on the tree path to ``dest``; ``None`` if ``dest`` is not below ``via``.

        Walks up from ``dest`` (at most its depth); cached, as a tree is
        rebuilt whenever the graph changes.
        """
        key = (via, dest)
        if key in self._hops:
            return self._hops[key]
        hop = None
        node = dest
        while node in self.parent:
            up = self.parent[node]
            if up == via:
                hop = node
                break
            node = up
        self._hops[key] = hop
        return hop


def bfs_tree(graph: Graph, root: str) -> Tree:
    """Breadth-first tree from ``root``; ties go to the smallest parent id.

    Each level is visited in sorted order, so the first node to reach a node
    of the next level is the smallest of its candidate parents.
    """
    depth = {root: 0}
    parent: dict[str, str] = {}
    frontier = [root]
    adj = graph.adj
    d = 0
    while frontier:
        d += 1
        nxt: list[str] = []
        for node in frontier:
            for n in adj.get(node, ()):
                if n not in depth:
                    depth[n] = d
                    parent[n] = node
                    nxt.append(n)
        nxt.sort()
        frontier = nxt
    return Tree(root, depth, parent)


def first_hops(tree: Tree) -> dict[str, str]:
    """For every node below the root, the root's neighbour on the tree path to it."""
    hops: dict[str, str] = {}
    for node in sorted(tree.depth, key=tree.depth.__getitem__):
        if node != tree.root:
            up = tree.parent[node]
            hops[node] = node if up == tree.root else hops[up]
    return hops


class Routes:
    """One node's routes: the graph, its own tree (next hop and distance per
    reachable node) and, built on demand, the trees of other origins."""

    def __init__(self, local_id: str, hop_slack: int) -> None:
        self.local_id = local_id
        self.hop_slack = hop_slack
        self.graph = Graph(local_id)
        self.tree = bfs_tree(self.graph, local_id)
        self.hops: dict[str, str] = {}  # reachable node -> next hop
        self._trees: dict[str, Tree] = {}
        self._children: dict[str, list[str]] = {}

    def update(self, adverts: Mapping[str, Advert], changed: str) -> tuple[bool, bool]:
        """``changed``'s advert changed: (did the graph change, was or is ``changed`` reachable)."""
        if not self.graph.update(adverts, changed):
            return False, False
        was_reachable = changed in self.tree.depth
        self.tree = bfs_tree(self.graph, self.local_id)
        self.hops = first_hops(self.tree)
        self._trees.clear()
        self._children.clear()
        return True, was_reachable or changed in self.tree.depth

    def tree_of(self, origin: str) -> Tree:
        if origin == self.local_id:
            return self.tree
        tree = self._trees.get(origin)
        if tree is None:
            tree = self._trees[origin] = bfs_tree(self.graph, origin)
        return tree

    def children_of(self, origin: str) -> list[str]:
        """Where this node sends ``origin``'s broadcasts on ``origin``'s tree."""
        children = self._children.get(origin)
        if children is None:
            children = self._children[origin] = self.tree_of(origin).children(self.local_id, self.graph)
        return children

    def hop_limit(self, dest: str) -> int:
        """A relayed unicast to ``dest`` dies after this many links (2 x distance + slack)."""
        return min(255, 2 * self.tree.depth.get(dest, 1) + self.hop_slack)
