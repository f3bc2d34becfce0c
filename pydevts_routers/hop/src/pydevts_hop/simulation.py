"""A deterministic in-memory network of :class:`HopState` machines, with a fake clock.

Used by the unit tests and the benchmarks: no sockets, no event loop. Links
are FIFO, as TCP links are. The network plays the IO shell's part: it carries
out the actions (``Send`` is queued on the link, ``CloseLink`` closes both
ends, ``Connect`` succeeds if the pair may reach each other) and hands raw
core frames (kind below ``0x40``) to the receiving node as the shell would.

- :meth:`Network.unlink` closes a link cleanly (both ends see ``link_down``);
  :meth:`Network.cut` makes it drop everything silently (a pulled cable),
  so only the keepalive timeout notices; :meth:`Network.crash` kills a node
  silently; :meth:`Network.deliver` delivers what one link carries, ahead
  of the rest (a slow path elsewhere).
- Without ``rng``, frames are delivered in the order they were sent; with
  it, in a random order that keeps each link FIFO.
- :meth:`Network.run` raises if frames keep flowing for ``max_steps``: a
  routing loop cannot hang a test.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from pydevts.members import Member
from pydevts.wire import ROUTER_KIND_MIN

from .actions import Action, CloseLink, Connect, Deliver, HopConfig, MemberChange, Send
from .state import HopState

__all__ = ["Network"]

Pair = frozenset[str]


class Network:
    """Many HopStates wired by links; ``now`` advances only through :meth:`tick`."""

    def __init__(
        self,
        config: HopConfig | None = None,
        *,
        rng: random.Random | None = None,
        reachable: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.config = config or HopConfig(max_neighbours=0)
        self.rng = rng
        self.now = 0.0
        self.nodes: dict[str, HopState] = {}
        self.reachable: set[Pair] | None = None if reachable is None else {frozenset(p) for p in reachable}
        self.links: dict[Pair, int] = {}  # live link -> generation
        self.silent: set[Pair] = set()
        self.delivered: dict[str, list[tuple[str, bytes]]] = {}
        self.members: dict[str, dict[str, MemberChange]] = {}
        self.frames: Counter[int] = Counter()  # frames put on links, by kind byte
        self.connects: Counter[tuple[str, str]] = Counter()
        self._queues: dict[tuple[str, str], deque[tuple[int, bytes]]] = {}
        self._order: deque[tuple[str, str]] = deque()
        self._generation = 0

    # ---------------------------------------------------------------- topology

    def add(self, node_id: str, incarnation: int = 1, **tags: str) -> HopState:
        state = HopState(
            Member(node_id, f"{node_id}:7000", tags, incarnation=incarnation), self.config, self.now
        )
        self.nodes[node_id] = state
        self.delivered[node_id] = []
        self.members[node_id] = {}
        return state

    def link(self, a: str, b: str) -> None:
        """Open a link (both handshakes done): ``link_up`` at both ends."""
        pair = frozenset((a, b))
        if pair in self.links:
            return
        self._generation += 1
        self.links[pair] = self._generation
        self.silent.discard(pair)
        sa, sb = self.nodes[a], self.nodes[b]
        self._apply(a, sa.link_up(_member(sb), self.now))
        self._apply(b, sb.link_up(_member(sa), self.now))

    def unlink(self, a: str, b: str) -> None:
        """Close a link cleanly: both ends see ``link_down`` now."""
        pair = frozenset((a, b))
        if self.links.pop(pair, None) is None:
            return
        self.silent.discard(pair)
        for x, y in ((a, b), (b, a)):
            if x in self.nodes:
                self._apply(x, self.nodes[x].link_down(y, self.now))

    def cut(self, a: str, b: str) -> None:
        """Make a link drop every frame, both ways, without closing it."""
        self.silent.add(frozenset((a, b)))

    def crash(self, node_id: str) -> None:
        """The node stops dead: its links go silent; nobody is told."""
        del self.nodes[node_id]
        for pair in self.links:
            if node_id in pair:
                self.silent.add(pair)

    def build(self, edges: Iterable[tuple[str, str]]) -> None:
        """Add the nodes of ``edges`` (sorted) and link them; then run until quiet."""
        edges = list(edges)
        for node_id in sorted({n for e in edges for n in e}):
            if node_id not in self.nodes:
                self.add(node_id)
        for a, b in edges:
            self.link(a, b)
        self.run()

    # ---------------------------------------------------------------- traffic

    def broadcast(self, origin: str, frame: bytes) -> None:
        self._apply(origin, self.nodes[origin].broadcast(frame, self.now))

    def send(self, origin: str, dest: str, frame: bytes) -> None:
        self._apply(origin, self.nodes[origin].send(dest, frame, self.now))

    def set_tags(self, node_id: str, **tags: str) -> None:
        self._apply(node_id, self.nodes[node_id].set_tags(tags, self.now))

    def leave(self, node_id: str) -> None:
        """The node leaves gracefully: it advertises it, its links drain, then close."""
        self._apply(node_id, self.nodes[node_id].leave(self.now))
        self.run()
        for pair in [p for p in self.links if node_id in p]:
            (other,) = pair - {node_id}
            self.unlink(node_id, other)
        self.run()

    def tick(self, count: int = 1, *, deliver: bool = True) -> None:
        """Advance the clock by ``tick_interval`` ``count`` times; tick every node, then run.

        With ``deliver=False`` the frames the ticks produced stay queued (in
        flight), so a test can act while views still disagree.
        """
        for _ in range(count):
            self.now += self.config.tick_interval
            for node_id in sorted(self.nodes):
                if node_id in self.nodes:
                    self._apply(node_id, self.nodes[node_id].tick(self.now))
            if deliver:
                self.run()

    def settle(self) -> None:
        """Tick until no node floods any more (past ``settle_time``)."""
        self.tick(int(self.config.settle_time / self.config.tick_interval) + 1)

    def deliver(self, src: str, dst: str) -> int:
        """Deliver what is queued on the link ``src`` -> ``dst`` only (not what that causes)."""
        key = (src, dst)
        queue = self._queues.get(key, deque())
        count = len(queue)
        for _ in range(count):
            self._order.remove(key)
            self._step(key)
        return count

    def run(self, max_steps: int = 2_000_000) -> int:
        """Deliver queued frames until none is left; return how many were delivered."""
        steps = 0
        while self._order:
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"frames still flowing after {max_steps} deliveries: a routing loop?")
            if self.rng is None:
                key = self._order.popleft()
            else:
                i = self.rng.randrange(len(self._order))
                key = self._order[i]
                del self._order[i]
            self._step(key)
        return steps

    def _step(self, key: tuple[str, str]) -> None:
        generation, frame = self._queues[key].popleft()
        src, dst = key
        if self.links.get(frozenset(key)) != generation or dst not in self.nodes:
            return  # the link closed with this frame in flight
        if frame[0] < ROUTER_KIND_MIN:  # a raw core frame: src's own, as the shell hands it over
            self.delivered[dst] += [(src, f) for f in self.nodes[dst].unicast_from(src, [frame])]
        else:
            self._apply(dst, self.nodes[dst].receive(src, frame, self.now))

    # ---------------------------------------------------------------- the shell's part

    def _apply(self, node_id: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                pair = frozenset((node_id, action.neighbour))
                generation = self.links.get(pair)
                if generation is None:
                    continue
                self.frames[action.frame[0]] += 1
                if pair in self.silent:
                    continue
                key = (node_id, action.neighbour)
                self._queues.setdefault(key, deque()).append((generation, action.frame))
                self._order.append(key)
            elif isinstance(action, Deliver):
                self.delivered[node_id].append((action.origin, action.frame))
            elif isinstance(action, MemberChange):
                self.members[node_id][action.member_id] = action
            elif isinstance(action, CloseLink):
                pair = frozenset((node_id, action.neighbour))
                if self.links.pop(pair, None) is not None:
                    self.silent.discard(pair)
                    other = self.nodes.get(action.neighbour)
                    if other is not None:
                        self._apply(action.neighbour, other.link_down(node_id, self.now))
            elif isinstance(action, Connect):
                self.connects[(node_id, action.member_id)] += 1
                pair = frozenset((node_id, action.member_id))
                ok = action.member_id in self.nodes and (self.reachable is None or pair in self.reachable)
                if ok and pair not in self.links:
                    self.link(node_id, action.member_id)
                elif not ok:
                    self._apply(node_id, self.nodes[node_id].connect_failed(action.member_id, self.now))


def _member(state: HopState) -> Member:
    own = state.adverts[state.local_id]
    return Member(own.origin, own.address, dict(own.tags), incarnation=own.incarnation)


# -------------------------------------------------------------------- graphs

Edges = list[tuple[str, str]]


def names(prefix: str, count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"{prefix}{i:0{width}d}" for i in range(count)]


def line(count: int, prefix: str = "n") -> Edges:
    ids = names(prefix, count)
    return list(itertools.pairwise(ids))


def ring(count: int, prefix: str = "n") -> Edges:
    ids = names(prefix, count)
    return [*itertools.pairwise(ids), (ids[-1], ids[0])]


def full_mesh(ids: list[str]) -> Edges:
    return [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]


def bridged(size: int = 5, bridge: str = "x") -> Edges:
    """Two full meshes ``a*`` and ``b*`` of ``size`` nodes; ``bridge`` links ``a0`` and ``b0`` only."""
    a, b = names("a", size), names("b", size)
    return [*full_mesh(a), *full_mesh(b), (bridge, a[0]), (bridge, b[0])]


def distances(edges: Edges, src: str) -> dict[str, int]:
    """Hops from ``src`` to every node it reaches over ``edges`` (breadth-first)."""
    adj: dict[str, set[str]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    dist, queue = {src: 0}, deque([src])
    while queue:
        node = queue.popleft()
        for n in adj.get(node, ()):
            if n not in dist:
                dist[n] = dist[node] + 1
                queue.append(n)
    return dist


def routes_right(states: Mapping[str, HopState], edges: Edges) -> bool:
    """Whether every state's distance to every other node is the shortest over ``edges``."""
    edges = list(edges)
    for src, state in states.items():
        dist = distances(edges, src)
        for dest in states:
            route = state.route(dest)
            if dest != src and (None if route is None else route[1]) != dist.get(dest):
                return False
    return True


def random_sparse(count: int, extra: int, rng: random.Random, prefix: str = "r") -> Edges:
    """A random connected graph: a random tree plus ``extra`` more random edges."""
    ids = names(prefix, count)
    edges = {frozenset((ids[i], ids[rng.randrange(i)])) for i in range(1, count)}
    while len(edges) < count - 1 + extra:
        a, b = rng.sample(ids, 2)
        edges.add(frozenset((a, b)))
    return sorted((min(e), max(e)) for e in edges)
