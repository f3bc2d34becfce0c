"""Links: the handshake (open_link), write coalescing, backpressure, connection plugins.

Runs over an in-memory Connection built on anyio memory object streams, on
both anyio backends (``anyio_backend`` comes from the root conftest.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydevts.errors import (
    ConnectionClosedError,
    FrameTooLargeError,
    HandshakeRefusedError,
    RemoteProtocolError,
)
from pydevts.protocols import Connection, ConnectionInfo, ConnectionPlugin
from pydevts.wire import REFUSE, Hello, encode_event, encode_refuse
from pydevts.wire.handshake import open_link
from pydevts.wire.link import Link

pytestmark = pytest.mark.anyio

DEADLINE = 5.0


# ------------------------------------------------------------------ in-memory transport


class MemoryConnection:
    """One end of an in-memory framed connection. Each send_frames call is one stream item."""

    def __init__(
        self,
        send: MemoryObjectSendStream[list[bytes]],
        receive: MemoryObjectReceiveStream[list[bytes]],
        name: str,
        max_frame_size: int,
    ) -> None:
        self._send = send
        self._receive = receive
        self._name = name
        self.max_frame_size = max_frame_size
        self.send_calls: list[list[bytes]] = []
        self.closed = False

    @property
    def remote_address(self) -> str:
        return f"memory:{self._name}"

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if self.closed:
            raise ConnectionClosedError(f"{self._name} is closed")
        for frame in frames:
            if len(frame) > self.max_frame_size:
                raise FrameTooLargeError(len(frame), self.max_frame_size)
        batch = list(frames)
        self.send_calls.append(batch)
        try:
            await self._send.send(batch)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionClosedError(f"peer of {self._name} is gone") from exc

    async def receive_frames(self) -> list[bytes]:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise ConnectionClosedError(f"{self._name}: connection closed") from exc

    async def aclose(self) -> None:
        self.closed = True
        self._send.close()
        self._receive.close()

    @property
    def sent_frames(self) -> list[bytes]:
        return [f for batch in self.send_calls for f in batch]


def memory_pair(
    *, buffer: float = math.inf, max_frame_size: int = 1024 * 1024
) -> tuple[MemoryConnection, MemoryConnection]:
    a_send, b_receive = anyio.create_memory_object_stream[list[bytes]](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[list[bytes]](buffer)
    return (
        MemoryConnection(a_send, a_receive, "a", max_frame_size),
        MemoryConnection(b_send, b_receive, "b", max_frame_size),
    )


def hello(node_id: str, **overrides: str) -> Hello:
    fields = {"cluster": "test", "address": f"{node_id}.local:7000", "serializer": "msgpack"}
    fields.update(overrides)
    # Members offer resumable links (pydevts.wire.session) in every HELLO,
    # and say the largest frame they take (the memory pipe's default).
    extensions = {"resume": 1, "max_frame_size": 1024 * 1024}
    return Hello(node_id=node_id, tags={"name": node_id}, extensions=extensions, **fields)


class Recorder:
    """A connection plugin that records calls and can refuse, rewrite or drop frames."""

    def __init__(self, name: str = "rec", refuse: str | None = None) -> None:
        self.name = name
        self.refuse = refuse
        self.opened: list[ConnectionInfo] = []
        self.closed: list[tuple[ConnectionInfo, str | None]] = []

    def on_open(self, info: ConnectionInfo) -> None:
        self.opened.append(info)
        if self.refuse is not None:
            raise PermissionError(self.refuse)

    def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        if frame.startswith(b"drop"):
            return None
        return b"out:" + frame

    def on_frame_in(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        if frame.startswith(b"drop"):
            return None
        return b"in:" + frame

    def on_close(self, info: ConnectionInfo, reason: str | None) -> None:
        self.closed.append((info, reason))


def test_memory_connection_satisfies_the_protocol() -> None:
    a, _ = memory_pair()
    assert isinstance(a, Connection)
    assert isinstance(Recorder(), ConnectionPlugin)


async def handshake(
    a_hello: Hello,
    b_hello: Hello,
    *,
    a_plugins: Sequence[ConnectionPlugin] = (),
    b_plugins: Sequence[ConnectionPlugin] = (),
) -> tuple[Link | BaseException, Link | BaseException, MemoryConnection, MemoryConnection]:
    """Run open_link on both ends (``a`` initiates); return each side's link or exception."""
    conn_a, conn_b = memory_pair()
    results: dict[str, Link | BaseException] = {}

    async def side(key: str, conn: MemoryConnection, local: Hello, initiated: bool, plugins) -> None:
        try:
            results[key] = await open_link(conn, local, initiated=initiated, plugins=plugins, timeout=2)
        except Exception as exc:
            results[key] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(side, "a", conn_a, a_hello, True, a_plugins)
        tg.start_soon(side, "b", conn_b, b_hello, False, b_plugins)
    return results["a"], results["b"], conn_a, conn_b


# ------------------------------------------------------------------ handshake


async def test_handshake_succeeds_both_ways() -> None:
    with anyio.fail_after(DEADLINE):
        link_a, link_b, conn_a, conn_b = await handshake(hello("a"), hello("b"))
    assert isinstance(link_a, Link) and isinstance(link_b, Link)
    assert link_a.peer_id == "b" and link_b.peer_id == "a"
    assert link_a.peer == hello("b") and link_b.peer == hello("a")
    assert link_a.initiated and not link_b.initiated
    assert link_a.info == ConnectionInfo("a", "b", "b.local:7000", True, {"name": "b"})
    assert link_b.info == ConnectionInfo("b", "a", "a.local:7000", False, {"name": "a"})
    assert link_a.conn is conn_a and link_b.conn is conn_b
    assert not conn_a.closed and not conn_b.closed
    assert not link_a.closed and not link_b.closed
    # The initiator spoke first, each side sent exactly one HELLO.
    assert [Hello.from_frame(f) for f in conn_a.sent_frames] == [hello("a")]
    assert [Hello.from_frame(f) for f in conn_b.sent_frames] == [hello("b")]


async def test_handshake_passes_plugins_and_calls_on_open() -> None:
    rec_a, rec_b = Recorder("ra"), Recorder("rb")
    with anyio.fail_after(DEADLINE):
        link_a, link_b, _, _ = await handshake(hello("a"), hello("b"), a_plugins=[rec_a], b_plugins=[rec_b])
    assert isinstance(link_a, Link) and isinstance(link_b, Link)
    assert link_a.plugins == (rec_a,) and link_b.plugins == (rec_b,)
    assert rec_a.opened == [link_a.info] and rec_b.opened == [link_b.info]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("cluster", "other", ("cluster name differs", "'test'", "'other'")),
        ("serializer", "json", ("serializer differs", "'msgpack'", "'json'")),
    ],
)
async def test_mismatch_is_refused_on_both_sides(field: str, value: str, words: tuple[str, ...]) -> None:
    with anyio.fail_after(DEADLINE):
        res_a, res_b, conn_a, conn_b = await handshake(hello("a"), hello("b", **{field: value}))
    for res in (res_a, res_b):
        assert isinstance(res, HandshakeRefusedError), res
        for word in words:
            assert word in res.reason
    # each side reads it from its own point of view: its own value first
    ours = words[1]
    assert res_a.reason.index(ours) < res_a.reason.index(f"'{value}'")  # type: ignore[union-attr]
    assert res_b.reason.index(f"'{value}'") < res_b.reason.index(ours)  # type: ignore[union-attr]
    assert "the cluster at" in res_a.reason and "the node at" in res_b.reason  # type: ignore[union-attr]
    # The checking side (b) sent REFUSE; both connections are closed.
    assert conn_b.sent_frames[-1][0] == REFUSE
    assert conn_a.closed and conn_b.closed


async def test_duplicate_node_id_is_refused() -> None:
    with anyio.fail_after(DEADLINE):
        res_a, res_b, _, _ = await handshake(hello("same"), hello("same"))
    assert isinstance(res_a, HandshakeRefusedError) and isinstance(res_b, HandshakeRefusedError)
    assert "node id 'same'" in res_a.reason and "already in use" in res_a.reason


async def test_silent_peer_times_out_with_remote_protocol_error() -> None:
    for initiated in (True, False):
        conn_a, conn_b = memory_pair()
        with anyio.fail_after(DEADLINE):
            with pytest.raises(RemoteProtocolError, match=r"did not complete within 0\.2 s") as info:
                await open_link(conn_a, hello("a"), initiated=initiated, timeout=0.2)
        assert not isinstance(info.value, HandshakeRefusedError)
        assert "memory:a" in str(info.value)
        assert conn_a.closed
        await conn_b.aclose()


async def test_peer_that_closes_during_handshake_raises_and_closes() -> None:
    conn_a, conn_b = memory_pair()
    await conn_b.aclose()
    with anyio.fail_after(DEADLINE):
        with pytest.raises(ConnectionClosedError):
            await open_link(conn_a, hello("a"), initiated=False, timeout=2)
    assert conn_a.closed


async def test_non_hello_first_frame_is_a_protocol_error() -> None:
    conn_a, conn_b = memory_pair()
    await conn_b.send_frames([encode_event("hi", b"")])
    with anyio.fail_after(DEADLINE):
        with pytest.raises(RemoteProtocolError, match="expected a pydevts HELLO"):
            await open_link(conn_a, hello("a"), initiated=False, timeout=2)
    assert conn_a.closed


async def test_responder_plugin_refusal_refuses_the_link_on_both_sides() -> None:
    refuser = Recorder("gate", refuse="not on the allow list")
    with anyio.fail_after(DEADLINE):
        res_a, res_b, conn_a, conn_b = await handshake(hello("a"), hello("b"), b_plugins=[refuser])
    for res in (res_a, res_b):
        assert isinstance(res, HandshakeRefusedError), res
        assert "connection plugin 'gate'" in res.reason
        assert "not on the allow list" in res.reason
    assert len(refuser.opened) == 1 and refuser.opened[0].peer_id == "a"
    assert conn_a.closed and conn_b.closed


async def test_initiator_plugin_refusal_refuses_and_closes_the_responders_link() -> None:
    refuser = Recorder("gate", refuse="no thanks")
    with anyio.fail_after(DEADLINE):
        res_a, link_b, conn_a, conn_b = await handshake(hello("a"), hello("b"), a_plugins=[refuser])
        assert isinstance(res_a, HandshakeRefusedError)
        assert "no thanks" in res_a.reason
        assert conn_a.closed
        assert conn_a.sent_frames[-1] == encode_refuse(res_a.reason)
        # b had already accepted; its link ends as soon as it runs (a is gone).
        assert isinstance(link_b, Link)
        await link_b.run(_ignore)
    assert link_b.closed
    assert link_b.close_reason is not None
    assert conn_b.closed


async def test_refuse_on_a_running_link_closes_it_with_the_reason() -> None:
    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a)
    got: list[bytes] = []

    async def on_frames(link: Link, frames: list[bytes]) -> None:
        got.extend(frames)
        await link.aclose("frames reached on_frames")

    with anyio.fail_after(DEADLINE):
        await conn_b.send_frames([encode_refuse("refused by connection plugin 'gate': no thanks")])
        await link.run(on_frames)
    assert got == []
    assert link.close_reason is not None and "no thanks" in link.close_reason


async def test_frames_sent_with_the_hello_are_delivered_first() -> None:
    conn_a, conn_b = memory_pair()
    early = [encode_event("early", b"1"), encode_event("early", b"2")]
    await conn_a.send_frames([hello("a").to_frame(), *early])
    got: list[bytes] = []
    with anyio.fail_after(DEADLINE):
        link_b = await open_link(conn_b, hello("b"), initiated=False, timeout=2)
        assert Hello.from_frame((await conn_a.receive_frames())[0]) == hello("b")

        async def on_frames(link: Link, frames: list[bytes]) -> None:
            got.extend(frames)
            if len(got) == 3:
                await link.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(link_b.run, on_frames)
            await conn_a.send_frames([b"later"])
    assert got == [*early, b"later"]


# ------------------------------------------------------------------ running links


def raw_link(
    conn: MemoryConnection, *, plugins: Sequence[ConnectionPlugin] = (), high_water: int = 1024 * 1024
) -> Link:
    return Link(conn, hello("a"), hello("b"), initiated=True, plugins=plugins, high_water=high_water)


async def _ignore(link: Link, frames: list[bytes]) -> None:
    pass


async def test_sends_queued_before_the_writer_runs_go_out_in_one_write() -> None:
    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a)
    frames = [f"frame {i}".encode() for i in range(200)]
    with anyio.fail_after(DEADLINE):
        for frame in frames:
            await link.send(frame)
        assert conn_a.send_calls == []  # nothing is written by send itself
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run, _ignore)
            assert await conn_b.receive_frames() == frames
            await link.aclose()
    assert len(conn_a.send_calls) == 1


async def test_burst_on_a_running_link_is_coalesced() -> None:
    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run, _ignore)
            await link.send(b"first")
            await link.flush()
            assert await conn_b.receive_frames() == [b"first"]
            calls_before = len(conn_a.send_calls)
            burst = [bytes([i]) * 10 for i in range(100)]
            for frame in burst:
                link.send_nowait(frame)  # no checkpoint: the writer cannot run in between
            await link.flush()
            received: list[bytes] = []
            while len(received) < len(burst):
                received.extend(await conn_b.receive_frames())
            assert received == burst
            assert len(conn_a.send_calls) - calls_before <= 2
            await link.aclose()


async def test_send_blocks_above_high_water_and_memory_stays_bounded() -> None:
    conn_a, conn_b = memory_pair(buffer=0)  # the peer takes nothing until it reads
    high_water = 100
    link = raw_link(conn_a, high_water=high_water)
    frame = b"x" * 40
    completed = 0
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run, _ignore)
            with anyio.move_on_after(0.2) as scope:
                for _ in range(1000):
                    await link.send(frame)
                    completed += 1
            assert scope.cancelled_caught, "send never blocked"
            # one batch in the transport + at most high_water queued (+ the frame that crossed it)
            per_batch = high_water // len(frame) + 1  # frames that fit before send must wait
            assert 1 <= completed <= 2 * per_batch
            assert link._pending_bytes <= high_water + len(frame)
            assert conn_a.send_calls and len(conn_a.send_calls) <= 2

            # Once the peer reads, the sender makes progress again.
            async def reader() -> None:
                with pytest.raises(ConnectionClosedError):
                    while True:
                        await conn_b.receive_frames()

            tg.start_soon(reader)
            for _ in range(50):
                await link.send(frame)
            await link.flush()
            await link.aclose()
            tg.cancel_scope.cancel()


async def test_send_blocked_on_backpressure_is_released_when_link_closes() -> None:
    conn_a, _conn_b = memory_pair(buffer=0)
    link = raw_link(conn_a, high_water=10)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run, _ignore)
            await link.send(b"y" * 20)  # writer takes it and blocks in the transport
            await anyio.wait_all_tasks_blocked()
            done = anyio.Event()

            async def blocked_sender() -> None:
                # It waited for space before queueing: the close tells it the frame was not sent.
                with pytest.raises(ConnectionClosedError, match="test over"):
                    await link.send(b"z" * 20)
                done.set()

            tg.start_soon(blocked_sender)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            await link.aclose("test over")
            await done.wait()
    assert link.close_reason == "test over"
    with pytest.raises(ConnectionClosedError, match="test over"):
        await link.send(b"after close")


async def test_oversize_frame_is_refused_at_send() -> None:
    conn_a, _ = memory_pair(max_frame_size=16)
    link = raw_link(conn_a)
    with pytest.raises(FrameTooLargeError):
        await link.send(b"x" * 17)
    link.send_nowait(b"x" * 16)  # exactly at the limit is fine


async def test_run_returns_with_reason_when_peer_closes() -> None:
    conn_a, conn_b = memory_pair()
    rec = Recorder()
    link = raw_link(conn_a, plugins=[rec])
    with anyio.fail_after(DEADLINE):
        await conn_b.aclose()
        await link.run(_ignore)
        await link.wait_closed()
    assert link.closed
    assert link.close_reason is not None and "closed" in link.close_reason
    assert rec.closed == [(link.info, link.close_reason)]
    assert conn_a.closed


async def test_aclose_is_idempotent_and_calls_on_close_once() -> None:
    conn_a, _ = memory_pair()
    rec = Recorder()
    link = raw_link(conn_a, plugins=[rec])
    await link.aclose("first")
    await link.aclose("second")
    assert link.close_reason == "first"
    assert rec.closed == [(link.info, "first")]


# ------------------------------------------------------------------ connection plugins on frames


async def test_plugins_transform_and_drop_outgoing_frames() -> None:
    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a, plugins=[Recorder("one"), Recorder("two")])
    with anyio.fail_after(DEADLINE):
        await link.send(b"hello")
        await link.send(b"drop me")
        link.send_nowait(b"world")
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run, _ignore)
            received = await conn_b.receive_frames()
            await link.aclose()
    # applied in order: "one" then "two"
    assert received == [b"out:out:hello", b"out:out:world"]


async def test_outgoing_frame_dropped_by_second_plugin_is_not_seen_by_later_ones() -> None:
    class DropAfterPrefix(Recorder):
        def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
            return None

    class MustNotSee(Recorder):
        def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
            raise AssertionError("called after a plugin dropped the frame")

    conn_a, _ = memory_pair()
    link = raw_link(conn_a, plugins=[Recorder(), DropAfterPrefix(), MustNotSee()])
    await link.send(b"x")
    link.send_nowait(b"y")
    assert link._pending == []


async def test_plugins_transform_and_drop_incoming_frames() -> None:
    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a, plugins=[Recorder("one"), Recorder("two")])
    batches: list[list[bytes]] = []

    async def on_frames(link: Link, frames: list[bytes]) -> None:
        batches.append(frames)
        if len(batches) == 2:
            await link.aclose()

    with anyio.fail_after(DEADLINE):
        await conn_b.send_frames([b"a", b"drop this", b"b"])
        await conn_b.send_frames([b"drop all"])  # a batch that becomes empty is not delivered
        await conn_b.send_frames([b"c"])
        await link.run(on_frames)
    assert batches == [[b"in:in:a", b"in:in:b"], [b"in:in:c"]]


async def test_refuse_is_part_of_the_handshake_not_seen_by_plugins() -> None:
    """A late REFUSE ends the link before connection plugins could hide it."""

    class HideRefuse(Recorder):
        def on_frame_in(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
            return None if frame[:1] == bytes([REFUSE]) else frame

    conn_a, conn_b = memory_pair()
    link = raw_link(conn_a, plugins=[HideRefuse()])
    got: list[bytes] = []

    async def on_frames(link: Link, frames: list[bytes]) -> None:
        got.extend(frames)
        await link.aclose()

    with anyio.fail_after(DEADLINE):
        await conn_b.send_frames([bytes([REFUSE]) + b"go away", b"still here"])
        await link.run(on_frames)
    assert got == []
    assert link.close_reason is not None and "go away" in link.close_reason
