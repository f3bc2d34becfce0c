"""Liveness.handle_datagram (the SWIM driver the peer router uses) against hostile datagrams, with no IO.

Only counting comes out of a bad datagram: never an exception. What the shell
sends in answer is valid JSON, fits a datagram and is accepted by another node.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.members import Member, MemberState
from pydevts.protocols import Address
from pydevts.swim import Liveness
from pydevts.wire.datagrams import MAX_DATAGRAM

CLUSTER = "default"
HUGE = 10**4299


class Endpoint:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Address]] = []

    def send(self, data: bytes, address: Address) -> None:
        self.sent.append((data, address))


def liveness(
    node_id: str = "a", peers: tuple[str, ...] = ("b", "c")
) -> tuple[Liveness, Endpoint, list[Member]]:
    changed: list[Member] = []
    ctx: Any = SimpleNamespace(hello=SimpleNamespace(cluster=CLUSTER))
    live = Liveness(ctx, Member(node_id, f"127.0.0.1:{7000 + ord(node_id[0])}"), changed.append)
    endpoint = Endpoint()
    live._endpoint = endpoint  # type: ignore[assignment]
    for peer in peers:
        live.swim.learn(Member(peer, f"127.0.0.1:{7000 + ord(peer[0])}"), 0.0)
    endpoint.sent.clear()
    changed.clear()
    return live, endpoint, changed


def datagram(message: Any, sender: Any = "b", cluster: Any = CLUSTER) -> bytes:
    return json.dumps({"c": cluster, "f": sender, "m": message}).encode()


CRASHERS = {
    "nul-address-alive": datagram({"t": "gossip", "u": [["alive", "evil", "127.0.0.1\x00:1", 1, {}]]}),
    "nul-address-ping": datagram({"t": "ping", "seq": 1, "addr": "evil\x00:1"}, sender="stranger"),
    "nul-address-ping-req": datagram({"t": "ping-req", "seq": 1, "target": "z", "addr": "\x00:1"}),
    "huge-incarnation": datagram({"t": "gossip", "u": [["suspect", "a", "127.0.0.1:7097", HUGE, None]]}),
    "huge-seq": datagram({"t": "ping", "seq": HUGE}),
    "nul-sender": datagram({"t": "ping", "seq": 1}, sender="b\x00"),
    "long-sender": datagram({"t": "ping", "seq": 1}, sender="b" * 1000),
    "surrogate-sender": b'{"c": "default", "f": "\\udcff", "m": {"t": "ping", "seq": 1}}',
    "deep-json": b"[" * 100_000 + b"]" * 100_000,
    "not-an-object": b"[1, 2]",
    "not-json": b"\xff\xfe garbage",
    "other-cluster": datagram({"t": "ping", "seq": 1}, cluster="other"),
    "too-many-updates": datagram(
        {"t": "gossip", "u": [["alive", f"evil{i}", "192.0.2.1:9", 1, {}] for i in range(200)]}
    ),
}


@pytest.mark.parametrize("data", list(CRASHERS.values()), ids=list(CRASHERS))
def test_crash_datagrams_of_the_issue_are_counted_and_dropped(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    live, endpoint, changed = liveness()
    live.handle_datagram(data, 1.0)
    assert live.bad_datagrams == 1 and live.datagram_errors == 0
    assert endpoint.sent == [] and changed == []
    assert set(live.swim.members) == {"b", "c"} and live.swim.incarnation == 0
    assert live.statistics()["swim_bad_datagrams"] == 1


def test_bad_datagram_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pydevts")
    live, _, _ = liveness()
    for _ in range(10_000):
        live.handle_datagram(b"\xff", 1.0)
    warnings = [r for r in caplog.records if r.name == "pydevts.swim"]
    assert live.bad_datagrams == 10_000
    assert len(warnings) <= 10
    assert live.statistics()["swim_log_lines_suppressed"] == 10_000 - len(warnings)


def test_a_bug_costs_only_its_datagram_counted_as_an_error_not_a_bad_datagram(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    live, endpoint, changed = liveness()

    def broken(sender: str, message: Any, now: float) -> list[Any]:
        raise KeyError("a bug")

    monkeypatch.setattr(live.swim, "receive", broken)
    live.handle_datagram(datagram({"t": "ping", "seq": 1}), 1.0)  # does not raise
    assert live.bad_datagrams == 0 and live.datagram_errors == 1
    assert endpoint.sent == [] and changed == []
    assert [r.exc_info is not None for r in caplog.records if r.name == "pydevts.swim"] == [True]


def test_gossiped_members_are_not_reported_to_the_router_until_they_answer() -> None:
    live, endpoint, changed = liveness()
    live.handle_datagram(datagram({"t": "gossip", "u": [["alive", "z", "127.0.0.1:7122", 5, {}]]}), 1.0)
    assert "z" in live.swim.members and changed == []
    assert not any(address == Address.parse("127.0.0.1:7122") for _, address in endpoint.sent)
    live.handle_datagram(datagram({"t": "gossip", "u": [["failed", "z", "127.0.0.1:7122", 5, None]]}), 1.1)
    assert [(m.id, m.state) for m in changed] == [("z", MemberState.FAILED)]  # harmless: not in the view


def test_statistics_name_what_swim_refused() -> None:
    live, _, _ = liveness()
    updates: list[list[Any]] = [["alive", f"evil{i}", "192.0.2.1:9", 1, {}] for i in range(64)]
    for _ in range(4):
        live.handle_datagram(datagram({"t": "gossip", "u": updates}), 1.0)
        updates = [[u[0], u[1] + "x", *u[2:]] for u in updates]
    stats = live.statistics()
    assert stats["swim_new_members_rate_limited"] == 4 * 64 - 200
    assert stats["swim_bad_datagrams"] == 0


# ------------------------------------------------------------------ property tests

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)
PROPERTY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(live: Liveness, endpoint: Endpoint) -> None:
    assert live.datagram_errors == 0
    assert len(live.swim.members) <= live.swim.config.max_members
    other, _, _ = liveness("b", ("a", "c"))
    for data, address in endpoint.sent:
        assert len(data) <= MAX_DATAGRAM
        assert 0 <= address.port <= 65535
        other.handle_datagram(data, 2.0)  # what we send, another node accepts
    assert other.bad_datagrams == 0 and other.datagram_errors == 0


@PROPERTY
@given(data=st.binary(max_size=200))
def test_property_random_bytes(data: bytes) -> None:
    live, endpoint, _ = liveness()
    live.handle_datagram(data, 1.0)
    live.handle_datagram(b"\x00" + data, 1.0)  # as QUIC's shared socket would pass it, unstripped
    check(live, endpoint)


@PROPERTY
@given(body=json_values, sender=st.one_of(st.sampled_from(["b", "c", "z"]), json_values))
def test_property_random_structures(body: Any, sender: Any) -> None:
    live, endpoint, _ = liveness()
    live.handle_datagram(json.dumps(body).encode(), 1.0)
    live.handle_datagram(json.dumps({"c": CLUSTER, "f": sender, "m": body}).encode(), 1.0)
    check(live, endpoint)


@PROPERTY
@given(
    kind=st.sampled_from(["alive", "suspect", "failed", "left", "x"]),
    subject=st.one_of(st.sampled_from(["a", "b", "c", "z"]), st.text(max_size=10)),
    address=st.one_of(st.sampled_from(["127.0.0.1:7122", "127.0.0.1:7097", "[::1]:1"]), st.text(max_size=30)),
    inc=st.one_of(st.integers(-2, 3), st.integers(2**64 - 3, 2**64 + 1), st.booleans()),
    tags=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)),
    t=st.sampled_from(["ping", "ack", "ping-req", "gossip"]),
    seq=st.one_of(st.integers(0, 3), st.integers(2**64 - 2, 2**64 + 1)),
)
def test_property_mutated_valid_datagrams(
    kind: str, subject: str, address: str, inc: int, tags: Any, t: str, seq: int
) -> None:
    live, endpoint, _ = liveness()
    message = {
        "t": t,
        "seq": seq,
        "target": subject,
        "addr": address,
        "u": [[kind, subject, address, inc, tags]],
    }
    live.handle_datagram(datagram(message), 1.0)
    check(live, endpoint)
