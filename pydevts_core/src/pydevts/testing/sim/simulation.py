"""The :class:`Simulation`: nodes, faults and the run loop on a virtual clock."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping

from ...address import Address
from ...members import Member
from ...routing.machine import RouterMachine
from . import checks
from .clock import Clock, SimulationError
from .conditions import Fabric, NetworkConditions
from .network import Network, normalize
from .node import SimNode
from .records import DroppedFrame, Fault, ProtocolError, Sent

__all__ = ["Simulation", "SimulationTimeout"]

#: Events at one instant before the run stops (frames looping with no delay never move the clock).
MAX_EVENTS_PER_INSTANT = 1_000_000


class SimulationTimeout(TimeoutError):
    """:meth:`Simulation.run_until` timed out (in virtual seconds)."""


class Simulation:
    """A virtual clock and an in-memory network running router machines, reproducibly from ``seed``.

    ``conditions``: the default network (see :class:`NetworkConditions`);
    ``connect_timeout``: virtual seconds a dial across a partition takes to
    fail; ``reset_after``: how long after a crash its peers' links reset
    (``crash(reset=True)``); ``partition_timeout``: links across a partition
    break (resumably) after this long, ``None``: they stay up and silent;
    ``strict``: an exception from a machine's ``timer``/``datagram`` or an
    application handler stops the run (else it is recorded in
    :attr:`faults` and the node goes on, as on real links); ``cluster``: the
    name every machine's ``start`` is given; ``merge_interval``: every this many
    virtual seconds (drawn ±20 %), each running node dials each address it
    joined through (:meth:`join`) if the node listening there is reachable and
    not alive in its view: the island merge of ``Node(merge_interval=...)``
    (which hands such a link to the router as a new one); ``None``: never.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        conditions: NetworkConditions | None = None,
        connect_timeout: float = 1.0,
        reset_after: float = 0.5,
        partition_timeout: float | None = 15.0,
        strict: bool = True,
        cluster: str = "sim",
        merge_interval: float | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        self._fabric = Fabric(conditions or NetworkConditions(), self.rng)
        self._net = Network(
            self.clock,
            self._fabric,
            connect_timeout=connect_timeout,
            reset_after=reset_after,
            partition_timeout=partition_timeout,
            strict=strict,
            cluster=cluster,
        )
        self.nodes: dict[str, SimNode] = {}
        self._down_at: dict[str, float] = {}
        if merge_interval is not None and not merge_interval > 0:
            raise ValueError(f"merge_interval must be > 0 seconds or None, got {merge_interval!r}")
        self.merge_interval = merge_interval

    @property
    def now(self) -> float:
        """Virtual seconds since the simulation began."""
        return self.clock.now

    def __getitem__(self, node_id: str) -> SimNode:
        return self.nodes[node_id]

    # ------------------------------------------------------------ records

    @property
    def sent(self) -> list[Sent]:
        """Every event the nodes' applications sent, in order."""
        return self._net.sent

    @property
    def protocol_errors(self) -> list[ProtocolError]:
        return self._net.protocol_errors

    @property
    def faults(self) -> list[Fault]:
        return self._net.faults

    @property
    def dropped(self) -> list[DroppedFrame]:
        return [d for node in self.nodes.values() for d in node.dropped]

    @property
    def counts(self) -> Mapping[str, int]:
        """Network counters: frames, frames_lost, links, duplicate_links, link_breaks, dials, ..."""
        return {"frames": self._net.frames, **self._net.counts}

    # ------------------------------------------------------------ nodes

    def add_node(
        self,
        node_id: str,
        make_machine: Callable[[], RouterMachine],
        *,
        address: str | None = None,
        tags: Mapping[str, str] | None = None,
        incarnation: int = 1,
    ) -> SimNode:
        """Start a node (alone: see :meth:`join`); ``make_machine`` is called at each (re)start.

        ``incarnation``: its first one (each restart counts up from it).
        """
        if node_id in self.nodes:
            raise ValueError(f"node {node_id!r} exists")
        if address is None:
            address = f"{node_id}:7000" if normalize(f"{node_id}:7000") else f"node{len(self.nodes)}.sim:7000"
        where = normalize(address)
        if where is None:
            raise ValueError(f"address {address!r} is not HOST:PORT")
        if any(normalize(n.address) == where for n in self.nodes.values()):
            raise ValueError(f"address {address!r} is taken")
        if incarnation < 1:
            raise ValueError(f"incarnation must be 1 or more, got {incarnation!r}")
        node = SimNode(self._net, node_id, address, tags or {}, make_machine)
        node.incarnation = incarnation - 1  # start() counts it up
        self.nodes[node_id] = node
        node.start()
        if self.merge_interval is not None:
            self.clock.after(self.merge_interval * self.rng.uniform(0.8, 1.2), self._merge, node_id)
        return node

    def join(self, node_id: str, via: str) -> None:
        """``node_id`` dials ``via`` (its cluster port), retrying until a link comes up."""
        host = self.nodes[node_id].host
        if host is None or not host.current:
            raise SimulationError(f"node {node_id} is not running")
        address = normalize(self.nodes[via].address)
        assert address is not None
        if address not in self.nodes[node_id].seeds:
            self.nodes[node_id].seeds.append(address)
        host.join(address)

    def leave(self, node_id: str) -> None:
        """Graceful: ``machine.leave``, then every link closes after what is queued on it."""
        node = self.nodes[node_id]
        node._live_host().leave()
        self._down_at[node_id] = self.now

    def crash(self, node_id: str, *, reset: bool = True) -> None:
        """Kill the node (no goodbye). ``reset``: its peers' links break ``reset_after`` later
        (``link_down(resumable=True)``, then a refused redial); else they stay silent.
        """
        self.nodes[node_id]._live_host().crash(reset)
        self._down_at[node_id] = self.now

    def restart(self, node_id: str, *, via: str | None = None) -> SimNode:
        """The same id again: a new incarnation with a fresh machine (crashed first if running)."""
        node = self.nodes[node_id]
        if node.running:
            self.crash(node_id)
        node.start()
        if via is not None:
            self.join(node_id, via)
        return node

    def _merge(self, node_id: str) -> None:
        """One island-merge round of ``node_id`` (see ``merge_interval``), and the next one."""
        assert self.merge_interval is not None
        self.clock.after(self.merge_interval * self.rng.uniform(0.8, 1.2), self._merge, node_id)
        node = self.nodes[node_id]
        host = node.host
        if host is None or not host.current:
            return
        for address in node.seeds:
            target = self._net.listening.get(address)
            if target is None or target == node_id or self._fabric.cut(node_id, target):
                continue  # nobody there (the probe fails), or ourselves
            if target not in node.alive_members():
                self._net.dial(host, address, None, _ignore_outcome)

    def down_at(self, node_id: str) -> float:
        """When ``node_id`` last crashed or left."""
        return self._down_at[node_id]

    def live(self) -> list[str]:
        """The running nodes' ids."""
        return [node_id for node_id, node in self.nodes.items() if node.running]

    def members(self, node_id: str) -> dict[str, Member]:
        """``node_id``'s member view: id -> Member (itself included)."""
        return self.nodes[node_id].members

    # ------------------------------------------------------------ faults

    def break_link(self, a: str, b: str) -> None:
        """Reset the link between ``a`` and ``b`` (churn): both ends see ``link_down(resumable=True)``
        and redial; what was in flight is sent again on the next link.
        """
        host_a, host_b = self.nodes[a]._live_host(), self.nodes[b]._live_host()
        link = host_a.links.get(b)
        if link is None or host_b.links.get(a) is not link:
            raise SimulationError(f"no link between {a} and {b}")
        self._net.break_link(link)

    def connect(self, a: str, b: str) -> None:
        """Open a link from ``a`` to ``b`` now, both handshakes done (as if ``a`` had dialled ``b``),
        whatever partition or :meth:`restrict_dials` says; nothing if they are linked already.
        """
        host_a, host_b = self.nodes[a]._live_host(), self.nodes[b]._live_host()
        link = host_a.links.get(b)
        if link is not None and host_b.links.get(a) is link:
            return
        self._net.establish(host_a, host_b)

    def close_link(self, a: str, b: str) -> bool:
        """Close the link between ``a`` and ``b`` cleanly and at once: each running end that still
        has it sees ``link_down(resumable=False)`` now; what was in flight on it is lost.
        Return whether there was one.
        """
        hosts = [h for h in (self.nodes[a].host, self.nodes[b].host) if h is not None and h.current]
        links = {}
        for host in hosts:
            link = host.links.get(b if host.id == a else a)
            if link is not None:
                links[link.gen] = link
        if not links:
            return False
        for link in links.values():
            unsent = self._net.kill(link)
            self._net.counts["frames_lost"] += sum(len(frames) for frames in unsent.values())
            for host in hosts:
                host.reading.pop(link.gen, None)
                peer = link.other(host.id)
                if host.links.get(peer) is link:
                    del host.links[peer]
                    host.feed(host.machine.link_down(self.now, peer, resumable=False))
        return True

    def silence_link(self, a: str, b: str) -> bool:
        """The link between ``a`` and ``b`` drops every frame put on it from now on, both ways,
        without closing (a pulled cable: only the routers' own timeouts notice). What is in
        flight still arrives; a new link between them is not affected. Return whether there
        was one.
        """
        found = False
        for x, y in ((a, b), (b, a)):
            host = self.nodes[x].host
            if host is not None and host.current and y in host.links:
                host.links[y].silent = True
                found = True
        return found

    def restrict_dials(self, pairs: set[frozenset[str]] | None) -> None:
        """Only these pairs (of node ids) can dial each other: other dials time out, as across
        a partition (links already up are not affected). The set is used as given, so changing
        it later changes who can dial; ``None``: no restriction.
        """
        self._fabric.dialable = pairs

    def deliver_now(self, src: str, dst: str) -> int:
        """Hand ``dst`` at once what ``src`` sent it that is still in flight on their link, ahead
        of everything else (a slow path elsewhere); what that causes stays in flight. Return how
        many frames (or closes) it was.
        """
        host = self.nodes[src].host
        link = None if host is None or not host.current else host.links.get(dst)
        if link is None:
            return 0
        count = self._net.deliver_now(link.pipes[src])
        queue = self._net.app_queue
        while queue:  # the handlers of what was handed over run now, as at an arrival
            queue.popleft()()
        return count

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every path between nodes of different groups (nodes in no group reach everyone).

        Replaces any partition in force. Frames on links across it wait; the links break
        (resumably) after ``partition_timeout``; dials across it time out.
        """
        self._fabric.partition(groups)
        self._net.partitioned()

    def heal(self) -> None:
        """End the partition: waiting frames move on, dials succeed again."""
        self._fabric.heal()
        self._net.healed()

    def set_conditions(
        self,
        *,
        delay: float | None = None,
        jitter: float | None = None,
        datagram_loss: float | None = None,
        between: tuple[str, str] | None = None,
    ) -> None:
        """Change the network, everywhere or ``between`` two nodes (what is given only)."""
        self._fabric.set(between, delay, jitter, datagram_loss)

    def datagram_address(self, node_id: str) -> Address:
        """Where ``node_id``'s datagram channel listens (its address)."""
        return Address.parse(self.nodes[node_id].address)

    # ------------------------------------------------------------ running

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``when`` (e.g. an application action mid-run)."""
        self.clock.at(when, fn)

    def run_for(self, seconds: float) -> None:
        """Advance the clock by ``seconds``, running everything due meanwhile."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._run(self.now + seconds, None)

    def run_to(self, when: float) -> None:
        """Advance the clock to virtual time ``when`` (no earlier than now), running everything due."""
        self._run(max(when, self.now), None)

    def next_event(self) -> float | None:
        """When the next scheduled event is due (``None``: nothing is)."""
        return self.clock.next_time()

    def run_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        message: str | Callable[[], str] | None = None,
    ) -> float:
        """Run until ``predicate()`` holds (checked between instants); return the virtual time.

        Raise :class:`SimulationTimeout` (with ``message``, or a call of it) if it does not
        within ``timeout`` virtual seconds.
        """
        start = self.now
        if predicate() or self._run(start + timeout, predicate):
            return self.now
        detail = message() if callable(message) else message
        raise SimulationTimeout(
            f"not true after {timeout:g} virtual seconds (t={start:g} to {self.now:g})"
            + (f": {detail}" if detail else "")
        )

    def _run(self, end: float, predicate: Callable[[], bool] | None) -> bool:
        clock, queue, heap, pop = self.clock, self._net.app_queue, self.clock.heap, heapq.heappop
        at, count = clock.now, 0
        while heap and heap[0][0] <= end:
            due = heap[0][0]
            if due != at:
                if predicate is not None and predicate():
                    return True
                at, count = due, 0
            _, _, fn, args = pop(heap)
            clock.now = due
            fn(*args)
            while queue:
                queue.popleft()()
            count += 1
            if count > MAX_EVENTS_PER_INSTANT:
                raise SimulationError(f"{count} events at t={at:g}: frames looping with no delay?")
        clock.now = max(clock.now, end)
        return predicate is not None and predicate()

    # ------------------------------------------------------------ checks

    def converged(self) -> bool:
        """Every running node sees exactly the running nodes alive."""
        return checks.converged(self.nodes)

    def check_exactly_once(self, among: Iterable[str] | None = None, since: float = 0.0) -> None:
        """Events sent since ``since`` among ``among`` (default: the running nodes) arrived once each."""
        checks.check_exactly_once(self.nodes, self.sent, self.live() if among is None else among, since)

    def check_order(self) -> None:
        """Every node got each author's events in the order they were sent."""
        checks.check_order(self.nodes)

    def check_failed_by_all(self, node_id: str, within: float) -> dict[str, float]:
        """Every running node saw ``node_id`` fail (or leave) within ``within`` s of its crash."""
        return checks.check_failed_by_all(self.nodes, node_id, self._down_at[node_id], within)


def _ignore_outcome(outcome: str, peer: str | None) -> None:
    """A merge dial's outcome: a link that comes up is a ``link_up``; a failure waits for the next round."""
