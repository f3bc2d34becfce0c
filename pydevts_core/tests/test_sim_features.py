"""The simulator's finer controls, one test each: the ones the hop router's adapter drives.

``Toy`` is a full mesh that does nothing on its own (no timer, no sync, no
redial): every link, frame and timer in these tests is one the test made, so
each feature's effect can be checked exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydevts.errors import UnknownNodeError
from pydevts.members import Member
from pydevts.routing.actions import Action, Connect, Control, Send, UpdateMember
from pydevts.routing.machine import NO_ACTIONS, RouterMachine
from pydevts.testing.sim import NetworkConditions, Simulation
from pydevts.wire import encode_request

pytestmark = pytest.mark.timeout(30)

#: A router frame (kind >= ROUTER_KIND_MIN): the machine's ``receive`` gets it.
ROUTER_FRAME = b"\x60router"
#: Router frames ``Toy`` answers: a PING with a PONG.
PING, PONG = b"\x61ping", b"\x62pong"


class Toy(RouterMachine):
    """Full mesh and passive: logs its inputs, records its links' members, dials when told,
    answers a PING; its timer fires only at a deadline a test sets."""

    name = "toy"

    def __init__(self) -> None:
        self.log: list[tuple[float, str, str, object]] = []  # (time, input, peer, detail)
        self.deadline: float | None = None
        self.timers: list[float] = []

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.log.append((now, "link_up", peer.id, peer.incarnation))
        return [UpdateMember(peer)]

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        self.log.append((now, "link_down", peer_id, resumable))
        return NO_ACTIONS

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        self.log.append((now, "connect_failed", member_id, refused))
        return NO_ACTIONS

    def receive(self, now: float, peer_id: str, data: bytes) -> list[Action]:
        self.log.append((now, "receive", peer_id, data))
        return [Control(peer_id, PONG)] if data == PING else NO_ACTIONS

    def next_deadline(self) -> float | None:
        return self.deadline

    def timer(self, now: float) -> list[Action]:
        self.timers.append(now)
        self.deadline = None
        return NO_ACTIONS


def toy(sim: Simulation, node_id: str) -> Toy:
    m = sim[node_id].machine
    assert isinstance(m, Toy)
    return m


def events(sim: Simulation, node_id: str, kind: str) -> list[tuple[float, str, str, object]]:
    return [e for e in toy(sim, node_id).log if e[1] == kind]


def sim_of(*node_ids: str, delay: float = 0.01, **options: Any) -> Simulation:
    """Nodes that are not linked (no join): the tests link them."""
    sim = Simulation(seed=1, conditions=NetworkConditions(delay=delay, jitter=0.0), **options)
    for node_id in node_ids:
        sim.add_node(node_id, Toy)
    return sim


# ---------------------------------------------------------------- nodes


def test_add_node_incarnation_is_in_the_record_peers_see() -> None:
    sim = sim_of("b")
    sim.add_node("a", Toy, incarnation=5)
    assert sim["a"].incarnation == 5 and sim.members("a")["a"].incarnation == 5
    sim.join("b", via="a")
    sim.run_for(1)
    assert sim.members("b")["a"].incarnation == 5
    assert [e[2:] for e in events(sim, "b", "link_up")] == [("a", 5)]
    assert sim.members("a")["b"].incarnation == 1  # the default
    sim.restart("a", via="b")  # each restart counts up from it
    sim.run_for(1)
    assert sim["a"].incarnation == 6 and sim.members("b")["a"].incarnation == 6
    with pytest.raises(ValueError, match="incarnation"):
        sim.add_node("c", Toy, incarnation=0)


# ---------------------------------------------------------------- links


def test_connect_links_at_once_whatever_partition_or_restrictions_say() -> None:
    sim = sim_of("a", "b", "c")
    sim.run_for(0.5)
    sim.partition({"a"}, {"b"})
    sim.restrict_dials(set())
    sim.connect("a", "b")
    assert sim.now == 0.5  # no time passed: both handshakes are done
    assert sim["a"].links == ["b"] and sim["b"].links == ["a"]
    assert [e[:3] for e in events(sim, "a", "link_up")] == [(0.5, "link_up", "b")]
    assert [e[:3] for e in events(sim, "b", "link_up")] == [(0.5, "link_up", "a")]
    assert sim.counts["links"] == 1
    sim.connect("a", "b")  # linked already: nothing
    sim.connect("b", "a")
    assert sim.counts["links"] == 1 and sim.counts["duplicate_links"] == 0
    assert len(events(sim, "a", "link_up")) == 1 and len(events(sim, "b", "link_up")) == 1
    assert sim["c"].links == []


def test_close_link_is_link_down_not_resumable_at_both_ends_now() -> None:
    sim = sim_of("a", "b", delay=0.5)
    sim.connect("a", "b")
    sim.run_for(1)
    sim["a"].send("b", "lost", 1)  # in flight (0.5 s) when the link closes
    assert sim.close_link("a", "b") is True
    assert events(sim, "a", "link_down") == [(1.0, "link_down", "b", False)]
    assert events(sim, "b", "link_down") == [(1.0, "link_down", "a", False)]
    assert sim["a"].links == [] and sim["b"].links == []
    assert sim.close_link("a", "b") is False  # no link any more
    sim.run_for(5)
    assert sim["b"].deliveries == []  # what was in flight is lost
    assert sim.counts["frames_lost"] == 1
    assert sim["a"].links == [] and len(events(sim, "a", "link_down")) == 1  # no redial, nothing more
    assert sim.counts["dials"] == 0


def test_silence_link_drops_frames_and_nobody_is_told() -> None:
    sim = sim_of("a", "b", delay=0.5)
    sim.connect("a", "b")
    sim["a"].send("b", "in-flight", 0)
    assert sim.silence_link("b", "a") is True
    sim["a"].send("b", "after", 1)
    sim["b"].send("a", "after", 2)
    sim.run_for(5)
    assert [d.payload for d in sim["b"].deliveries] == [0]  # in flight before: still arrives
    assert sim["a"].deliveries == []  # dropped, both ways
    assert events(sim, "a", "link_down") == [] and events(sim, "b", "link_down") == []
    assert sim["a"].links == ["b"] and sim["b"].links == ["a"]  # not closed
    assert sim.counts["frames_lost"] == 2
    # A new link between them is not affected.
    assert sim.close_link("a", "b") is True
    sim.connect("a", "b")
    sim["a"].send("b", "new", 3)
    sim["b"].send("a", "new", 4)
    sim.run_for(1)
    assert [d.payload for d in sim["b"].deliveries] == [0, 3]
    assert [d.payload for d in sim["a"].deliveries] == [4]


def test_silence_link_without_a_link_returns_false() -> None:
    sim = sim_of("a", "b")
    assert sim.silence_link("a", "b") is False


def test_restrict_dials_times_out_other_pairs() -> None:
    sim = sim_of("a", "b", "c", connect_timeout=2.0)
    sim.connect("a", "c")  # up before the restriction: not affected
    allowed = {frozenset(("a", "b"))}
    sim.restrict_dials(allowed)
    sim["a"].apply([Connect("b", "b:7000")])
    sim["b"].apply([Connect("c", "c:7000")])
    sim.run_for(3)
    assert sim["a"].links == ["c", "b"]
    assert [e[2] for e in events(sim, "a", "link_up")] == ["c", "b"]
    assert events(sim, "a", "connect_failed") == []
    assert events(sim, "b", "connect_failed") == [(2.0, "connect_failed", "c", False)]  # a timeout
    assert "c" not in sim["b"].links
    # The set is used as given: adding the pair lets them dial.
    allowed.add(frozenset(("b", "c")))
    sim["b"].apply([Connect("c", "c:7000")])
    sim.run_for(1)
    assert "c" in sim["b"].links and len(events(sim, "b", "connect_failed")) == 1
    # None: no restriction.
    sim.close_link("a", "b")
    sim.restrict_dials(set())
    sim["a"].apply([Connect("b", "b:7000")])
    sim.run_for(3)
    assert events(sim, "a", "connect_failed") == [(sim.now - 1.0, "connect_failed", "b", False)]
    sim.restrict_dials(None)
    sim["a"].apply([Connect("b", "b:7000")])
    sim.run_for(1)
    assert "b" in sim["a"].links and len(events(sim, "a", "connect_failed")) == 1


def test_deliver_now_hands_over_one_link_at_once() -> None:
    sim = sim_of("a", "b", "c", delay=1.0)
    sim.connect("a", "b")
    sim.connect("a", "c")
    sim.run_for(0.25)
    sim["a"].send("b", "ev", 1)
    sim["a"].apply([Control("b", PING)])  # b's machine answers it with a PONG
    sim["a"].send("b", "ev", 2)
    sim["a"].send("c", "ev", 3)
    sim["b"].send("a", "other-way", 4)
    assert sim.deliver_now("a", "b") == 3
    assert [(d.time, d.payload) for d in sim["b"].deliveries] == [(0.25, 1), (0.25, 2)]
    assert [e[:3] for e in events(sim, "b", "receive")] == [(0.25, "receive", "a")]
    assert sim["c"].deliveries == [] and sim["a"].deliveries == []  # the rest is still in flight
    assert events(sim, "a", "receive") == []  # so is what it caused (the PONG)
    assert sim.deliver_now("a", "b") == 0  # nothing left on it
    sim.run_for(2)
    assert [(d.time, d.payload) for d in sim["c"].deliveries] == [(1.25, 3)]
    assert [(d.time, d.payload) for d in sim["a"].deliveries] == [(1.25, 4)]
    assert events(sim, "a", "receive") == [(1.25, "receive", "b", PONG)]
    assert len(sim["b"].deliveries) == 2  # the voided arrivals delivered nothing twice
    assert len(events(sim, "b", "receive")) == 1
    sim.check_exactly_once()
    assert sim.deliver_now("b", "nobody") == 0


def test_deliver_now_runs_the_handlers_at_once() -> None:
    sim = sim_of("a", "b", delay=1.0)
    sim.connect("a", "b")
    sim["b"].on("ask", lambda node, sender, p: node.send(sender, "answer", p))
    sim.run_for(0.25)
    sim["a"].send("b", "ask", 1)
    sim.deliver_now("a", "b")
    sim.run_for(0.5)  # nothing else is due before t=1.25
    assert [(s.time, s.name) for s in sim.sent] == [(0.25, "ask"), (0.25, "answer")]


def test_run_to_stops_exactly_at_the_time() -> None:
    sim = sim_of("a")
    ran: list[float] = []
    sim.call_at(2.5, lambda: ran.append(sim.now))
    sim.call_at(3.0, lambda: ran.append(sim.now))
    sim.run_to(2.0)
    assert sim.now == 2.0 and ran == []
    sim.run_to(1.0)  # earlier than now: the clock does not go back
    assert sim.now == 2.0 and ran == []
    sim.run_to(2.5)  # what is due at ``when`` runs
    assert sim.now == 2.5 and ran == [2.5]
    sim.run_to(2.75)
    assert sim.now == 2.75 and ran == [2.5]


def test_next_event_is_the_time_of_the_next_scheduled_event() -> None:
    sim = Simulation(seed=1, conditions=NetworkConditions(delay=0.25, jitter=0.0))
    assert sim.next_event() is None
    sim.add_node("a", Toy)
    sim.add_node("b", Toy)
    assert sim.next_event() is None  # passive machines: nothing is scheduled
    sim.call_at(3.0, lambda: None)
    assert sim.next_event() == 3.0
    sim.connect("a", "b")
    sim["a"].send("b", "x")
    assert sim.next_event() == 0.25  # the frame's arrival
    sim.run_to(sim.next_event() or 0)
    assert sim.now == 0.25 and len(sim["b"].deliveries) == 1
    assert sim.next_event() == 3.0
    sim.run_for(5)
    assert sim.next_event() is None


# ---------------------------------------------------------------- nodes' frames


def test_tap_sees_each_frame_handed_up_across_restarts() -> None:
    sim = sim_of("a", "b")
    seen: list[tuple[str, bytes]] = []
    sim["b"].tap(lambda origin, frame: seen.append((origin, frame)))
    sim.connect("a", "b")
    raw = encode_request(7, "rpc", b"{}")
    sim["a"].send("b", "ev", 1)
    sim["a"].send_frame("b", raw)
    sim["a"].apply([Control("b", ROUTER_FRAME)])  # a router frame: for the machine, not handed up
    sim.run_for(1)
    assert len(seen) == 2 and all(origin == "a" for origin, _ in seen)
    assert seen[1][1] == raw and seen[0][1] != raw
    assert [d.payload for d in sim["b"].deliveries] == [1]
    assert [(o, f) for _, o, f in sim["b"].frames] == [("a", raw)]
    assert [e[3] for e in events(sim, "b", "receive")] == [ROUTER_FRAME]
    sim.crash("b", reset=False)
    sim.restart("b")
    sim.connect("a", "b")
    sim["a"].send_frame("b", raw)
    sim.run_for(1)
    assert seen[2:] == [("a", raw)]


def test_broadcast_frame_and_send_frame_are_not_simulator_events() -> None:
    sim = sim_of("a", "b", "c")
    sim.connect("a", "b")
    sim.connect("a", "c")
    everyone = encode_request(1, "all", b"1")
    one = encode_request(2, "one", b"2")
    sim["a"].broadcast_frame(everyone)
    sim["a"].send_frame("c", one)
    sim.run_for(1)
    assert [(o, f) for _, o, f in sim["b"].frames] == [("a", everyone)]
    assert [(o, f) for _, o, f in sim["c"].frames] == [("a", everyone), ("a", one)]
    assert sim.sent == [] and all(sim[n].deliveries == [] for n in "abc")
    with pytest.raises(UnknownNodeError):
        sim["b"].send_frame("c", one)  # full mesh: no link to it


class Relay(Toy):
    """Not a full mesh: sends and broadcasts go through the machine (as router ``Send`` actions)."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[str] = []
        self.calls: list[tuple[str, bytes]] = []

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.peers.append(peer.id)
        return super().link_up(now, peer)

    def broadcast(self, now: float, data: bytes) -> list[Action]:
        self.calls.append(("broadcast", data))
        return [Send(p, data) for p in self.peers]

    def send(self, now: float, dest: str, data: bytes) -> list[Action]:
        self.calls.append(("send", data))
        if dest not in self.peers:
            raise UnknownNodeError(dest, "not a neighbour")
        return [Send(dest, data)]


def test_frames_go_through_a_routing_machine() -> None:
    sim = Simulation(seed=1)
    for n in "abc":
        sim.add_node(n, Relay)
    sim.connect("a", "b")
    sim.connect("a", "c")
    everyone, one = encode_request(1, "all", b"1"), encode_request(2, "one", b"2")
    sim["a"].broadcast_frame(everyone)
    sim["a"].send_frame("b", one)
    with pytest.raises(UnknownNodeError):
        sim["b"].send_frame("c", one)
    sim.run_for(1)
    relay = sim["a"].machine
    assert isinstance(relay, Relay)
    assert relay.calls == [("broadcast", everyone), ("send", one)]
    assert [f for _, _, f in sim["b"].frames] == [everyone, one]
    assert [f for _, _, f in sim["c"].frames] == [everyone]


def test_apply_carries_out_actions_and_rearms_the_timer() -> None:
    sim = sim_of("a", "b", delay=0.1)
    sim["a"].apply([Connect("b", "b:7000")])
    assert sim["a"].links == []  # a dial takes a round trip
    sim.run_for(1)
    assert sim["a"].links == ["b"] and [e[:3] for e in events(sim, "a", "link_up")] == [
        (pytest.approx(0.2), "link_up", "b")
    ]
    sim["a"].apply([Control("b", ROUTER_FRAME), UpdateMember(Member("z", "z:7000", incarnation=3))])
    assert sim.members("a")["z"].incarnation == 3
    sim.run_for(1)
    assert [e[2:] for e in events(sim, "b", "receive")] == [("a", ROUTER_FRAME)]
    # The timer is re-armed: a deadline the test set on the machine is honoured.
    toy(sim, "a").deadline = sim.now + 0.5
    assert sim.next_event() is None
    sim["a"].apply([])
    assert sim.next_event() == sim.now + 0.5
    sim.run_for(1)
    assert toy(sim, "a").timers == [pytest.approx(2.5)]
