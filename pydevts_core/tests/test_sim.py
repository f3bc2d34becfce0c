"""The deterministic simulator (:mod:`pydevts.testing.sim`), driven by small router machines.

``ToyMesh`` is a full-mesh router of about sixty lines (sync on ``link_up``,
``Connect`` to the members a sync names, a goodbye on ``leave``, pings and a
silence detector on its timer, reconnection to failed members); the others
are smaller still, each for one part of the host contract.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from pydevts.address import Address
from pydevts.errors import UnknownNodeError
from pydevts.members import Member, MemberState
from pydevts.routing.actions import (
    Action,
    CloseLink,
    Connect,
    Control,
    Deliver,
    Send,
    SendDatagram,
    SetMemberState,
    UpdateMember,
)
from pydevts.routing.machine import NO_ACTIONS, RouterMachine
from pydevts.testing.sim import (
    NetworkConditions,
    SimNode,
    Simulation,
    SimulationError,
    SimulationTimeout,
)

pytestmark = pytest.mark.timeout(60)

SYNC, LEAVE, PING = 0x60, 0x61, 0x62


def frame(kind: int, body: object = None) -> bytes:
    return bytes((kind,)) + json.dumps(body).encode()


class ToyMesh(RouterMachine):
    """Full mesh: sync on every link, dial whoever a sync names, ping, and notice silence."""

    name = "toymesh"
    hears = True

    def __init__(self, *, ping: float = 1.0, silence: float | None = 3.0, retry: float | None = 5.0) -> None:
        self.ping, self.silence, self.retry = ping, silence, retry
        self.me = Member("", "")
        self.linked: dict[str, Member] = {}
        self.failed: dict[str, Member] = {}
        self.left: set[str] = set()
        self.heard_at: dict[str, float] = {}
        self.tick = self.next_retry = 0.0
        self.log: list[tuple[str, str, object]] = []  # (input, peer, detail)

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self.me, self.tick, self.next_retry = local, now + self.ping, now + (self.retry or 0)
        return NO_ACTIONS

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.log.append(("link_up", peer.id, peer.incarnation))
        self.linked[peer.id], self.heard_at[peer.id] = peer, now
        self.failed.pop(peer.id, None)
        self.left.discard(peer.id)
        known = [[m.id, m.address] for m in (self.me, *self.linked.values())]
        return [UpdateMember(peer), Control(peer.id, frame(SYNC, known))]

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        self.log.append(("link_down", peer_id, resumable))
        return [] if resumable else self._lost(peer_id, MemberState.FAILED)

    def _lost(self, peer_id: str, state: MemberState) -> list[Action]:
        member = self.linked.pop(peer_id, None)
        if member is None:
            return []
        if state is MemberState.FAILED:
            self.failed[peer_id] = member
        return [SetMemberState(peer_id, state)]

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        self.log.append(("connect_failed", member_id, refused))
        return NO_ACTIONS

    def receive(self, now: float, peer_id: str, data: bytes) -> list[Action]:
        kind, body = data[0], json.loads(data[1:])
        if kind == SYNC:
            return [
                Connect(i, a)
                for i, a in body
                if i != self.me.id and i not in self.linked and i not in self.left and i not in self.failed
            ]
        if kind == LEAVE:
            self.left.add(peer_id)
            return [*self._lost(peer_id, MemberState.LEFT), CloseLink(peer_id, "member left", linger=True)]
        if kind == PING:
            return NO_ACTIONS
        raise ValueError(f"unknown frame kind 0x{kind:02x}")

    def heard(self, now: float, peer_id: str) -> None:
        self.heard_at[peer_id] = now

    def leave(self, now: float) -> list[Action]:
        return [Control(p, frame(LEAVE)) for p in self.linked]

    def next_deadline(self) -> float | None:
        return self.tick

    def timer(self, now: float) -> list[Action]:
        self.tick = now + self.ping
        actions: list[Action] = [Control(p, frame(PING)) for p in self.linked]
        for p in list(self.linked):
            if self.silence is not None and now - self.heard_at[p] > self.silence:
                actions += [CloseLink(p, "silent"), *self._lost(p, MemberState.FAILED)]
        if self.retry is not None and now >= self.next_retry:
            self.next_retry = now + self.retry
            actions += [Connect(m.id, m.address) for m in self.failed.values()]
        return actions


class Garbler(ToyMesh):
    """A broken router: it sends a frame nobody can parse on every new link."""

    def link_up(self, now: float, peer: Member) -> list[Action]:
        return [*super().link_up(now, peer), Control(peer.id, b"\x7fnot a frame")]


def cluster(
    size: int, seed: int = 1, make: Callable[[], RouterMachine] = ToyMesh, **options: Any
) -> Simulation:
    sim = Simulation(seed=seed, **options)
    for i in range(size):
        sim.add_node(f"n{i}", make)
        if i:
            sim.join(f"n{i}", via="n0")
    sim.run_until(sim.converged, timeout=30)
    return sim


def machine(sim: Simulation, node_id: str) -> ToyMesh:
    m = sim[node_id].machine
    assert isinstance(m, ToyMesh)
    return m


# ---------------------------------------------------------------- basics


def test_join_converge_and_exactly_once() -> None:
    sim = cluster(6)
    assert all(len(sim[n].links) == 5 for n in sim.live())
    assert sim.members("n3")["n5"].address == "n5:7000"
    assert sim.members("n3")["n3"].incarnation == 1
    for n in sim.live():
        for i in range(5):
            sim[n].broadcast("news", {"from": n, "i": i})
    sim.run_for(1)
    sim.check_exactly_once()
    sim.check_order()
    assert len(sim["n0"].deliveries) == 25
    d = sim["n0"].deliveries[0]
    assert d.name == "news" and d.payload["from"] == d.origin == d.author
    assert sim.protocol_errors == [] and sim.faults == []


def test_full_mesh_send_without_a_link_raises() -> None:
    sim = cluster(2)
    with pytest.raises(UnknownNodeError):
        sim["n0"].send("nobody", "x")
    sim["n0"].send("n1", "x", [1, 2])
    sim.run_for(1)
    assert [(d.name, d.payload) for d in sim["n1"].deliveries] == [("x", [1, 2])]


def test_run_until_times_out_in_virtual_seconds() -> None:
    sim = cluster(2)
    with pytest.raises(SimulationTimeout, match="never"):
        sim.run_until(lambda: False, timeout=100, message="never")
    assert sim.now >= 100


def scenario(seed: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Joins, jittery broadcasts with handlers that reply, a crash and a restart."""
    sim = Simulation(seed=seed, conditions=NetworkConditions(delay=0.01, jitter=0.05))
    for i in range(5):
        sim.add_node(f"n{i}", ToyMesh)
        if i:
            sim.join(f"n{i}", via="n0")
    sim.run_until(sim.converged, timeout=30)
    for n in sim.live():
        sim[n].on("ask", lambda node, sender, p: node.send(sender, "answer", p))
    for i in range(10):
        sim.call_at(sim.now + i * 0.05, partial(sim[f"n{i % 5}"].broadcast, "ask", i))
    sim.run_for(2)
    sim.crash("n3")
    sim.run_for(5)
    sim.restart("n3", via="n1")
    sim.run_until(sim.converged, timeout=30)
    deliveries = [(n, d) for n, node in sim.nodes.items() for d in node.deliveries]
    views = [(n, sorted(sim.members(n).items())) for n in sim.nodes]
    events = [(n, node.member_events) for n, node in sim.nodes.items()]
    return deliveries, views, events


def test_same_seed_same_run_other_seed_other_timings() -> None:
    first, again, other = scenario(7), scenario(7), scenario(8)
    assert first == again
    assert first[1] == other[1]  # the same views in the end...
    assert [d for _, d in first[0]] != [d for _, d in other[0]]  # ...reached with other timings

    def what(run: tuple[list[Any], list[Any], list[Any]]) -> list[tuple[str, str, str, str]]:
        return sorted((n, d.origin, d.name, json.dumps(d.payload)) for n, d in run[0])

    assert what(first) == what(other)  # and the same events arrived


# ---------------------------------------------------------------- links


def test_jitter_never_reorders_a_link() -> None:
    sim = cluster(2, conditions=NetworkConditions(delay=0.001, jitter=0.5))
    for i in range(200):
        sim.call_at(sim.now + i * 0.01, partial(sim["n0"].send, "n1", "seq", i))
    sim.run_for(5)
    got = [d.payload for d in sim["n1"].deliveries]
    assert got == list(range(200))
    gaps = [b.time - a.time for a, b in zip(sim["n1"].deliveries, sim["n1"].deliveries[1:], strict=False)]
    assert max(gaps) > 0.1  # the jitter was real: frames bunched up behind slow ones
    sim.check_order()


def test_simultaneous_dials_keep_one_link() -> None:
    class Dial(RouterMachine):
        """Both dial each other at t=0.5."""

        def __init__(self, peer: str) -> None:
            self.peer, self.ups = peer, 0
            self.at: float | None = 0.5

        def next_deadline(self) -> float | None:
            return self.at

        def timer(self, now: float) -> list[Action]:
            self.at = None
            return [Connect(self.peer, f"{self.peer}:7000")]

        def link_up(self, now: float, peer: Member) -> list[Action]:
            self.ups += 1
            return [UpdateMember(peer)]

    sim = Simulation(seed=3)
    sim.add_node("a", lambda: Dial("b"))
    sim.add_node("b", lambda: Dial("a"))
    sim.run_for(1)
    assert sim.counts["links"] == 1 and sim.counts["duplicate_links"] == 1
    assert [getattr(sim[n].machine, "ups") for n in "ab"] == [1, 1]  # noqa: B009
    sim["a"].send("b", "hi")
    sim["b"].send("a", "hi")
    sim.run_for(1)
    assert len(sim["a"].deliveries) == len(sim["b"].deliveries) == 1


def test_connect_refused_or_timed_out() -> None:
    sim = cluster(2, conditions=NetworkConditions(delay=0.02, jitter=0.0))
    sim.partition({"n0"}, {"n1"})
    toy = machine(sim, "n0")
    toy.log.clear()
    times: list[float] = []
    real = toy.connect_failed

    def connect_failed(now: float, member_id: str, *, refused: bool) -> list[Action]:
        times.append(now)
        return real(now, member_id, refused=refused)

    toy.connect_failed = connect_failed  # type: ignore[method-assign]
    start = sim.now
    host = sim["n0"].host
    assert host is not None
    host.feed([Connect("ghost", "ghost:7000"), Connect("x", "n1:7000")])
    sim.run_for(2)
    assert [e for e in toy.log if e[0] == "connect_failed"] == [
        ("connect_failed", "ghost", True),  # nothing listens there: refused after a round trip
        ("connect_failed", "x", False),  # n1 listens there, across the partition: a timeout
    ]
    assert times[0] - start == pytest.approx(0.04) and times[1] - start == pytest.approx(1.0)


def test_break_link_resumes_without_loss() -> None:
    sim = cluster(3, conditions=NetworkConditions(delay=0.005, jitter=0.02))
    for i in range(300):
        sim.call_at(sim.now + i * 0.01, partial(sim["n0"].broadcast, "stream", i))
    for k in range(5):
        sim.call_at(sim.now + 0.3 + k * 0.5, lambda: sim.break_link("n0", "n1"))
    sim.run_for(6)
    assert sim.counts["link_breaks"] == 5
    sim.check_exactly_once()
    sim.check_order()
    log = machine(sim, "n1").log
    assert log.count(("link_down", "n0", True)) == 5
    assert sum(1 for e in log if e[:2] == ("link_up", "n0")) == 6  # first link, then each resume
    assert sim.converged()


def test_protocol_error_closes_the_link_both_ways() -> None:
    sim = Simulation(seed=2)
    for i in range(3):
        sim.add_node(f"n{i}", lambda: ToyMesh(retry=None))
        if i:
            sim.join(f"n{i}", via="n0")
    sim.add_node("bad", lambda: Garbler(retry=None))
    sim.join("bad", via="n0")
    sim.run_for(5)
    assert {e.node for e in sim.protocol_errors} == {"n0", "n1", "n2"}
    assert all(e.peer == "bad" and "JSONDecodeError" in e.error for e in sim.protocol_errors)
    assert sim["bad"].links == []
    assert all(sorted(sim[n].links) == sorted({"n0", "n1", "n2"} - {n}) for n in ("n0", "n1", "n2"))
    assert ("link_down", "n0", False) in machine(sim, "bad").log
    sim["n1"].broadcast("still", "fine")
    sim.run_for(1)
    sim.check_exactly_once(among=["n0", "n1", "n2"])


# ---------------------------------------------------------------- faults


def test_partition_and_heal() -> None:
    sim = cluster(6, partition_timeout=None)
    left, right = {"n0", "n1", "n2"}, {"n3", "n4", "n5"}
    sim.partition(left, right)

    def split() -> bool:
        return all(sim[n].alive_members() == (left if n in left else right) for n in sim.live())

    start = sim.now
    took = sim.run_until(split, timeout=30) - start
    assert 3.0 < took < 3.0 + 1.0 + 0.1  # silence, plus up to one ping period
    sim["n0"].broadcast("during", 1)
    sim.run_for(1)
    assert {d.name for d in sim["n3"].deliveries} == set()
    sim.heal()
    sim.run_until(sim.converged, timeout=30)
    sim["n4"].broadcast("after", 2)
    sim.run_for(1)
    sim.check_exactly_once(since=sim.now - 1)


def test_partition_breaks_links_and_frames_wait_for_the_heal() -> None:
    sim = cluster(2, make=lambda: ToyMesh(silence=None), partition_timeout=2.0)
    sim.partition({"n0"}, {"n1"})
    sim["n0"].send("n1", "held", "x")
    sim.run_for(5)
    assert sim["n1"].deliveries == []
    assert ("link_down", "n0", True) in machine(sim, "n1").log  # the link broke; redialling
    sim.heal()
    sim.run_for(5)
    assert [d.payload for d in sim["n1"].deliveries] == ["x"]  # kept by the session, sent on resume


def test_crash_with_reset_is_seen_failed_by_all() -> None:
    sim = cluster(5, make=lambda: ToyMesh(silence=None))
    sim.crash("n2")
    sim.run_for(3)
    took = sim.check_failed_by_all("n2", within=1.0)  # reset_after 0.5 s, then a refused redial
    assert set(took) == {"n0", "n1", "n3", "n4"}
    assert ("link_down", "n2", True) in machine(sim, "n0").log
    assert ("link_down", "n2", False) in machine(sim, "n0").log


def test_silent_crash_is_caught_by_a_router_that_hears() -> None:
    sim = cluster(5)
    sim.crash("n2", reset=False)
    sim.run_until(lambda: all("n2" not in sim[n].alive_members() for n in sim.live()), timeout=10)
    took = sim.check_failed_by_all("n2", within=3.0 + 1.0 + 0.1)  # silence + one ping period
    assert min(took.values()) > 3.0
    assert not any(e[:2] == ("link_down", "n2") for e in machine(sim, "n0").log)


def test_restart_under_the_same_id() -> None:
    sim = cluster(4)
    sim["n1"].broadcast("before", 0)
    sim.run_for(1)
    sim.crash("n2", reset=False)
    sim.run_for(1)
    sim.restart("n2", via="n0")
    sim.run_until(
        lambda: sim.converged() and all(sim.members(n)["n2"].incarnation == 2 for n in sim.live()), 30
    )
    assert sim["n2"].incarnation == 2 and sim.members("n2")["n2"].incarnation == 2
    assert ("link_up", "n2", 2) in machine(sim, "n0").log
    since = sim.now
    for n in sim.live():
        sim[n].broadcast("after", n)
    sim.run_for(1)
    sim.check_exactly_once(since=since)


def test_graceful_leave_is_left_not_failed() -> None:
    sim = cluster(4)
    sim["n3"].broadcast("bye", "last words")
    sim.leave("n3")
    sim.run_for(5)
    took = sim.check_failed_by_all("n3", within=0.5)
    assert len(took) == 3
    for n in sim.live():
        kinds = [e.kind for _, e in sim[n].member_events if e.member.id == "n3"]
        assert kinds == ["joined", "left"]
        assert [d.payload for d in sim[n].deliveries] == ["last words"]
    assert sim.converged()


# ---------------------------------------------------------------- datagrams


class Prober(RouterMachine):
    """Sends ``count`` datagrams to its first neighbour, one every 10 ms; counts what arrives."""

    uses_datagrams = True

    def __init__(self, count: int = 0) -> None:
        self.count, self.got, self.target, self.at = count, 0, None, 0.0
        self.target_address: Address | None = None

    def link_up(self, now: float, peer: Member) -> list[Action]:
        if self.target_address is None:
            self.target_address, self.at = Address.parse(peer.address), now
        return [UpdateMember(peer)]

    def datagram(self, now: float, data: bytes) -> list[Action]:
        self.got += 1
        return NO_ACTIONS

    def next_deadline(self) -> float | None:
        return self.at if self.count and self.target_address is not None else None

    def timer(self, now: float) -> list[Action]:
        assert self.target_address is not None
        self.count -= 1
        self.at = now + 0.01
        return [SendDatagram(self.target_address, b"probe")]


def test_datagram_loss_and_partitions() -> None:
    def run(seed: int, partitioned: bool) -> int:
        sim = Simulation(seed=seed, conditions=NetworkConditions(datagram_loss=0.3))
        sim.add_node("a", lambda: Prober(1000))
        sim.add_node("b", Prober)
        sim.join("a", via="b")
        sim.run_for(0.5)
        if partitioned:
            sim.partition({"a"}, {"b"})
        sim.run_for(20)
        got = sim["b"].machine
        assert isinstance(got, Prober)
        return got.got

    got = run(1, False)
    assert 620 < got < 780  # about 70% of 1000
    assert run(1, False) == got  # the same losses
    assert run(1, True) < 100  # only those sent before the cut


# ---------------------------------------------------------------- applications


def test_handlers_reply_to_events() -> None:
    sim = cluster(5)
    for n in sim.live():
        sim[n].on("ping", lambda node, sender, p: node.send(sender, "pong", {"to": p, "by": node.id}))
    pongs: list[str] = []
    sim["n0"].on("pong", lambda node, sender, p: pongs.append(sender))
    sim["n0"].broadcast("ping", 1)
    sim.run_for(1)
    assert sorted(pongs) == ["n1", "n2", "n3", "n4"]
    assert [d.name for d in sim["n0"].deliveries] == ["pong"] * 4
    sim.check_exactly_once()


def test_handler_errors_stop_a_strict_run_or_are_recorded() -> None:
    def boom(node: SimNode, sender: str, payload: Any) -> None:
        raise RuntimeError("handler bug")

    sim = cluster(2)
    sim["n1"].on("x", boom)
    sim["n0"].broadcast("x")
    with pytest.raises(RuntimeError, match="handler bug"):
        sim.run_for(1)
    lax = cluster(2, strict=False)
    lax["n1"].on("x", boom)
    lax["n0"].broadcast("x")
    lax.run_for(1)
    assert [(f.node, f.where) for f in lax.faults] == [("n1", "handler")]


def test_a_timer_that_never_moves_on_is_reported() -> None:
    class Stuck(RouterMachine):
        def next_deadline(self) -> float | None:
            return 1.0

    sim = Simulation()
    sim.add_node("a", Stuck)
    with pytest.raises(SimulationError, match="never moves its deadline"):
        sim.run_for(2)


# ---------------------------------------------------------------- a router that relays

RELAY = 0x70
_HEAD = struct.Struct(">BI")


class Flood(RouterMachine):
    """Relays broadcasts along whatever links exist (no Connect); holds direct frames on request."""

    relays = True

    def __init__(self) -> None:
        self.me, self.seq = "", 0
        self.linked: dict[str, Member] = {}
        self.seen: set[tuple[str, int]] = set()
        self.hold_until = 0.0
        self.held: list[tuple[str, bytes]] = []
        self.direct_calls = 0

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self.me = local.id
        return NO_ACTIONS

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.linked[peer.id] = peer
        return [UpdateMember(peer)]

    def broadcast(self, now: float, data: bytes) -> list[Action]:
        self.seq += 1
        self.seen.add((self.me, self.seq))
        wrapped = _HEAD.pack(RELAY, self.seq) + self.me.encode().ljust(8) + data
        return [Send(p, wrapped) for p in self.linked]

    def send(self, now: float, dest: str, data: bytes) -> list[Action]:
        if dest not in self.linked:
            raise UnknownNodeError(dest, "not a neighbour")
        return [Send(dest, data)]

    def receive(self, now: float, peer_id: str, data: bytes) -> list[Action]:
        _, seq = _HEAD.unpack_from(data)
        origin = data[5:13].decode().strip()
        if (origin, seq) in self.seen:
            return NO_ACTIONS
        self.seen.add((origin, seq))
        return [
            Deliver(origin, data[13:]),
            *(Send(p, data) for p in self.linked if p not in (peer_id, origin)),
        ]

    def direct(self, now: float, peer_id: str, frames: list[bytes]) -> list[bytes]:
        self.direct_calls += 1
        if now < self.hold_until:
            self.held += [(peer_id, f) for f in frames]
            return []
        return frames

    def next_deadline(self) -> float | None:
        return self.hold_until if self.held else None

    def timer(self, now: float) -> list[Action]:
        held, self.held = self.held, []
        return [Deliver(origin, f) for origin, f in held]


def relay_run(seed: int) -> Simulation:
    sim = Simulation(seed=seed, conditions=NetworkConditions(delay=0.01, jitter=0.03))
    for name in "abcd":
        sim.add_node(name, Flood)
    for a, b in ("ab", "bc", "cd", "da"):  # a ring: two paths to the far side
        sim.join(a, via=b)
    sim.run_for(1)
    flood = sim["c"].machine
    assert isinstance(flood, Flood)
    flood.hold_until = sim.now + 0.5
    for i in range(30):
        sim.call_at(sim.now + i * 0.02, partial(sim["acd"[i % 3]].broadcast, "b", i))
        sim.call_at(sim.now + i * 0.02, partial(sim["b"].send, "c", "d", i))
    sim.run_for(3)
    return sim


def test_relaying_router_order_and_determinism() -> None:
    sim = relay_run(5)
    sim.check_exactly_once(among=[s.author for s in sim.sent if s.dest is None])
    sim.check_order()
    flood = sim["c"].machine
    assert isinstance(flood, Flood) and flood.direct_calls == 30
    direct = [d for d in sim["c"].deliveries if d.name == "d"]
    assert [d.payload for d in direct] == list(range(30))  # held ones first, in order, then the rest
    assert all(d.origin == "b" for d in direct)
    held = [d for d in direct if d.time == flood.hold_until]  # handed up by the timer's Deliver
    assert len(held) >= 10 and held == direct[: len(held)]
    again = relay_run(5)
    assert [n.deliveries for n in sim.nodes.values()] == [n.deliveries for n in again.nodes.values()]


# ---------------------------------------------------------------- the real litemesh router


def test_litemesh_router_in_the_simulator() -> None:
    from pydevts_litemesh.router import LiteMeshRouter as cls

    sim = Simulation(seed=11)
    for i in range(5):
        sim.add_node(f"m{i}", cls)
        if i:
            sim.join(f"m{i}", via="m0")
    sim.run_until(sim.converged, timeout=60)
    for n in sim.live():
        sim[n].broadcast("hello", n)
    sim.run_for(2)
    sim.check_exactly_once()
    sim.crash("m3")
    sim.run_for(5)
    sim.check_failed_by_all("m3", within=5)
    sim.leave("m4")
    sim.run_for(5)
    sim.check_failed_by_all("m4", within=1)
    assert [e.kind for _, e in sim["m0"].member_events if e.member.id == "m4"] == ["joined", "left"]
    # No failure detector: a partition shorter than partition_timeout goes unnoticed, and what
    # was sent across it arrives once it heals.
    since, breaks = sim.now, sim.counts["link_breaks"]
    sim.partition({"m0"}, {"m1", "m2"})
    sim["m0"].broadcast("during", 1)
    sim.run_for(5)
    assert not any(d.name == "during" for d in sim["m1"].deliveries)
    sim.heal()
    sim.run_for(1)
    sim.check_exactly_once(since=since)
    assert sim.converged() and sim.counts["link_breaks"] == breaks  # no link broke
    assert sim.protocol_errors == [] and sim.faults == []
