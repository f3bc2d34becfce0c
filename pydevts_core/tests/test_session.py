"""Sessions without sockets: numbering, acknowledgements, resumption and de-duplication.

Two :class:`~pydevts.wire.session.Session` objects talk over fake links whose
"wires" the test controls: it writes what a link queued, delivers part of
it, loses the rest when it cuts a link, opens new links, duplicates them.
Whatever it does, the receiver must hand over a prefix of what was sent,
once each and in order, and everything once the last link stays up.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydevts.errors import ConnectionClosedError, RemoteProtocolError
from pydevts.wire.session import ACK, NEXT, Session, encode_ack, encode_next
from pydevts.wire.sessions import SessionTable


class FakeLink:
    """The parts of a Link a session uses; ``wire`` is what has been written, not yet read."""

    def __init__(self, name: str, *, peer: str = "peer", initiated: bool = True) -> None:
        self.name = name
        self.initiated = initiated  # who opened it matters to the duplicate-link rule (keeps)
        self.local = type("Hello", (), {"node_id": name})()
        self.pending: list[bytes] = []
        self.wire: list[bytes] = []
        self.in_epoch = 0
        self.in_next = 0
        self.stall_timeout: float | None = None
        self.closed = False
        self.session: Session | None = None
        self.peer = type("Hello", (), {"extensions": {"incarnation": 1}})()
        self.peer_id = peer

    def _queue_first(self, frames: list[bytes], size: int) -> None:
        self.pending = frames + self.pending

    def _enqueue(self, frame: bytes) -> None:
        self.pending.append(frame)

    def _queue_control(self, frame: bytes) -> None:
        self.pending.append(frame)

    def _drop_queued(self) -> None:
        self.pending = []

    def _poke(self) -> None:
        pass

    def write(self) -> None:
        """What the writer task does: everything queued, plus an acknowledgement if one is owed."""
        session = self.session
        assert session is not None
        if session.ack_owed():
            self.pending.append(session.take_ack())
        self.wire += self.pending
        self.pending = []


def data(i: int) -> bytes:
    return b"\x01" + i.to_bytes(4, "big")


class Pair:
    """Sender side ``a`` and receiver side ``b`` of one member pair, and their links."""

    def __init__(self) -> None:
        self.a = Session("b", 1, high_water=1 << 30)
        self.b = Session("a", 1, high_water=1 << 30)
        self.links: list[tuple[FakeLink, FakeLink]] = []
        self.sent = 0
        self.got: list[bytes] = []

    def connect(self, by_a: bool = True) -> None:
        la, lb = FakeLink("a", peer="b", initiated=by_a), FakeLink("b", peer="a", initiated=not by_a)
        la.session, lb.session = self.a, self.b
        self.a.attach(la)  # type: ignore[arg-type]
        self.b.attach(lb)  # type: ignore[arg-type]
        self.links.append((la, lb))

    def send(self, n: int) -> None:
        for _ in range(n):
            self.a.push(data(self.sent))
            self.sent += 1

    def carry(self, index: int, count: int) -> None:
        """Write both ends of link ``index`` and read up to ``count`` frames each way."""
        la, lb = self.links[index]
        la.write()
        lb.write()
        forward, la.wire = la.wire[:count], la.wire[count:]
        self.got += self.b.accept(lb, forward)  # type: ignore[arg-type]
        back, lb.wire = lb.wire[:count], lb.wire[count:]
        self.a.accept(la, back)  # type: ignore[arg-type]

    def cut(self, index: int) -> None:
        la, lb = self.links.pop(index)
        la.wire.clear()
        lb.wire.clear()
        self.a.detach(la)  # type: ignore[arg-type]
        self.b.detach(lb)  # type: ignore[arg-type]

    def settle(self) -> None:
        for _ in range(4):
            for i in range(len(self.links)):
                self.carry(i, 1 << 30)


def numbers(frames: list[bytes]) -> list[int]:
    return [int.from_bytes(f[1:], "big") for f in frames]


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 20)),
        st.tuples(st.just("carry"), st.integers(0, 3), st.integers(0, 30)),
        st.tuples(st.just("cut"), st.integers(0, 3)),
        st.tuples(st.just("connect"), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_whatever_happens_to_links_the_receiver_gets_each_frame_once_in_order(ops: list[Any]) -> None:
    pair = Pair()
    pair.connect()
    for op in ops:
        if op[0] == "send":
            pair.send(op[1])
        elif op[0] == "carry" and pair.links:
            pair.carry(op[1] % len(pair.links), op[2])
        elif op[0] == "cut" and pair.links:
            pair.cut(op[1] % len(pair.links))
        elif op[0] == "connect" and len(pair.links) < 3:
            pair.connect(op[1])
        got = numbers(pair.got)
        assert got == list(range(len(got))), "a gap, a duplicate or a reordering"
    if not pair.links:
        pair.connect()
    pair.settle()
    assert numbers(pair.got) == list(range(pair.sent))
    assert pair.a.buffered == 0 and not pair.a.buffer, "everything delivered is acknowledged"


def test_a_resumed_link_sends_next_then_only_what_was_not_acknowledged() -> None:
    pair = Pair()
    pair.connect()
    pair.send(5)
    pair.carry(0, 100)  # all 5 delivered
    pair.carry(0, 100)  # and acknowledged
    assert pair.a.base == 5 and not pair.a.buffer
    pair.send(3)
    pair.links[0][0].write()  # 5, 6, 7 written, then lost with the link
    pair.cut(0)
    pair.connect()
    la = pair.links[0][0]
    assert la.pending[0][0] == ACK or la.pending[0][0] == NEXT
    resumed = [f for f in la.pending if f[0] not in (ACK, NEXT)]
    assert numbers(resumed) == [5, 6, 7]
    pair.settle()
    assert numbers(pair.got) == list(range(8))
    assert pair.a.resent >= 3


def test_a_new_epoch_starts_counting_afresh_and_an_old_one_is_ignored() -> None:
    b = Session("a", 1, high_water=1 << 20)
    link = FakeLink("b")
    link.session = b
    b.attach(link)  # type: ignore[arg-type]
    assert b.accept(link, [encode_next(100, 1, 1 << 20), data(0), data(1)]) == [data(0), data(1)]  # type: ignore[arg-type]
    # The peer dropped its session and started a new stream (epoch 200) at 1.
    assert b.accept(link, [encode_next(200, 1, 1 << 20), data(7)]) == [data(7)]  # type: ignore[arg-type]
    assert b.received == 1
    # Late frames of the old stream on another link: dropped.
    old = FakeLink("old")
    old.session = b
    assert b.accept(old, [encode_next(100, 3, 1 << 20), data(2)]) == []  # type: ignore[arg-type]
    assert b.duplicates == 1


def test_bad_control_frames_are_protocol_errors() -> None:
    b = Session("a", 1, high_water=1 << 20)
    link = FakeLink("b")
    with pytest.raises(RemoteProtocolError, match="before numbering"):
        b.accept(link, [data(0)])  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="malformed NEXT"):
        b.accept(link, [bytes((NEXT,)) + b"\x00" * 3])  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="numbered its stream from 0"):
        b.accept(link, [encode_next(5, 0, 100)])  # type: ignore[arg-type]
    a = Session("b", 1, high_water=1 << 20)
    la = FakeLink("a")
    la.session = a
    a.attach(la)  # type: ignore[arg-type]
    a.push(data(0))
    with pytest.raises(RemoteProtocolError, match="acknowledged frame 2; only 1 were sent"):
        a.accept(la, [encode_ack(a.epoch, 2)])  # type: ignore[arg-type]
    a.accept(la, [encode_ack(a.epoch + 1, 2)])  # type: ignore[arg-type]  # another stream's: ignored


def test_a_dropped_session_counts_what_was_never_acknowledged_and_refuses_sends() -> None:
    table = SessionTable(high_water=1 << 20)
    link = FakeLink("a")
    session = table.for_link(link)  # type: ignore[arg-type]
    link.session = session
    session.attach(link)  # type: ignore[arg-type]
    session.push(data(0))
    session.push(data(1))
    session.accept(link, [encode_ack(session.epoch, 1)])  # type: ignore[arg-type]
    table.drop("peer", "it failed")
    assert table.statistics()["undelivered"] == 1
    with pytest.raises(ConnectionClosedError, match="it failed"):
        session.push(data(2))
    session.accept(link, [encode_ack(session.epoch, 2)])  # type: ignore[arg-type]  # late: ignored
    # The member back as a new incarnation gets a new session.
    link.peer.extensions = {"incarnation": 2}
    assert table.for_link(link) is not session  # type: ignore[arg-type]


def test_acknowledgements_are_batched_by_the_senders_window() -> None:
    pair = Pair()
    pair.connect()
    la, lb = pair.links[0]
    la.write()
    pair.b.accept(lb, la.wire)  # type: ignore[arg-type]
    la.wire = []
    assert pair.b.ack_every == (1 << 30) // 8
    lb.pending.clear()
    pair.send(100)
    la.write()
    pair.b.accept(lb, la.wire)  # type: ignore[arg-type]
    assert not any(f[0] == ACK for f in lb.pending), "no ACK per frame: it waits for a batch or ACK_DELAY"
    assert pair.b.ack_owed()


U64 = st.integers(0, 2**64 - 1)
CONTROL = st.one_of(
    st.builds(encode_next, U64, U64, st.integers(0, 2**32 - 1)),
    st.builds(encode_ack, U64, U64),
    st.binary(max_size=40).map(lambda b: bytes((NEXT,)) + b),
    st.binary(max_size=40).map(lambda b: bytes((ACK,)) + b),
    st.binary(max_size=40),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(CONTROL, max_size=8), max_size=8))
def test_any_frames_from_a_peer_cost_at_most_a_protocol_error(batches: list[list[bytes]]) -> None:
    """Hostile NEXT/ACK frames (an authenticated member can still send anything): typed errors only,
    and the session's numbers stay sane."""
    session = Session("peer", 1, high_water=1 << 20)
    link = FakeLink("x")
    link.session = session
    session.attach(link)  # type: ignore[arg-type]
    session.push(data(0))
    for batch in batches:
        try:
            kept = session.accept(link, batch)  # type: ignore[arg-type]
        except RemoteProtocolError:
            continue
        assert all(f[:1] not in (bytes((NEXT,)), bytes((ACK,))) for f in kept)
    assert 0 <= session.base <= 1 and session.buffered >= 0


def test_a_member_given_up_but_alive_is_not_delivered_again_what_it_resends() -> None:
    # b's view said a left (a spoofed or mistaken "left") and dropped a's session after it had
    # delivered frames 0-2 but before it acknowledged them. a, alive, resends them on its next
    # link: b counts on where it was and delivers only frame 3.
    table = SessionTable(1 << 20)
    a = Session("b", 1, high_water=1 << 20)
    la, lb = FakeLink("a", peer="b"), FakeLink("b", peer="a")
    la.session = a
    a.attach(la)  # type: ignore[arg-type]
    lb.session = table.for_link(lb)  # type: ignore[arg-type]
    lb.session.attach(lb)  # type: ignore[arg-type]
    for i in range(3):
        a.push(data(i))
    la.write()
    assert lb.session.accept(lb, la.wire) == [data(0), data(1), data(2)]  # type: ignore[arg-type]
    la.wire = []
    table.drop("a", "the view says it left")  # no ACK went back
    a.detach(la)  # type: ignore[arg-type]
    la2, lb2 = FakeLink("a", peer="b"), FakeLink("b", peer="a")
    la2.session = a
    a.attach(la2)  # type: ignore[arg-type]
    a.push(data(3))
    lb2.session = again = table.for_link(lb2)  # type: ignore[arg-type]
    again.attach(lb2)  # type: ignore[arg-type]
    la2.write()
    assert again.accept(lb2, la2.wire) == [data(3)]  # type: ignore[arg-type]
    assert again.duplicates == 3 and again.ack_owed()  # and a hears they all arrived
    # A new incarnation of a (a restart) is a new stream: nothing carried over.
    restarted = FakeLink("b", peer="a")
    restarted.peer = type("Hello", (), {"extensions": {"incarnation": 2}})()
    table.drop("a", "gone")
    assert table.for_link(restarted).received == 0  # type: ignore[arg-type]
