"""The failure detector (pydevts.swim.FailureDetector, sans-IO), SWIM deadlines, and the IO driver.

- the detector: the datagram envelope, bad datagrams counted, another cluster
  refused, bugs costing one datagram, unconfirmed members not reported alive,
  too-large messages not sent, the ``swim_*`` statistics;
- :meth:`SwimState.next_deadline`: a property test over random membership
  scenarios (fake clock) that a tick strictly before the deadline does nothing
  and changes nothing, and that a tick at the deadline does something;
- :class:`pydevts.swim.Liveness`: a quiet node's tick task sleeps from deadline
  to deadline (not every 50 ms), and an input that brings work sooner wakes it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.errors import ConnectionClosedError
from pydevts.members import Member, MemberState
from pydevts.protocols import Address
from pydevts.swim import (
    FailureDetector,
    Liveness,
    MemberChanged,
    Send,
    SendDatagram,
    SwimConfig,
    SwimState,
    SwimStats,
)
from pydevts.wire.datagrams import MAX_DATAGRAM

CLUSTER = "default"


def addr(node_id: str) -> str:
    return f"127.0.0.1:{7000 + sum(node_id.encode()) % 1000}"


def datagram(message: Any, sender: Any = "b", cluster: Any = CLUSTER) -> bytes:
    return json.dumps({"c": cluster, "f": sender, "m": message}).encode()


def detector(node_id: str = "a", peers: tuple[str, ...] = ("b", "c")) -> FailureDetector:
    det = FailureDetector(Member(node_id, addr(node_id)), CLUSTER, rng=random.Random(0))
    for peer in peers:
        det.learn(Member(peer, addr(peer)), 0.0)
    return det


def sent(actions: list[Any]) -> list[SendDatagram]:
    return [a for a in actions if isinstance(a, SendDatagram)]


def changed(actions: list[Any]) -> list[Member]:
    return [a.member for a in actions if isinstance(a, MemberChanged)]


# ------------------------------------------------------------------ the detector


def test_the_envelope_carries_cluster_sender_and_message_and_the_other_side_takes_it() -> None:
    a, b = detector("a", ("b",)), detector("b", ("a",))
    pings = [d for d in sent(a.tick(0.0)) if json.loads(d.data)["m"]["t"] == "ping"]
    assert len(pings) == 1
    ping = pings[0]
    assert ping.address == Address.parse(addr("b")) and ping.to == "b"
    body = json.loads(ping.data)
    assert body["c"] == CLUSTER and body["f"] == "a" and body["m"]["t"] == "ping"
    assert b" " not in ping.data  # compact JSON
    acks = sent(b.handle_datagram(ping.data, 0.01))
    assert [json.loads(d.data)["m"]["t"] for d in acks] == ["ack"] and acks[0].address == Address.parse(
        addr("a")
    )
    a.handle_datagram(acks[0].data, 0.02)
    assert a.swim.stats.probes_acked == 1 and a.bad_datagrams == b.bad_datagrams == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\xff not json",
        b"[1, 2]",
        b"[" * 100_000 + b"]" * 100_000,
        datagram({"t": "ping", "seq": 1}, sender="b\x00"),
        datagram({"t": "ping", "seq": 1}, sender=7),
        datagram({"t": "nope"}),
        datagram({"t": "ping", "seq": 10**30}),
    ],
    ids=["garbage", "not-an-object", "deep", "nul-sender", "int-sender", "bad-type", "huge-seq"],
)
def test_bad_datagrams_are_counted_and_change_nothing(data: bytes) -> None:
    det = detector()
    before = copy.deepcopy(det.swim.members)
    assert det.handle_datagram(data, 1.0) == []
    assert det.bad_datagrams == 1 and det.datagram_errors == 0
    assert det.swim.members == before
    assert det.statistics()["swim_bad_datagrams"] == 1


def test_a_datagram_of_another_cluster_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    det = detector()
    accusation = {"t": "gossip", "u": [["failed", "b", addr("b"), 5, None]]}
    assert det.handle_datagram(datagram(accusation, cluster="other"), 1.0) == []
    assert det.bad_datagrams == 1 and det.swim.members["b"].state == MemberState.ALIVE
    assert any("cluster 'other'" in r.getMessage() for r in caplog.records if r.name == "pydevts.swim")
    det.handle_datagram(datagram(accusation), 1.0)  # the same, of our cluster: believed
    assert det.swim.members["b"].state == MemberState.FAILED


def test_bad_datagram_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pydevts")
    det = detector()
    for _ in range(1000):
        det.handle_datagram(b"\xff", 1.0)
    warnings = [r for r in caplog.records if r.name == "pydevts.swim"]
    assert det.bad_datagrams == 1000 and len(warnings) <= 10
    assert det.statistics()["swim_log_lines_suppressed"] == 1000 - len(warnings)


def test_a_bug_costs_one_datagram_or_one_tick(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    det = detector()

    def broken(*args: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(det.swim, "receive", broken)
    monkeypatch.setattr(det.swim, "tick", broken)
    assert det.handle_datagram(datagram({"t": "ping", "seq": 1}), 1.0) == []
    assert det.tick(1.0) == []
    assert det.bad_datagrams == 0 and det.datagram_errors == 2
    tracebacks = [r for r in caplog.records if r.name == "pydevts.swim" and r.exc_info]
    assert len(tracebacks) == 2
    monkeypatch.undo()
    assert sent(det.handle_datagram(datagram({"t": "ping", "seq": 1}), 1.1))  # the next one is answered


def test_unconfirmed_members_are_not_reported_alive_until_they_answer() -> None:
    det = detector(peers=("b",))
    gossip = {"t": "gossip", "u": [["alive", "z", addr("z"), 3, {}]]}
    actions = det.handle_datagram(datagram(gossip), 1.0)
    assert "z" in det.swim.members and not det.swim.confirmed("z")
    assert changed(actions) == [] and not any(d.to == "z" for d in sent(actions))
    now, seq = 1.0, None
    while seq is None:  # unconfirmed members get every other probe turn
        now += det.swim.config.probe_interval
        for d in sent(det.tick(now)):
            message = json.loads(d.data)["m"]
            if d.to == "z" and message["t"] == "ping":
                seq = message["seq"]
                assert "u" not in message  # nothing piggybacked to an unconfirmed member
    reported = changed(det.handle_datagram(datagram({"t": "ack", "seq": seq}, sender="z"), now + 0.01))
    assert [(m.id, m.state) for m in reported] == [("z", MemberState.ALIVE)]


def test_a_failure_of_an_unconfirmed_member_is_reported() -> None:
    det = detector()
    det.handle_datagram(datagram({"t": "gossip", "u": [["alive", "z", addr("z"), 5, {}]]}), 1.0)
    actions = det.handle_datagram(datagram({"t": "gossip", "u": [["failed", "z", addr("z"), 5, None]]}), 1.1)
    assert [(m.id, m.state) for m in changed(actions)] == [("z", MemberState.FAILED)]


def test_a_message_too_large_or_to_a_bad_address_is_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    det = detector()
    assert det._encode(Send("b", addr("b"), {"t": "gossip", "x": "y" * MAX_DATAGRAM})) is None
    assert any("too large" in r.getMessage() for r in caplog.records)
    assert det._encode(Send("b", "no port", {"t": "gossip"})) is None
    assert det.datagram_errors == 0
    one = det._encode(Send("b", addr("b"), {"t": "gossip"}))
    two = det._encode(Send("b", addr("b"), {"t": "gossip"}))
    assert one is not None and two is not None and one.address is two.address  # parsed once


def test_statistics_keep_the_swim_names() -> None:
    det = detector()
    stats = det.statistics()
    expected = {"swim_bad_datagrams", "swim_datagram_errors", "swim_log_lines_suppressed"}
    expected |= {f"swim_{f.name}" for f in dataclasses.fields(SwimStats)}
    assert set(stats) == expected and all(isinstance(v, int) for v in stats.values())


def test_the_detector_deadline_is_the_machines_and_moves_with_ticks() -> None:
    det = detector(peers=())
    assert det.next_deadline() == 0.0  # a new machine: the first probe round is due at once
    det.tick(0.0)
    config = det.swim.config
    assert det.next_deadline() == min(config.probe_interval, config.dead_probe_interval)
    det.swim.leave(0.1)
    assert det.next_deadline() is None  # leaving, nothing pending: nothing until an input


# ------------------------------------------------------------------ next_deadline, a property


PEERS = [f"m{i}" for i in range(6)]


def snapshot(state: SwimState) -> Any:
    """Everything a tick could change (the rng and the newcomers' bucket included)."""
    fields = {
        f.name: getattr(state, f.name)
        for f in dataclasses.fields(state)
        if f.name not in ("rng", "config", "_unconfirmed")
    }
    bucket = state._unconfirmed.bucket
    return copy.deepcopy(fields), state.rng.getstate(), dict(state._unconfirmed.since), vars(bucket).copy()


def check_deadline(state: SwimState, now: float, fraction: float) -> None:
    deadline = state.next_deadline()
    if deadline is None:
        quiet = copy.deepcopy(state)
        before = snapshot(quiet)
        assert quiet.tick(now + 1e6) == [] and snapshot(quiet) == before
        return
    for t in {
        math.nextafter(deadline, -math.inf),
        deadline - fraction,
        min(now, math.nextafter(deadline, -math.inf)),
    }:
        early = copy.deepcopy(state)
        before = snapshot(early)
        assert early.tick(t) == [], f"tick at {t} before the deadline {deadline} acted"
        assert snapshot(early) == before, f"tick at {t} before the deadline {deadline} changed the state"
    due = copy.deepcopy(state)
    before = snapshot(due)
    actions = due.tick(deadline)
    assert actions or snapshot(due) != before, f"nothing happened at the deadline {deadline}"


def peer_message(
    state: SwimState, op: str, i: int, j: int, inc: int, kind: str
) -> tuple[str, dict[str, Any]]:
    """(sender, message) for one random datagram; acks answer the probe or a relay in flight."""
    sender, subject = PEERS[i], PEERS[j] if op != "about-me" else state.local.id
    if op == "ack" and state._probe is not None:
        return state._probe.target, {"t": "ack", "seq": state._probe.seq}
    if op == "ack" and state._relays:
        seq = sorted(state._relays)[j % len(state._relays)]
        return sender, {"t": "ack", "seq": seq}
    if op == "ping":
        return sender, {"t": "ping", "seq": j + 1}
    if op == "ping-req":
        return sender, {"t": "ping-req", "seq": j + 1, "target": subject, "addr": addr(subject)}
    tags = {"k": str(inc)} if kind == "alive" else None
    return sender, {"t": "gossip", "u": [[kind, subject, addr(subject), inc, tags]]}


OPS = st.tuples(
    st.sampled_from(
        [
            "advance",
            "advance",
            "to-deadline",
            "to-deadline",
            "learn",
            "gossip",
            "gossip",
            "about-me",
            "ack",
            "ack",
            "ping",
            "ping-req",
            "link-down",
            "confirm-failed",
            "member-left",
            "forget",
            "tags",
            "leave",
        ]
    ),
    st.integers(0, len(PEERS) - 1),
    st.integers(0, len(PEERS) - 1),
    st.integers(0, 3),
    st.sampled_from(["alive", "suspect", "failed", "left"]),
    st.floats(0.0, 3.0),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, min_size=1, max_size=40),
    small=st.booleans(),
    seed=st.integers(0, 2**16),
    learned=st.integers(0, 4),
)
def test_property_a_tick_before_the_deadline_does_nothing_and_one_at_it_does_something(
    ops: list[tuple[str, int, int, int, str, float]], small: bool, seed: int, learned: int
) -> None:
    config = (
        SwimConfig(max_members=4, new_members_burst=2, new_members_per_second=1.0, reconnect_interval=2.0)
        if small
        else SwimConfig()
    )
    state = SwimState(Member("a", addr("a")), config, random.Random(seed))
    now = 0.0
    for peer in PEERS[:learned]:
        state.learn(Member(peer, addr(peer)), now)
    check_deadline(state, now, 0.5)
    for op, i, j, inc, kind, dt in ops:
        peer = PEERS[i]
        if op == "advance":
            now += dt
            state.tick(now)
        elif op == "to-deadline":
            deadline = state.next_deadline()
            now = max(now, deadline if deadline is not None else now + dt)
            state.tick(now)
        elif op == "learn":
            state.learn(Member(peer, addr(peer), incarnation=inc), now)
        elif op == "link-down":
            state.link_down(peer, now)
        elif op == "confirm-failed":
            state.confirm_failed(peer, now)
        elif op == "member-left":
            state.member_left(peer, now)
        elif op == "forget":
            state.forget(peer)
        elif op == "tags":
            state.set_tags({"k": str(dt)}, now)
        elif op == "leave":
            state.leave(now)
        else:
            sender, message = peer_message(state, op, i, j, inc, kind)
            state.receive(sender, json.loads(json.dumps(message)), now)
        check_deadline(state, now, dt / 3 + 1e-6)


# ------------------------------------------------------------------ the IO driver


class QuietEndpoint:
    """A datagram channel nobody writes to; records what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Address]] = []
        self.closed = anyio.Event()

    def send(self, data: bytes, address: Address) -> None:
        self.sent.append((data, address))

    async def receive(self) -> bytes:
        await self.closed.wait()
        raise ConnectionClosedError("closed")

    async def aclose(self) -> None:
        self.closed.set()


@pytest.mark.anyio
async def test_the_driver_sleeps_from_deadline_to_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = QuietEndpoint()
    ticks: list[float] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def open_datagrams() -> QuietEndpoint:
                return endpoint

            def spawn(fn: Any, *, name: str | None = None) -> None:
                tg.start_soon(fn, name=name)

            ctx: Any = SimpleNamespace(
                hello=SimpleNamespace(cluster=CLUSTER), open_datagrams=open_datagrams, spawn=spawn
            )
            live = Liveness(ctx, Member("a", addr("a")), lambda member: None)
            real_tick = live.swim.tick

            def tick(now: float) -> Any:
                ticks.append(now)
                return real_tick(now)

            monkeypatch.setattr(live.swim, "tick", tick)
            start = anyio.current_time()
            await live.start()
            await anyio.sleep(0.6)
            quiet = len(ticks)
            # A quiet one-member node: the first round at once, the next probe round 0.5 s later
            # (the 50 ms ticks of old made ~12 calls here).
            assert 1 <= quiet <= 4, ticks
            assert all(t >= start for t in ticks)

            # An accusation about a member we do not send to is due at once: it wakes the sleeper.
            gossip = {"t": "gossip", "u": [["alive", "z", addr("z"), 1, {}]]}
            live.handle_datagram(datagram(gossip), anyio.current_time())
            accused = anyio.current_time()
            live.handle_datagram(
                datagram({"t": "gossip", "u": [["suspect", "z", addr("z"), 1, None]]}), accused
            )
            deadline = live.detector.next_deadline()
            assert deadline is not None and deadline <= accused
            to_z = Address.parse(addr("z"))
            with anyio.fail_after(0.25):  # well before the next probe round (0.4 s away)
                while not any(a == to_z and json.loads(d)["m"]["t"] == "gossip" for d, a in endpoint.sent):
                    await anyio.sleep(0.01)
            await live.aclose()
    assert live.datagram_errors == 0
