"""The hop router on core's deterministic simulator, with the old test API; and graph helpers.

:class:`Network` is a thin adapter over :class:`pydevts.testing.Simulation`
running :class:`~pydevts_hop.router.HopRouter` machines: core's virtual hosts
carry out the actions (links, sessions, dials) as the real link host does.
It keeps the API the unit tests and benchmarks were written against:

- the clock advances only through :meth:`Network.tick`: every router ticks
  exactly every ``tick_interval``, all at the same instants (no jitter);
  frames take a microsecond per link (``FRAME_DELAY``), so :meth:`Network.run`
  ("deliver what is in flight") runs the simulation until nothing is due
  soon, never into the next tick;
- :meth:`Network.unlink` closes a link cleanly (both ends see ``link_down``);
  :meth:`Network.cut` makes it drop everything silently (a pulled cable),
  so only the keepalive timeout notices; :meth:`Network.crash` kills a node
  silently; :meth:`Network.deliver` delivers what one link carries, ahead
  of the rest (a slow path elsewhere);
- ``reachable``: the pairs that can dial each other (a live set: change it
  to change who can), others time out at once;
- without ``rng``, frames arrive in the order they were sent; with it, in a
  random order that keeps each link FIFO (jitter drawn by the simulation);
- :meth:`Network.run` raises if frames keep flowing for ``max_steps``
  instants: a routing loop cannot hang a test.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from functools import partial

from pydevts import routing as core
from pydevts.members import Member
from pydevts.testing import Simulation
from pydevts.testing.sim import NetworkConditions

from .actions import Action, Connect, HopConfig, MemberChange, Send
from .router import HopRouter
from .state import HopState

__all__ = ["FRAME_DELAY", "Network"]

Pair = frozenset[str]

#: One frame's time on a link (virtual seconds): far below a tick, so a run never reaches one.
FRAME_DELAY = 1e-6
#: :meth:`Network.run` stops when nothing is due within this long (or before the next tick).
_SOON = 1e-3


class _SimHopRouter(HopRouter):
    """A HopRouter on the network's tick grid, reporting what its state decides to the
    :class:`Network` (frames, members, connects).

    It ticks every ``tick_interval`` exactly, and its clock reads the last tick instant
    (frames take no time in its view, as on the old fake clock): timings stay exact
    multiples of ticks, so the tests' bounds in ticks hold as they are.
    """

    def __init__(self, net: Network, node_id: str) -> None:
        super().__init__(config=net.config)
        self._net = net
        self._node_id = node_id

    def start(self, now: float, local: Member, cluster: str) -> list[core.Action]:
        actions = super().start(self._net._grid_at(now), local, cluster)
        self._next_tick = self._net._grid_after(now)
        return actions

    def timer(self, now: float) -> list[core.Action]:
        actions = super().timer(self._net._grid_at(now))
        self._next_tick = self._net._grid_after(now)
        return actions

    def set_tags(self, now: float, tags: Mapping[str, str]) -> list[core.Action]:
        return super().set_tags(self._net._grid_at(now), tags)

    def leave(self, now: float) -> list[core.Action]:
        return super().leave(self._net._grid_at(now))

    def link_up(self, now: float, peer: Member) -> list[core.Action]:
        return super().link_up(self._net._grid_at(now), peer)

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[core.Action]:
        return super().link_down(self._net._grid_at(now), peer_id, resumable=resumable)

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[core.Action]:
        return super().connect_failed(self._net._grid_at(now), member_id, refused=refused)

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[core.Action]:
        return super().receive(self._net._grid_at(now), peer_id, frame)

    def heard(self, now: float, peer_id: str) -> None:
        super().heard(self._net._grid_at(now), peer_id)

    def direct(self, now: float, peer_id: str, frames: list[bytes]) -> list[bytes]:
        return super().direct(self._net._grid_at(now), peer_id, frames)

    def send(self, now: float, dest: str, frame: bytes) -> list[core.Action]:
        return super().send(self._net._grid_at(now), dest, frame)

    def broadcast(self, now: float, frame: bytes) -> list[core.Action]:
        return super().broadcast(self._net._grid_at(now), frame)

    def _core(self, actions: list[Action]) -> list[core.Action]:
        self._net._record(self._node_id, actions)
        return super()._core(actions)


class Network:
    """Many hop routers in a :class:`Simulation`; ``now`` advances only through :meth:`tick`."""

    def __init__(
        self,
        config: HopConfig | None = None,
        *,
        rng: random.Random | None = None,
        reachable: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.config = config or HopConfig(max_neighbours=0)
        self.rng = rng
        jitter = 0.0 if rng is None else 10 * FRAME_DELAY
        self.sim = Simulation(
            seed=0 if rng is None else rng.randrange(2**32),
            conditions=NetworkConditions(delay=FRAME_DELAY, jitter=jitter),
            connect_timeout=2 * FRAME_DELAY,
            partition_timeout=None,
            cluster="hop",
        )
        #: Who can dial whom (``None``: everyone); the simulation uses this very set.
        self.reachable: set[Pair] | None = None if reachable is None else {frozenset(p) for p in reachable}
        self.sim.restrict_dials(self.reachable)
        self.nodes: dict[str, HopState] = {}  # running (or left) nodes' states
        self.delivered: dict[str, list[tuple[str, bytes]]] = {}
        self.members: dict[str, dict[str, MemberChange]] = {}
        self.frames: Counter[int] = Counter()  # frames put on links, by kind byte
        self.connects: Counter[tuple[str, str]] = Counter()

    @property
    def now(self) -> float:
        return self._grid_at(self.sim.now)

    @property
    def links(self) -> set[Pair]:
        """The live links (either end still has it)."""
        return {frozenset((n, p)) for n, node in self.sim.nodes.items() for p in node.links}

    def _grid_at(self, now: float) -> float:
        """The last tick instant at or before ``now``: the routers' clock."""
        interval = self.config.tick_interval
        return math.floor(now / interval + 1e-9) * interval

    def _grid_after(self, now: float) -> float:
        """The first tick instant after ``now``: a multiple of ``tick_interval``."""
        interval = self.config.tick_interval
        return (math.floor(now / interval + 1e-9) + 1) * interval

    def _record(self, node_id: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.frames[action.frame[0]] += 1
            elif isinstance(action, MemberChange):
                self.members[node_id][action.member_id] = action
            elif isinstance(action, Connect):
                self.connects[(node_id, action.member_id)] += 1

    def _tap(self, node_id: str, origin: str, frame: bytes) -> None:
        self.delivered[node_id].append((origin, frame))

    def _router(self, node_id: str) -> _SimHopRouter:
        machine = self.sim[node_id].machine
        assert isinstance(machine, _SimHopRouter)
        return machine

    # ---------------------------------------------------------------- topology

    def add(self, node_id: str, incarnation: int = 1, **tags: str) -> HopState:
        """Start a node (again, under the same id: a restart with ``incarnation``)."""
        self.delivered[node_id] = []
        self.members[node_id] = {}
        if node_id in self.sim.nodes:
            node = self.sim[node_id]
            if node.running:
                self.sim.crash(node_id, reset=False)
            node.tags = dict(tags)
            node.incarnation = incarnation - 1  # start() counts it up
            self.sim.restart(node_id)
        else:
            factory = partial(_SimHopRouter, self, node_id)
            node = self.sim.add_node(node_id, factory, tags=tags, incarnation=incarnation)
            node.tap(partial(self._tap, node_id))
        state = self._router(node_id).state
        self.nodes[node_id] = state
        return state

    def link(self, a: str, b: str) -> None:
        """Open a link (both handshakes done): ``link_up`` at both ends."""
        self.sim.connect(a, b)

    def unlink(self, a: str, b: str) -> None:
        """Close a link cleanly: both ends see ``link_down`` now."""
        self.sim.close_link(a, b)

    def cut(self, a: str, b: str) -> None:
        """Make a link drop every frame, both ways, without closing it."""
        self.sim.silence_link(a, b)

    def crash(self, node_id: str) -> None:
        """The node stops dead: its links go silent; nobody is told."""
        self.sim.crash(node_id, reset=False)
        del self.nodes[node_id]

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
        node = self.sim[origin]
        if not node.running:  # left: its state says why it cannot
            self.nodes[origin].broadcast(frame, self.now)
            return
        node.broadcast_frame(frame)

    def send(self, origin: str, dest: str, frame: bytes) -> None:
        node = self.sim[origin]
        if not node.running:
            self.nodes[origin].send(dest, frame, self.now)
            return
        node.send_frame(dest, frame)

    def set_tags(self, node_id: str, **tags: str) -> None:
        self.sim[node_id].set_tags(tags)

    def leave(self, node_id: str) -> None:
        """The node leaves gracefully: it advertises it, its links drain, then close."""
        self.sim.leave(node_id)
        self.run()

    def tick(self, count: int = 1, *, deliver: bool = True) -> None:
        """Advance the clock to the next tick instant ``count`` times (every router ticks), then run.

        With ``deliver=False`` the frames the ticks produced stay in flight, so
        a test can act while views still disagree (the next tick delivers them first).
        """
        for _ in range(count):
            self.sim.run_to(self._grid_after(self.now))
            if deliver:
                self.run()

    def settle(self) -> None:
        """Tick until no node floods any more (past ``settle_time``)."""
        self.tick(int(self.config.settle_time / self.config.tick_interval) + 1)

    def deliver(self, src: str, dst: str) -> int:
        """Deliver what is in flight on the link ``src`` -> ``dst`` only (not what that causes)."""
        return self.sim.deliver_now(src, dst)

    def run(self, max_steps: int = 2_000_000) -> int:
        """Run until nothing is in flight (nothing due soon, the next tick excepted);
        return how many instants that took."""
        sim, steps = self.sim, 0
        while True:
            due = sim.next_event()
            now = sim.now
            if due is None or due > now + _SOON or due >= self._grid_after(now):
                return steps
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"frames still flowing after {max_steps} instants: a routing loop?")
            sim.run_to(due)

    def _apply(self, node_id: str, actions: list[Action]) -> None:
        """Carry out what ``node_id``'s state returned for an input a test gave it directly."""
        self.sim[node_id].apply(self._router(node_id)._core(actions))


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
