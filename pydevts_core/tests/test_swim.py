"""SWIM failure detection (pydevts.swim): sans-IO tests with a fake clock.

Two levels:

- unit tests drive one ``SwimState`` by hand (``receive``/``tick``/hints with
  plain float times) and look at the actions it returns;
- cluster tests run several states on ``Net``, an in-memory network that
  delivers ``Send`` actions at once (JSON round trip, as the UDP shell does),
  can drop traffic (a down node, a cut link, a filter, a seeded loss rate),
  advances the clock in 0.05 s steps calling ``tick`` on every running node,
  and records every ``StateChange`` per observer.

Nothing here sleeps, opens a socket or needs an event loop.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from pydevts.members import Member, MemberState
from pydevts.swim import Send, StateChange, SwimConfig, SwimState

ALIVE, SUSPECT, FAILED, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.FAILED, MemberState.LEFT
# The timings these tests were written against (memberlist-like, 1 s rounds);
# the mechanism does not depend on them. The shipped defaults are tested below.
CFG = SwimConfig(probe_interval=1.0, probe_timeout=0.5, suspicion_mult=3.0)
STEP = 0.05  # the IO shell ticks every 50 ms


def addr(node_id: str) -> str:
    return f"{node_id}.test:7000"


def upd(kind: str, node_id: str, inc: int, tags: dict[str, str] | None = None) -> list[Any]:
    return [kind, node_id, addr(node_id), inc, tags]


def gossip(*updates: list[Any]) -> dict[str, Any]:
    return {"t": "gossip", "u": list(updates)}


def sends(actions: Iterable[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def changes(actions: Iterable[object]) -> list[Member]:
    return [a.member for a in actions if isinstance(a, StateChange)]


def wire(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(message))


def make(
    local: str = "a",
    peers: Iterable[str] = ("b", "c", "d"),
    config: SwimConfig = CFG,
    seed: int = 0,
    incarnation: int = 0,
) -> SwimState:
    """A state for ``local`` that knows ``peers`` as alive (learned at t=0, actions dropped)."""
    state = SwimState(Member(local, addr(local), incarnation=incarnation), config, random.Random(seed))
    for peer in peers:
        state.learn(Member(peer, addr(peer)), 0.0)
    state._gossip.clear()  # the learn broadcasts are not what the unit tests look at
    return state


def start_probe(state: SwimState, now: float = 0.0) -> tuple[str, int]:
    """Tick ``state`` until it pings someone; return (target, seq)."""
    pings = [s for s in sends(state.tick(now)) if s.message["t"] == "ping"]
    assert len(pings) == 1, pings
    return pings[0].to, pings[0].message["seq"]


# ------------------------------------------------------------------ the in-memory network


@dataclass(frozen=True)
class Datagram:
    at: float
    src: str
    dst: str
    msg: dict[str, Any]
    delivered: bool

    def carries(self, kind: str, node_id: str, inc: int | None = None) -> bool:
        return any(
            u[0] == kind and u[1] == node_id and (inc is None or u[3] == inc) for u in self.msg.get("u") or []
        )


class Net:
    """Nodes ``n0``..``n{n-1}`` that all know each other, on a perfect network unless told otherwise."""

    def __init__(self, n: int, *, config: SwimConfig = CFG, seed: int = 0, loss: float = 0.0) -> None:
        self.config = config
        self.k = 0
        self.now = 0.0
        self.loss = loss
        self.rng = random.Random(seed)
        self.ids = [f"n{i}" for i in range(n)]
        self.nodes = {
            nid: SwimState(Member(nid, addr(nid)), config, random.Random(seed * 1000 + i))
            for i, nid in enumerate(self.ids)
        }
        self.down: set[str] = set()  # paused or dead: does not tick, all its traffic is lost
        self.cut: set[frozenset[str]] = set()  # links that lose everything, both ways
        self.drop_if: Callable[[Datagram], bool] | None = None
        self.changes: dict[str, list[tuple[float, Member]]] = defaultdict(list)
        self.log: list[Datagram] = []
        self._queue: deque[tuple[str, Send]] = deque()
        for a in self.ids:
            for b in self.ids:
                if a != b:
                    self.apply(a, self.nodes[a].learn(Member(b, addr(b)), 0.0))
        self.changes.clear()
        self.log.clear()

    # ---------------------------------------------------------------- driving

    def apply(self, src: str, actions: list[Any]) -> None:
        self._record(src, actions)
        while self._queue:
            sender, send = self._queue.popleft()
            assert send.address == addr(send.to)
            msg = wire(send.message)
            probe = Datagram(self.now, sender, send.to, msg, True)
            lost = self._lost(probe)
            self.log.append(Datagram(self.now, sender, send.to, msg, not lost))
            if not lost:
                self._record(send.to, self.nodes[send.to].receive(sender, msg, self.now))

    def _record(self, src: str, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, StateChange):
                self.changes[src].append((self.now, action.member))
            else:
                assert isinstance(action, Send), action
                self._queue.append((src, action))

    def _lost(self, d: Datagram) -> bool:
        if d.src in self.down or d.dst in self.down or frozenset((d.src, d.dst)) in self.cut:
            return True
        if self.drop_if is not None and self.drop_if(d):
            return True
        return self.loss > 0 and self.rng.random() < self.loss

    def act(self, node_id: str, method: str, *args: Any) -> None:
        """Call a hint/command (``learn``, ``link_down``, ``leave``, ``set_tags``...) at the current time."""
        self.apply(node_id, getattr(self.nodes[node_id], method)(*args, self.now))

    def step(self) -> None:
        self.k += 1
        self.now = round(self.k * STEP, 9)
        for nid, node in self.nodes.items():
            if nid not in self.down:
                self.apply(nid, node.tick(self.now))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.step()

    def run_until(self, done: Callable[[], bool], limit: float) -> float:
        """Step until ``done()``; return the time it took (fail after ``limit`` seconds)."""
        start = self.now
        while not done():
            assert self.now - start < limit, f"not done after {limit} s"
            self.step()
        return self.now - start

    # ---------------------------------------------------------------- looking

    def others(self, node_id: str) -> list[str]:
        return [i for i in self.ids if i != node_id]

    def view(self, observer: str, subject: str) -> Member:
        return self.nodes[observer].members[subject]

    def all_see(self, subject: str, state: MemberState) -> bool:
        return all(self.view(o, subject).state == state for o in self.others(subject))

    def seen(self, observer: str, subject: str) -> list[tuple[float, MemberState]]:
        return [(t, m.state) for t, m in self.changes[observer] if m.id == subject]

    def first(self, subject: str, state: MemberState) -> float | None:
        times = [t for o in self.ids for t, m in self.changes[o] if m.id == subject and m.state == state]
        return min(times, default=None)

    def ever(self, subject: str, state: MemberState) -> bool:
        return self.first(subject, state) is not None


# ------------------------------------------------------------------ config


def test_suspicion_timeout_follows_the_formula() -> None:
    assert CFG.suspicion_timeout(0) == CFG.suspicion_timeout(1) == 3.0
    assert CFG.suspicion_timeout(5) == 3.0  # log10(5) < 1: the floor of one
    assert CFG.suspicion_timeout(10) == 3.0
    assert CFG.suspicion_timeout(100) == pytest.approx(6.0)
    assert CFG.suspicion_timeout(20) == pytest.approx(3.0 * math.log10(20))
    cfg = SwimConfig(probe_interval=0.2, probe_timeout=0.1, suspicion_mult=4.0)
    assert cfg.suspicion_timeout(1000) == pytest.approx(4.0 * 3 * 0.2)


# ------------------------------------------------------------------ 1. probe -> ack


def test_ping_is_acked_and_the_ack_ends_the_probe() -> None:
    a, b = make("a", ["b"]), make("b", ["a"])
    target, seq = start_probe(a, 0.0)
    assert (target, seq) == ("b", 1)
    (ack,) = sends(b.receive("a", wire({"t": "ping", "seq": seq}), 0.01))
    assert (ack.to, ack.address, ack.message) == ("a", addr("a"), {"t": "ack", "seq": seq})
    assert a.receive("b", wire(ack.message), 0.01) == []
    assert a._probe is None
    for now in (0.5, 0.75, 0.99):  # no indirect probe, no suspicion
        assert a.tick(now) == []
    assert a.members["b"].state == ALIVE


def test_an_ack_with_another_seq_does_not_end_the_probe() -> None:
    a = make("a", ["b"])
    _, seq = start_probe(a)
    a.receive("b", {"t": "ack", "seq": seq + 7}, 0.1)
    assert a._probe is not None
    a.tick(CFG.probe_timeout)
    (change,) = changes(a.tick(CFG.probe_interval))
    assert (change.id, change.state) == ("b", SUSPECT)


def test_one_probe_per_interval_round_robin_over_all_members() -> None:
    peers = ["b", "c", "d", "e"]
    a = make("a", peers, seed=3)
    targets = []
    now = 0.0
    for _ in range(3 * len(peers)):
        actions = a.tick(now)
        pings = [s for s in sends(actions) if s.message["t"] == "ping"]
        assert len(pings) == 1
        targets.append(pings[0].to)
        a.receive(pings[0].to, {"t": "ack", "seq": pings[0].message["seq"]}, now)
        assert a.tick(now + CFG.probe_interval / 2) == []  # one probe per interval, not more
        now += CFG.probe_interval
    for i in range(0, len(targets), len(peers)):
        assert sorted(targets[i : i + len(peers)]) == peers  # every member once per round


def test_only_live_members_are_probed() -> None:
    a = make("a", ["b", "c", "d"])
    a.members["b"] = Member("b", addr("b"), state=FAILED)
    a.members["c"] = Member("c", addr("c"), state=LEFT)
    for i in range(4):
        target, seq = start_probe(a, float(i))
        assert target == "d"
        a.receive("d", {"t": "ack", "seq": seq}, float(i))
    a.members["d"] = Member("d", addr("d"), state=FAILED)
    assert a.tick(10.0) == []  # nobody left to probe
    assert a.size() == 1


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_healthy_cluster_stays_alive_for_a_minute(n: int) -> None:
    net = Net(n, seed=n)
    net.run(60.0)
    for observer in net.ids:
        assert [m for _, m in net.changes[observer] if m.state != ALIVE] == []
        for subject in net.others(observer):
            assert net.view(observer, subject).state == ALIVE
            assert net.view(observer, subject).incarnation == 0
    pings = [d for d in net.log if d.msg["t"] == "ping"]
    acks = [d for d in net.log if d.msg["t"] == "ack"]
    assert len(acks) == len(pings)
    assert not any(d.msg["t"] == "ping-req" for d in net.log)  # never needed
    for observer in net.ids:  # each node probed once per interval, every member in turn
        mine = [d for d in pings if d.src == observer]
        assert 59 <= len(mine) <= 61
        assert {d.dst for d in mine} == set(net.others(observer))


# ------------------------------------------------------------------ 2. timeout, indirect, suspect, failed


def test_probe_timeout_sends_ping_req_then_suspects_then_fails() -> None:
    a = make("a", ["b", "c", "d", "e", "f"], seed=1)
    target, seq = start_probe(a, 0.0)
    assert a.tick(CFG.probe_timeout - 0.01) == []
    reqs = sends(a.tick(CFG.probe_timeout))
    helpers = [s.to for s in reqs]
    assert len(helpers) == CFG.indirect_checks and len(set(helpers)) == len(helpers)
    assert target not in helpers and "a" not in helpers
    for req in reqs:
        assert req.message == {"t": "ping-req", "seq": seq, "target": target, "addr": addr(target)}
    assert a.tick(CFG.probe_interval - 0.01) == []
    actions = a.tick(CFG.probe_interval)
    (change,) = changes(actions)
    assert (change.id, change.state, change.incarnation) == (target, SUSPECT, 0)
    # the suspicion goes to every live member at once, the suspect included (so that it can refute)
    gossips = [s for s in sends(actions) if s.message["t"] == "gossip"]
    assert {s.to for s in gossips} == {"b", "c", "d", "e", "f"}
    assert all(s.message["u"] == [upd("suspect", target, 0)] for s in gossips)
    assert a.suspected_at[target] == CFG.probe_interval
    timeout = CFG.suspicion_timeout(a.size())
    assert [m for m in changes(a.tick(CFG.probe_interval + timeout - 0.01)) if m.id == target] == []
    failed = [m for m in changes(a.tick(CFG.probe_interval + timeout)) if m.id == target]
    assert [(m.state, m.incarnation) for m in failed] == [(FAILED, 0)]
    assert target not in a.suspected_at
    assert target not in {m.id for m in a.live()}


def test_ping_req_goes_to_fewer_helpers_when_fewer_exist() -> None:
    a = make("a", ["b", "c"])
    target, _ = start_probe(a)
    (req,) = sends(a.tick(CFG.probe_timeout))
    assert req.message["t"] == "ping-req" and req.to not in (target, "a")
    alone = make("a", ["b"])
    start_probe(alone)
    assert alone.tick(CFG.probe_timeout) == []  # nobody to ask


def test_helper_relays_ping_and_ack_for_the_requester() -> None:
    h = make("h", ["a", "b"])
    (ping,) = sends(h.receive("a", wire({"t": "ping-req", "seq": 41, "target": "b", "addr": addr("b")}), 1.0))
    assert ping.to == "b" and ping.address == addr("b")
    assert ping.message["t"] == "ping" and ping.message["addr"] == addr("h")
    relay_seq = ping.message["seq"]
    (ack,) = sends(h.receive("b", {"t": "ack", "seq": relay_seq}, 1.1))
    assert (ack.to, ack.message) == ("a", {"t": "ack", "seq": 41, "via": "h"})
    assert h.receive("b", {"t": "ack", "seq": relay_seq}, 1.2) == []  # relayed once only


def test_relay_expires_after_a_probe_interval() -> None:
    h = make("h", ["a", "b"])
    (ping,) = sends(h.receive("a", {"t": "ping-req", "seq": 5, "target": "b", "addr": addr("b")}, 1.0))
    h.tick(1.0 + CFG.probe_interval)
    assert sends(h.receive("b", {"t": "ack", "seq": ping.message["seq"]}, 1.0 + CFG.probe_interval)) == []


def test_helper_pings_a_target_it_does_not_know() -> None:
    h = make("h", ["a"])
    (ping,) = sends(h.receive("a", {"t": "ping-req", "seq": 5, "target": "z", "addr": addr("z")}, 0.0))
    assert (ping.to, ping.address) == ("z", addr("z"))
    assert "z" not in h.members


def test_relayed_ping_from_a_stranger_is_acked_at_its_address() -> None:
    b = make("b", ["c"])
    (ack,) = sends(b.receive("h", {"t": "ping", "seq": 9, "addr": addr("h")}, 0.0))
    assert (ack.to, ack.address, ack.message) == ("h", addr("h"), {"t": "ack", "seq": 9})
    assert "h" not in b.members
    assert b.receive("h", {"t": "ping", "seq": 9}, 0.0) == []  # no address: nowhere to answer


def test_relayed_ack_ends_the_requesters_probe() -> None:
    a = make("a", ["b", "c", "d"])
    target, seq = start_probe(a)
    helper = sends(a.tick(CFG.probe_timeout))[0].to
    assert a.receive(helper, wire({"t": "ack", "seq": seq, "via": helper}), 0.7) == []
    assert a._probe is None
    assert [m for m in changes(a.tick(CFG.probe_interval)) if m.state != ALIVE] == []
    assert a.members[target].state == ALIVE


@pytest.mark.parametrize("n", [5, 10, 20])
def test_node_that_stops_answering_is_detected_in_bounded_time(n: int) -> None:
    net = Net(n, seed=7)
    net.run(3.0)
    t0 = net.now
    x = "n0"
    net.down.add(x)
    timeout = CFG.suspicion_timeout(n)
    net.run_until(lambda: net.all_see(x, FAILED), limit=timeout + n * CFG.probe_interval)
    net.run(2.0)  # and it stays so
    assert net.all_see(x, FAILED)
    # the first probe of x after it stopped: ping, then ping-req to helpers, then suspect, then failed
    first_ping = next(d for d in net.log if d.dst == x and d.msg["t"] == "ping" and d.at > t0)
    prober, seq, tp = first_ping.src, first_ping.msg["seq"], first_ping.at
    reqs = [d for d in net.log if d.src == prober and d.msg["t"] == "ping-req" and d.msg["seq"] == seq]
    assert len(reqs) == min(CFG.indirect_checks, n - 2)
    assert {d.msg["target"] for d in reqs} == {x}
    assert all(tp + CFG.probe_timeout <= d.at <= tp + CFG.probe_timeout + STEP + 1e-9 for d in reqs)
    for req in reqs:  # each helper pinged x for the prober (x did not answer)
        assert any(
            d.src == req.dst and d.dst == x and d.msg["t"] == "ping" and d.msg.get("addr") == addr(req.dst)
            for d in net.log
        )
    suspected, failed = net.first(x, SUSPECT), net.first(x, FAILED)
    assert suspected is not None and failed is not None
    assert tp + CFG.probe_interval <= suspected <= tp + CFG.probe_interval + STEP + 1e-9
    assert suspected + timeout <= failed <= suspected + timeout + STEP + 1e-9
    # overall (for this seed, where x is probed in the first round after it stopped; in general the wait
    # for the first probe is random, see test_detection_time_decomposes_over_many_seeds)
    detection = failed - t0
    assert timeout <= detection <= timeout + 2 * CFG.probe_interval + 2 * STEP
    # nobody else was ever suspected; x's record went suspect -> failed, never back
    for observer in net.others(x):
        assert {m.id for _, m in net.changes[observer] if m.state != ALIVE} == {x}
        assert net.seen(observer, x)[-1][1] == FAILED
        assert net.view(observer, x).incarnation == 0
        assert ALIVE not in [s for _, s in net.seen(observer, x)]


@pytest.mark.parametrize("seed", range(8))
def test_detection_time_decomposes_over_many_seeds(seed: int) -> None:
    """Whatever the seed: failed = first unanswered ping + probe_interval + suspicion timeout."""
    net = Net(5, seed=seed)
    net.run(2.0)
    t0 = net.now
    net.down.add("n3")
    net.run_until(lambda: net.all_see("n3", FAILED), limit=15.0)
    tp = next(d.at for d in net.log if d.dst == "n3" and d.msg["t"] == "ping" and d.at > t0)
    failed = net.first("n3", FAILED)
    assert failed is not None
    expected = tp + CFG.probe_interval + CFG.suspicion_timeout(5)
    assert expected <= failed <= expected + 2 * STEP + 1e-9


# ------------------------------------------------------------------ 3. indirect probe through a helper


@pytest.mark.parametrize("n", [3, 4, 6])
def test_indirect_probe_keeps_a_member_alive_when_only_the_direct_path_is_broken(n: int) -> None:
    net = Net(n, seed=11)
    net.cut.add(frozenset(("n0", "n1")))
    net.run(30.0)
    for observer in net.ids:
        assert [(t, m.id, m.state) for t, m in net.changes[observer]] == []
    assert net.view("n0", "n1").state == ALIVE and net.view("n1", "n0").state == ALIVE
    # the rescue went through helpers, both ways
    for a, b in (("n0", "n1"), ("n1", "n0")):
        reqs = [d for d in net.log if d.src == a and d.msg["t"] == "ping-req" and d.msg["target"] == b]
        assert reqs and all(d.delivered for d in reqs)
        relayed = [d for d in net.log if d.dst == a and d.msg["t"] == "ack" and "via" in d.msg]
        assert relayed and {d.msg["via"] for d in relayed} <= set(net.ids) - {a, b}
    assert all(not d.delivered for d in net.log if {d.src, d.dst} == {"n0", "n1"})


def test_without_indirect_checks_a_broken_direct_path_means_suspicion() -> None:
    """The control experiment for the test above: the helpers are what saves n1."""
    net = Net(4, seed=11, config=dataclasses.replace(CFG, indirect_checks=0))
    net.cut.add(frozenset(("n0", "n1")))
    net.run(30.0)
    assert SUSPECT in [s for _, s in net.seen("n0", "n1")]
    assert not any(d.msg["t"] == "ping-req" for d in net.log)


# ------------------------------------------------------------------ 4. refutation


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    x = make("x", ["a", "b"], incarnation=4)
    actions = x.receive("a", wire(gossip(upd("suspect", "x", 4))), 1.0)
    assert x.incarnation == 5
    assert changes(actions) == []  # no record about itself
    out = sends(actions)
    assert {s.to for s in out} == {"a", "b"}
    assert all(s.message == {"t": "gossip", "u": [upd("alive", "x", 5, {})]} for s in out)
    # the refutation clears the suspicion at the accuser
    a = make("a", ["x", "b"])
    a.members["x"] = Member("x", addr("x"), state=SUSPECT, incarnation=4)
    a.suspected_at["x"] = 1.0
    (change,) = changes(a.receive("x", wire(out[0].message), 1.5))
    assert (change.state, change.incarnation) == (ALIVE, 5)
    assert "x" not in a.suspected_at
    assert [m for m in changes(a.tick(1.0 + 10 * CFG.suspicion_timeout(3))) if m.id == "x"] == []


@pytest.mark.parametrize("kind", ["suspect", "failed", "left"])
@pytest.mark.parametrize(("inc", "refutes"), [(4, False), (5, True), (6, True), (9, True)])
def test_updates_about_self(kind: str, inc: int, refutes: bool) -> None:
    x = make("x", ["a", "b"], incarnation=5)
    actions = x.receive("a", gossip(upd(kind, "x", inc)), 1.0)
    assert "x" not in x.members and changes(actions) == []
    if not refutes:  # an accusation about an older incarnation: no new incarnation
        assert x.incarnation == 5
        return
    assert x.incarnation == inc + 1
    out = sends(actions)
    assert {s.to for s in out} == {"a", "b"}
    assert all(s.message == gossip(upd("alive", "x", inc + 1, {})) for s in out)


def test_alive_about_self_is_ignored() -> None:
    x = make("x", ["a"], incarnation=5)
    assert x.receive("a", gossip(upd("alive", "x", 9, {"k": "v"})), 1.0) == []
    assert x.incarnation == 5 and "x" not in x.members


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_paused_node_gets_suspected_and_refutes(seed: int) -> None:
    net = Net(5, seed=seed)
    net.run(3.0)
    x = "n0"
    net.down.add(x)  # a blocked event loop: no ticks, nothing in or out
    paused = net.run_until(lambda: net.ever(x, SUSPECT), limit=5 * CFG.probe_interval)
    net.run(0.3)  # resumes soon after the suspicion, well within the suspicion window
    assert paused + 0.3 < CFG.suspicion_timeout(5)  # (and paused for less than the timeout: seeds chosen so)
    assert not net.ever(x, FAILED)
    net.down.discard(x)
    net.run_until(lambda: net.all_see(x, ALIVE), limit=CFG.suspicion_timeout(5))
    net.run(10.0)
    assert net.nodes[x].incarnation >= 1
    for observer in net.others(x):
        assert net.view(observer, x).state == ALIVE
        assert net.view(observer, x).incarnation == net.nodes[x].incarnation
        assert FAILED not in [s for _, s in net.seen(observer, x)]
    assert not net.ever(x, FAILED)
    for observer in net.ids:  # and nobody else got hurt
        assert all(net.view(observer, o).state == ALIVE for o in net.others(observer))


def test_node_paused_for_less_than_the_suspicion_timeout_is_never_declared_failed() -> None:
    """The module docstring: a slow node is not declared failed 'as long as it answers within the
    suspicion window'. Paused 2.5 s < 3 s (and suspected at least 1 s into the pause), it answers
    probes again at least 1.5 s before anyone's timeout, yet often goes through FAILED."""
    timeout = CFG.suspicion_timeout(5)
    failed_seeds = []
    for seed in range(10):
        net = Net(5, seed=seed)
        net.run(3.0)
        net.down.add("n0")
        net.run(timeout - 0.5)
        net.down.discard("n0")
        net.run(2 * timeout)
        if net.ever("n0", FAILED):
            failed_seeds.append(seed)
    assert failed_seeds == []


# ------------------------------------------------------------------ 5. failed, then back


def test_failed_member_that_talks_is_told_it_failed() -> None:
    a = make("a", ["x", "b"])
    a.members["x"] = Member("x", addr("x"), state=FAILED, incarnation=3)
    ping_req = {"t": "ping-req", "seq": 1, "target": "b", "addr": addr("b")}
    for message in ({"t": "ping", "seq": 1}, {"t": "ack", "seq": 1}, ping_req):
        (reply,) = a.receive("x", wire(message), 10.0)
        assert (reply.to, reply.address) == ("x", addr("x"))
        assert reply.message == {"t": "gossip", "u": [upd("failed", "x", 3)]}
    assert a.members["x"].state == FAILED
    x = make("x", ["a", "b"], incarnation=3)
    refute = sends(x.receive("a", wire(reply.message), 10.0))
    assert x.incarnation == 4 and {s.to for s in refute} == {"a", "b"}
    (change,) = changes(a.receive("x", wire(refute[0].message), 10.0))
    assert (change.state, change.incarnation) == (ALIVE, 4)
    # and it is probed and acked again
    assert "x" in {m.id for m in a.live()}


def test_failed_member_whose_message_carries_its_refutation_is_served_normally() -> None:
    a = make("a", ["x"])
    a.members["x"] = Member("x", addr("x"), state=FAILED, incarnation=3)
    actions = a.receive("x", wire({"t": "ping", "seq": 8, "u": [upd("alive", "x", 4, {})]}), 10.0)
    assert [(m.state, m.incarnation) for m in changes(actions)] == [(ALIVE, 4)]
    assert any(s.to == "x" and s.message["t"] == "ack" and s.message["seq"] == 8 for s in sends(actions))


def test_node_declared_failed_comes_back_alive_with_a_higher_incarnation() -> None:
    net = Net(5, seed=4)
    net.run(3.0)
    x = "n2"
    net.down.add(x)
    net.run_until(lambda: net.all_see(x, FAILED), limit=15.0)
    net.run(3.0)
    assert net.nodes[x].incarnation == 0
    back = net.now
    net.down.discard(x)
    net.run_until(lambda: net.all_see(x, ALIVE), limit=3 * CFG.probe_interval)
    net.run(10.0)
    assert any(d.dst == x and d.delivered and d.at >= back and d.carries("failed", x, 0) for d in net.log)
    assert net.nodes[x].incarnation == 1
    for observer in net.others(x):
        states = [s for _, s in net.seen(observer, x)]
        assert states[-2:] == [FAILED, ALIVE]
        assert net.view(observer, x).incarnation == 1
        assert net.view(x, observer).state == ALIVE  # x did not tick while down: it never suspected anyone
    assert net.all_see(x, ALIVE)


def test_lost_refutation_is_repeated_when_the_accusation_comes_again() -> None:
    net = Net(5, seed=0)
    net.run(2.0)
    net.drop_if = lambda d: d.carries("alive", "n0", 1)  # the refutation is lost (every copy, for 5 s)
    net.act("n1", "link_down", "n0")
    net.run(5.0)
    assert net.nodes["n0"].incarnation == 1
    net.drop_if = None  # a perfect network from now on
    net.run(30.0)
    assert net.all_see("n0", ALIVE)


def test_accusation_below_own_incarnation_is_answered_with_an_alive() -> None:
    x = make("x", ["a", "b"], incarnation=0)
    x.receive("a", gossip(upd("suspect", "x", 0)), 1.0)  # refutes to 1; say these datagrams are lost
    assert x.incarnation == 1
    # a says "you failed" at the incarnation it holds: x should tell it that it lives at 1
    out = sends(x.receive("a", gossip(upd("failed", "x", 0)), 5.0))
    assert any(s.to == "a" and upd("alive", "x", 1, {}) in s.message["u"] for s in out)


# ------------------------------------------------------------------ 6. leave


def test_leave_reaches_everyone_as_left_and_stops_probing() -> None:
    net = Net(4, seed=5)
    net.run(2.0)
    x = "n3"
    net.act(x, "leave")
    assert net.all_see(x, LEFT)
    assert all(net.view(o, x).incarnation == 0 for o in net.others(x))
    left_at = net.now
    net.run(10.0)
    assert not any(d.src == x and d.msg["t"] in ("ping", "ping-req") and d.at > left_at for d in net.log)
    assert not any(d.dst == x and d.msg["t"] == "ping" and d.at > left_at for d in net.log)
    assert net.all_see(x, LEFT)
    for observer in net.others(x):
        assert [s for _, s in net.seen(observer, x)] == [LEFT]
    # a failed at the same incarnation, arriving later, does not override LEFT
    net.act("n0", "receive", "n1", gossip(upd("failed", x, 0)))
    net.act("n0", "receive", "n1", gossip(upd("suspect", x, 0)))
    net.act("n0", "receive", "n1", gossip(upd("alive", x, 0, {})))
    assert net.all_see(x, LEFT)
    assert net.nodes[x].incarnation == 0  # a leaving node does not refute


def test_leave_beats_an_earlier_failed_at_the_same_incarnation() -> None:
    a = make("a", ["x", "b"])
    a.members["x"] = Member("x", addr("x"), state=FAILED, incarnation=2)
    (change,) = changes(a.receive("b", gossip(upd("left", "x", 2)), 1.0))
    assert (change.state, change.incarnation) == (LEFT, 2)
    assert changes(a.receive("b", gossip(upd("failed", "x", 2)), 1.1)) == []
    assert changes(a.receive("b", gossip(upd("failed", "x", 3)), 1.1)) == []
    assert a.members["x"].state == LEFT


def test_leaving_node_does_not_refute_and_does_not_probe() -> None:
    x = make("x", ["a", "b"], incarnation=2)
    out = sends(x.leave(0.0))
    assert {s.to for s in out} == {"a", "b"}
    assert all(s.message == gossip(upd("left", "x", 2)) for s in out)
    assert x.receive("a", gossip(upd("suspect", "x", 2), upd("failed", "x", 2)), 0.1) == []
    assert x.incarnation == 2
    for now in (0.0, 1.0, 2.0, 3.0):
        assert [s for s in sends(x.tick(now)) if s.message["t"] == "ping"] == []
    (ack,) = sends(x.receive("a", {"t": "ping", "seq": 3}, 3.0))  # it still answers while it goes
    assert ack.message["t"] == "ack"


def test_member_left_hint_marks_left() -> None:
    a = make("a", ["x", "b"])
    actions = a.member_left("x", 1.0)
    (change,) = changes(actions)
    assert (change.id, change.state, change.incarnation) == ("x", LEFT, 0)
    assert sends(actions) == []  # the leaver told every member itself: passed on by piggyback
    assert a.member_left("x", 1.1) == []  # once
    assert a.member_left("nobody", 1.1) == []
    assert changes(a.receive("b", gossip(upd("failed", "x", 0)), 1.2)) == []
    assert a.members["x"].state == LEFT
    # a failed member that then says it leaves: leave beats failed
    a.members["b"] = Member("b", addr("b"), state=FAILED, incarnation=1)
    assert [(m.state, m.incarnation) for m in changes(a.member_left("b", 2.0))] == [(LEFT, 1)]


def test_left_member_that_rejoins_with_a_higher_incarnation_is_alive() -> None:
    a = make("a", ["x"])
    a.members["x"] = Member("x", addr("x"), state=LEFT, incarnation=2)
    assert changes(a.learn(Member("x", addr("x"), incarnation=2), 1.0)) == []
    (change,) = changes(a.learn(Member("x", addr("x"), {"v": "2"}, incarnation=3), 1.0))
    assert (change.state, change.incarnation, dict(change.tags)) == (ALIVE, 3, {"v": "2"})


def test_newer_left_over_older_left_keeps_a_stale_alive_out() -> None:
    a = make("a", ["b"])
    a.members["x"] = Member("x", addr("x"), state=LEFT, incarnation=1)
    a.receive("b", gossip(upd("left", "x", 3)), 1.0)  # x came back at 3 (missed here) and left again
    a.receive("b", gossip(upd("alive", "x", 3, {})), 1.1)  # a late piggybacked copy of its alive(3)
    assert a.members["x"].state == LEFT


# ------------------------------------------------------------------ 7. ordering rules


_HELD = 5
_RULES: dict[tuple[MemberState, str], tuple[bool, bool, bool]] = {
    # (held state, update kind): wins at incarnation (held - 1, held, held + 1)
    (ALIVE, "alive"): (False, False, True),
    (SUSPECT, "alive"): (False, False, True),
    (FAILED, "alive"): (False, False, True),
    (LEFT, "alive"): (False, False, True),
    (ALIVE, "suspect"): (False, True, True),
    (SUSPECT, "suspect"): (False, False, True),
    (FAILED, "suspect"): (False, False, False),
    (LEFT, "suspect"): (False, False, False),
    (ALIVE, "failed"): (False, True, True),
    (SUSPECT, "failed"): (False, True, True),
    (FAILED, "failed"): (False, False, False),  # already failed: nothing new (the docstring is silent)
    (LEFT, "failed"): (False, False, False),  # leave beats failed
    (ALIVE, "left"): (False, True, True),
    (SUSPECT, "left"): (False, True, True),
    (FAILED, "left"): (False, True, True),  # leave beats failed
    (LEFT, "left"): (False, False, True),  # "left(i) wins over everything with j <= i"
}
_CASES = [
    pytest.param(
        held,
        kind,
        _HELD + delta,
        wins,
        id=f"{held.value}@{_HELD}-{kind}@{_HELD + delta}",
    )
    for (held, kind), outcome in _RULES.items()
    for delta, wins in zip((-1, 0, 1), outcome, strict=True)
]


@pytest.mark.parametrize(("held", "kind", "inc", "wins"), _CASES)
def test_update_ordering_rules(held: MemberState, kind: str, inc: int, wins: bool) -> None:
    a = make("a", ["b", "x"])
    before = Member("x", addr("x"), {"old": "tags"}, state=held, incarnation=_HELD)
    a.members["x"] = before
    if held == SUSPECT:
        a.suspected_at["x"] = 0.5
    tags = {"new": "tags"} if kind == "alive" else None
    actions = a.receive("b", wire(gossip(upd(kind, "x", inc, tags))), 1.0)
    if not wins:
        assert actions == []
        assert a.members["x"] == before
        return
    after = a.members["x"]
    assert changes(actions) == [after]
    assert (after.state.value, after.incarnation, after.address) == (kind, inc, addr("x"))
    assert dict(after.tags) == ({"new": "tags"} if kind == "alive" else {"old": "tags"})
    # Second-hand news that a member is alive is not sent on to every member at once (whoever
    # had it first-hand did that): it rides on the next datagrams. An accusation is passed on
    # at once to every live member (the accused too, so that it can refute).
    out = sends(actions)
    assert {s.to for s in out} == (set() if kind == "alive" else {"b"} | ({"x"} if after.alive else set()))
    assert all(s.message == gossip([kind, "x", addr("x"), inc, tags]) for s in out)
    ping = a._send(a.members["b"], {"t": "ping", "seq": 1})
    assert [kind, "x", addr("x"), inc, tags] in ping.message["u"]
    # the suspicion timer runs exactly while the member is suspect
    assert ("x" in a.suspected_at) is (after.state == SUSPECT)


@pytest.mark.parametrize("kind", ["suspect", "failed", "left"])
def test_no_news_about_unknown_members_except_alive(kind: str) -> None:
    a = make("a", ["b"])
    assert a.receive("b", gossip(upd(kind, "z", 3)), 1.0) == []
    assert "z" not in a.members
    (change,) = changes(a.receive("b", gossip(upd("alive", "z", 3, {"k": "v"})), 1.0))
    assert (change.id, change.address, change.state, change.incarnation) == ("z", addr("z"), ALIVE, 3)
    assert dict(change.tags) == {"k": "v"}


def test_alive_without_tags_keeps_the_tags_held() -> None:
    a = make("a", ["b"])
    a.members["x"] = Member("x", addr("x"), {"k": "v"}, incarnation=1)
    (change,) = changes(a.receive("b", gossip(["alive", "x", "x.moved:7001", 2, None]), 1.0))
    assert dict(change.tags) == {"k": "v"} and change.address == "x.moved:7001"


def test_updates_in_one_message_apply_in_order() -> None:
    a = make("a", ["b", "x"])
    msg = gossip(upd("suspect", "x", 0), upd("alive", "x", 1, {}), upd("suspect", "x", 0))
    assert [(m.state, m.incarnation) for m in changes(a.receive("b", msg, 1.0))] == [(SUSPECT, 0), (ALIVE, 1)]
    assert a.members["x"].state == ALIVE


# ------------------------------------------------------------------ 8. hints and tags


def test_link_down_makes_an_alive_member_suspect_at_once() -> None:
    a = make("a", ["x", "b"])
    actions = a.link_down("x", 2.0)
    (change,) = changes(actions)
    assert (change.id, change.state, change.incarnation) == ("x", SUSPECT, 0)
    assert {s.to for s in sends(actions)} == {"x", "b"}
    assert a.suspected_at["x"] == 2.0
    assert a.link_down("x", 2.1) == []  # already suspect
    assert a.link_down("nobody", 2.1) == []
    # then the ordinary suspicion timeout applies
    timeout = CFG.suspicion_timeout(a.size())
    a._next_probe = math.inf  # keep probes out of the way
    assert changes(a.tick(2.0 + timeout - 0.01)) == []
    assert [(m.id, m.state) for m in changes(a.tick(2.0 + timeout))] == [("x", FAILED)]
    assert a.link_down("x", 9.0) == []  # not for failed members


def test_link_down_on_a_live_cluster_is_refuted() -> None:
    net = Net(4, seed=6)
    net.run(2.0)
    net.act("n1", "link_down", "n2")
    assert net.view("n1", "n2").incarnation == 1  # refuted at once: the suspect heard it directly
    net.run(10.0)
    assert net.all_see("n2", ALIVE)
    assert all(net.view(o, "n2").incarnation == 1 for o in net.others("n2"))
    assert not net.ever("n2", FAILED)


def test_learn_adds_a_new_member_as_alive() -> None:
    a = make("a", ["b"])
    actions = a.learn(Member("z", addr("z"), {"role": "db"}, incarnation=7), 1.0)
    (change,) = changes(actions)
    assert (change.id, change.state, change.incarnation, dict(change.tags)) == ("z", ALIVE, 7, {"role": "db"})
    # The router that linked it tells its members itself: no broadcast, only piggyback.
    assert sends(actions) == []
    assert a.learn(Member("z", addr("z"), incarnation=7), 1.1) == []  # nothing new
    assert a.learn(Member("z", addr("z"), incarnation=6), 1.1) == []  # older
    assert a.size() == 3


def test_set_tags_raises_the_incarnation_and_reaches_everyone() -> None:
    net = Net(5, seed=8)
    net.run(2.0)
    net.act("n1", "set_tags", {"role": "db"})
    assert net.nodes["n1"].incarnation == 1
    assert dict(net.nodes["n1"].local.tags) == {"role": "db"}
    for observer in net.others("n1"):
        ((_, member),) = [(t, m) for t, m in net.changes[observer] if m.id == "n1"]
        assert (member.state, member.incarnation, dict(member.tags)) == (ALIVE, 1, {"role": "db"})
    net.act("n1", "set_tags", {})
    assert all(
        (net.view(o, "n1").incarnation, dict(net.view(o, "n1").tags)) == (2, {}) for o in net.others("n1")
    )


# ------------------------------------------------------------------ 9. piggybacking


def _piggybacked(out: list[Send], update: list[Any]) -> int:
    return sum(1 for s in out if s.message["t"] != "gossip" and update in s.message.get("u", []))


def test_update_is_piggybacked_a_bounded_number_of_times() -> None:
    peers = ["b", "c", "d"]
    a = make("a", peers)
    broadcast = sends(a.set_tags({"v": "1"}, 0.0))
    update = upd("alive", "a", 1, {"v": "1"})
    assert {s.to for s in broadcast} == set(peers)
    assert all(s.message == gossip(update) for s in broadcast)
    budget = CFG.retransmit_mult * math.ceil(math.log10(a.size() + 1))
    assert budget == 3
    out: list[Send] = []
    now = 0.0
    for i in range(20):  # pings, the acks it sends, ping-reqs: all carry it until the budget is spent
        for s in sends(a.tick(now)):
            out.append(s)
            if s.message["t"] == "ping":
                a.receive(s.to, {"t": "ack", "seq": s.message["seq"]}, now)
        out += sends(a.receive(peers[i % 3], {"t": "ping", "seq": 100 + i}, now))
        out += sends(a.receive(peers[i % 3], {"t": "ping-req", "seq": i, "target": "z", "addr": "z:1"}, now))
        now += CFG.probe_interval
    assert _piggybacked(out, update) == budget
    first = [s for s in out if "u" in s.message]
    assert len(first) == budget and out[:budget] == first  # on the very next messages
    assert a._gossip == []


def test_piggyback_is_bounded_per_message_and_newest_first() -> None:
    a = make("a", ["b"])
    for i in range(CFG.max_piggyback + 4):
        a.learn(Member(f"z{i}", addr(f"z{i}")), 0.0)
    (ack,) = sends(a.receive("b", {"t": "ping", "seq": 1}, 0.0))
    carried = ack.message["u"]
    assert len(carried) == CFG.max_piggyback
    assert [u[1] for u in carried] == [f"z{i}" for i in range(CFG.max_piggyback + 3, 3, -1)]
    assert all(u[0] == "alive" for u in carried)


def test_lost_broadcast_datagram_arrives_by_piggyback_two_nodes() -> None:
    net = Net(2, seed=9)
    net.run(2.0)
    net.drop_if = lambda d: d.msg["t"] == "gossip"  # the one broadcast datagram is lost
    t0 = net.now
    net.act("n0", "set_tags", {"v": "2"})
    assert dict(net.view("n1", "n0").tags) == {}
    took = net.run_until(lambda: dict(net.view("n1", "n0").tags) == {"v": "2"}, limit=3 * CFG.probe_interval)
    assert took <= CFG.probe_interval + STEP
    carrier = next(d for d in net.log if d.at >= t0 and d.delivered and d.carries("alive", "n0", 1))
    assert carrier.msg["t"] in ("ping", "ack") and (carrier.src, carrier.dst) == ("n0", "n1")
    lost = [d for d in net.log if d.at >= t0 and d.msg["t"] == "gossip" and d.src == "n0"]
    assert len(lost) == 1 and not lost[0].delivered


def test_lost_broadcast_datagram_arrives_anyway_in_a_cluster() -> None:
    net = Net(5, seed=10)
    net.run(2.0)
    net.drop_if = lambda d: d.msg["t"] == "gossip" and (d.src, d.dst) == ("n1", "n3")
    net.act("n1", "set_tags", {"v": "2"})
    net.run_until(lambda: dict(net.view("n3", "n1").tags) == {"v": "2"}, limit=3 * CFG.probe_interval)
    assert all(net.view(o, "n1").incarnation == 1 for o in net.others("n1"))


def test_piggyback_alone_spreads_an_update_when_every_gossip_datagram_to_a_node_is_lost() -> None:
    net = Net(5, seed=1)
    net.run(2.0)
    net.drop_if = lambda d: d.msg["t"] == "gossip" and d.dst == "n3"
    net.act("n1", "set_tags", {"v": "2"})
    net.run_until(lambda: dict(net.view("n3", "n1").tags) == {"v": "2"}, limit=3 * CFG.probe_interval)
    carrier = next(d for d in net.log if d.dst == "n3" and d.delivered and d.carries("alive", "n1", 1))
    assert carrier.msg["t"] in ("ping", "ack", "ping-req")


# ------------------------------------------------------------------ 10. malformed messages


_BAD_MESSAGES: list[Any] = [
    # not an object
    None,
    [],
    "ping",
    5,
    # unknown or missing type
    {},
    {"t": "pong", "seq": 1},
    {"t": 5},
    {"t": None, "u": []},
    # bad update shapes
    {"t": "gossip", "u": ["alive"]},
    {"t": "gossip", "u": [{"t": "alive"}]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1, {}, "extra"]]},
    {"t": "gossip", "u": [["zombie", "x", addr("x"), 1, None]]},
    {"t": "gossip", "u": [["alive", 5, addr("x"), 1, None]]},
    {"t": "gossip", "u": [["alive", "x", None, 1, None]]},
    {"t": "gossip", "u": "alive"},
    {"t": "gossip", "u": {"alive": 1}},
    # incarnation not an int
    {"t": "gossip", "u": [["alive", "x", addr("x"), "1", None]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1.0, None]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), True, None]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), None, None]]},
    # bad tags
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1, ["k", "v"]]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1, "k=v"]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1, {"k": 1}]]},
    {"t": "gossip", "u": [["alive", "x", addr("x"), 1, {"k": None}]]},
    # seq not an int
    {"t": "ping", "seq": "1"},
    {"t": "ping", "seq": None},
    {"t": "ping"},
    {"t": "ping", "seq": True},
    {"t": "ping", "seq": 1.5},
    {"t": "ack", "seq": "1"},
    {"t": "ack"},
    {"t": "ping-req", "seq": "1", "target": "c", "addr": addr("c")},
    # ping-req without a target
    {"t": "ping-req", "seq": 1},
    {"t": "ping-req", "seq": 1, "target": "c"},
    {"t": "ping-req", "seq": 1, "target": 5, "addr": addr("c")},
    {"t": "ping-req", "seq": 1, "target": "c", "addr": 7000},
]


@pytest.mark.parametrize("message", _BAD_MESSAGES, ids=[repr(m)[:60] for m in _BAD_MESSAGES])
def test_malformed_message_raises_value_error(message: Any) -> None:
    a = make("a", ["b", "c"])
    with pytest.raises(ValueError):
        a.receive("b", message, 1.0)


@pytest.mark.parametrize("u", [5, True, 1.5])
def test_non_list_updates_raise_value_error(u: Any) -> None:
    a = make("a", ["b"])
    with pytest.raises(ValueError):
        a.receive("b", {"t": "gossip", "u": u}, 1.0)


@pytest.mark.parametrize(
    "message",
    [
        {"t": "nope", "u": [upd("alive", "z", 1, {})]},
        {"t": "gossip", "u": [upd("alive", "z", 1, {}), ["zombie", "z", addr("z"), 2, None]]},
        {"t": "ping", "seq": "1", "u": [upd("alive", "z", 1, {})]},
        {"t": "ping", "seq": "1", "u": [upd("suspect", "a", 0)]},  # a refutation, never announced
    ],
    ids=["unknown-type", "bad-second-update", "bad-seq", "bad-seq-with-accusation"],
)
def test_malformed_message_changes_nothing(message: dict[str, Any]) -> None:
    a = make("a", ["b"])
    members, local = dict(a.members), a.local
    with pytest.raises(ValueError):
        a.receive("b", message, 1.0)
    assert a.members == members and a.local == local


def test_well_formed_edge_cases_are_accepted() -> None:
    a = make("a", ["b"])
    assert a.receive("b", {"t": "gossip"}, 1.0) == []  # no updates
    assert a.receive("b", {"t": "gossip", "u": None}, 1.0) == []
    assert a.receive("b", {"t": "gossip", "u": []}, 1.0) == []
    assert a.receive("b", {"t": "ack", "seq": 12345}, 1.0) == []  # unknown seq: ignored
    assert a.receive("stranger", {"t": "ping", "seq": 1}, 1.0) == []  # unknown, no address
    (change,) = changes(a.receive("b", gossip(["alive", "z", addr("z"), 0, {}]), 1.0))
    assert change.id == "z"


# ------------------------------------------------------------------ lossy network (seeded)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moderate_loss_causes_no_failure(seed: int) -> None:
    """15% random loss: suspicions happen and get refuted; nobody is declared failed."""
    net = Net(5, seed=seed, loss=0.15)
    net.run(40.0)
    assert any(net.ever(i, SUSPECT) for i in net.ids)
    assert not any(net.ever(i, FAILED) for i in net.ids)
    net.loss = 0.0
    net.run(5.0)
    for observer in net.ids:
        for subject in net.others(observer):
            member = net.view(observer, subject)
            assert member.state == ALIVE
            assert member.incarnation == net.nodes[subject].incarnation


def test_shipped_default_timings() -> None:
    """The documented defaults (docs/membership.md): 0.5 s probes, 0.25 s timeout, 2 s suspicion, N <= 10."""
    cfg = SwimConfig()
    assert (cfg.probe_interval, cfg.probe_timeout, cfg.indirect_checks) == (0.5, 0.25, 3)
    assert cfg.suspicion_timeout(3) == cfg.suspicion_timeout(10) == 2.0
    assert cfg.suspicion_timeout(100) == 4.0


def test_gossip_queue_keeps_one_update_per_member() -> None:
    """A newer update about a member replaces a queued one: the queue cannot grow with churn."""
    lone = make("a", [])
    for i in range(1000):
        lone.set_tags({"n": str(i)}, float(i))
    assert len(lone._gossip) == 1 and lone._gossip[0][0][4] == {"n": "999"}


def test_forget_drops_a_member_that_is_down_and_only_then() -> None:
    a = make("a", ["x", "b"])
    a.forget("x")  # alive: not forgotten
    assert a.members["x"].state == ALIVE
    a.member_left("x", 1.0)
    assert any(item[0][1] == "x" for item in a._gossip)
    a.forget("x")
    assert "x" not in a.members and "x" not in a.failed_at
    assert not any(item[0][1] == "x" for item in a._gossip)  # nothing more is said about it
    # stale news of its end is not news about anyone we know: ignored
    assert changes(a.receive("b", gossip(upd("failed", "x", 0)), 2.0)) == []
    assert "x" not in a.members
    # the same id alive again is a newcomer
    (change,) = changes(a.learn(Member("x", addr("x"), incarnation=5), 3.0))
    assert (change.id, change.state) == ("x", ALIVE)
    a.forget("nobody")  # unknown: nothing happens


def test_a_forgotten_failed_member_is_no_longer_probed_as_dead() -> None:
    a = make("a", ["x"])
    a.members["x"] = Member("x", addr("x"), state=FAILED)
    a.failed_at["x"] = 1.0
    a.forget("x")
    assert not [s for s in sends(a.tick(5.0)) if s.to == "x"]


def dead_pings(actions: Iterable[object]) -> list[str]:
    return [s.to for s in sends(actions) if s.message["t"] == "ping"]


def test_failed_members_are_pinged_often_then_once_per_reconnect_interval_until_forgotten() -> None:
    config = dataclasses.replace(CFG, dead_probe_window=10.0, reconnect_interval=30.0)
    a = make("a", [], config)
    for x in ("x", "y"):
        a.members[x] = Member(x, addr(x), state=FAILED)
        a.failed_at[x] = 0.0
    # within the window: one of them per dead-probe interval, each carrying our `alive`
    early = [dead_pings(a.tick(t + 0.5)) for t in range(10)]
    assert all(len(p) == 1 for p in early) and {p[0] for p in early} == {"x", "y"}
    # past the window (10.5 s after the failures): one ping per reconnect interval, however often we tick
    (ping,) = sends(a.tick(10.5))
    assert ping.message["u"][0][:2] == ["alive", "a"]
    later = {11.0 + i: dead_pings(a.tick(11.0 + i)) for i in range(61)}
    assert [t for t, p in later.items() if p] == [41.0, 71.0]
    a.forget("x")
    a.forget("y")
    assert dead_pings(a.tick(200.0)) == []
