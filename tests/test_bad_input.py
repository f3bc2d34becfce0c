"""Hostile or broken bytes on a node's port: the node drops that connection, says why, keeps serving.

Every test runs a two-node cluster (A, B) and points raw TCP clients at A's
port. A has a small ``max_frame_size``. After each bad input, A and B must
still serve requests both ways.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgpack
import pytest
from inproc import RawPeer, alive_ids, cluster, frame, free_port, pydevts_warnings, raw_hello, wait_until
from pydevts import MemberState, Node
from pydevts.wire import REPLY, encode_event, encode_request

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
RAW_ID = "zz-raw"


@asynccontextmanager
async def two_nodes(
    caplog: pytest.LogCaptureFixture, *, handshake_timeout: float = 5.0
) -> AsyncIterator[tuple[Node, Node]]:
    caplog.set_level(logging.INFO, logger="pydevts")
    port = free_port()
    a = Node(port, node_id="a", max_frame_size=LIMIT, handshake_timeout=handshake_timeout)
    b = Node(port, node_id="b")
    for node in (a, b):
        node.add_handler("echo", echo)
    async with cluster(a, b):
        yield a, b


async def echo(sender: str, payload: Any) -> Any:
    return [sender, payload]


def port_of(node: Node) -> int:
    return node.cluster_address.port


async def assert_serving(a: Node, b: Node) -> None:
    assert {"a", "b"} <= alive_ids(a) and {"a", "b"} <= alive_ids(b)
    assert await b.request("a", "echo", "to a", timeout=5) == ["b", "to a"]
    assert await a.request("b", "echo", "to b", timeout=5) == ["a", "to b"]


async def wait_logged(caplog: pytest.LogCaptureFixture, *parts: str, timeout: float = 3.0) -> str:
    """Wait for a WARNING+ record from a ``pydevts.*`` logger containing every one of ``parts``."""

    def found() -> str | None:
        return next((m for m in pydevts_warnings(caplog.records) if all(p in m for p in parts)), None)

    await wait_until(
        found, timeout, f"a pydevts warning with {parts} (have {pydevts_warnings(caplog.records)})"
    )
    return found() or ""


async def assert_closed_by_node(raw: RawPeer, within: float) -> float:
    """Read until the node closes the connection; return how long that took."""
    start = anyio.current_time()
    with anyio.fail_after(within):
        await raw.receive_until_eof()
    return anyio.current_time() - start


def hello_json(**fields: Any) -> bytes:
    body = {
        "magic": "pydevts",
        "protocol": 1,
        "cluster": "default",
        "node_id": "raw",
        "address": "127.0.0.1:1",
        "serializer": "msgpack",
    }
    body.update(fields)
    return b"\x30" + json.dumps(body).encode()


# --------------------------------------------------------------------------- before the handshake

GARBAGE = {
    "http-request": (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "maximum frame size"),
    "all-ones": (b"\xff" * 32, "maximum frame size"),
    "not-a-hello": (frame(b"hello, node"), "expected a pydevts HELLO frame, got kind 0x68"),
    "core-event-first": (
        frame(encode_event("echo", b"\xc0")),
        "expected a pydevts HELLO frame, got kind 0x01",
    ),
    "empty-frame": (frame(b""), "empty frame"),
    "hello-not-json": (frame(b"\x30not json at all"), "HELLO is not valid JSON"),
    "hello-not-utf8": (frame(b"\x30\xff\xfe\xfd"), "HELLO is not valid JSON"),
    "hello-json-array": (frame(b"\x30[1, 2]"), "no magic"),
    "hello-no-magic": (frame(b'\x30{"protocol": 1}'), "no magic"),
    "hello-missing-fields": (frame(b'\x30{"magic": "pydevts", "protocol": 1}'), "missing or has a bad field"),
    "hello-bad-tags": (frame(hello_json(tags=[1, 2])), "missing or has a bad field"),
    "hello-bad-protocol": (frame(hello_json(protocol="one")), "missing or has a bad field"),
    "hello-empty-id": (frame(hello_json(node_id="")), "empty node id"),
}


@pytest.mark.parametrize("data, reason", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_garbage_instead_of_a_hello(caplog: pytest.LogCaptureFixture, data: bytes, reason: str) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.send_raw(data)
                await assert_closed_by_node(raw, within=2)
            await wait_logged(caplog, "refused a connection", reason)
            await assert_serving(a, b)


async def test_truncated_frame_then_close(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.send_raw(struct.pack(">I", 100) + b"\x30" * 10)
            await wait_logged(caplog, "refused a connection", "in the middle of a frame")
            await assert_serving(a, b)
            assert RAW_ID not in {m.id for m in a.members}


async def test_frame_header_over_max_frame_size_closes_promptly(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog, handshake_timeout=5.0) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.send_raw(struct.pack(">I", LIMIT + 1))  # the header only: no body follows
                took = await assert_closed_by_node(raw, within=2)
            assert took < 2  # not the 5 s handshake timeout: the header alone is enough
            logged = await wait_logged(caplog, "maximum frame size")
            assert f"{LIMIT + 1} bytes" in logged and f"{LIMIT} bytes" in logged
            await assert_serving(a, b)


@pytest.mark.parametrize(
    "opening", [b"", frame(raw_hello(RAW_ID))[:20]], ids=["says-nothing", "half-a-hello"]
)
async def test_silent_peer_is_dropped_after_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture, opening: bytes
) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog, handshake_timeout=0.5) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                if opening:
                    await raw.send_raw(opening)
                took = await assert_closed_by_node(raw, within=2.5)
            assert 0.4 <= took <= 2
            await wait_logged(caplog, "refused a connection", "did not complete within 0.5 s")
            await assert_serving(a, b)


async def test_many_bad_connections_at_once(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog, handshake_timeout=0.5) as (a, b):

            async def one(data: bytes) -> None:
                async with RawPeer.connect(port_of(a)) as raw:
                    await raw.send_raw(data)
                    await assert_closed_by_node(raw, within=3)

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    data, _ = list(GARBAGE.values())[i % len(GARBAGE)]
                    tg.start_soon(one, data if i % 5 else b"")
                await assert_serving(a, b)  # while they are all still open
            await assert_serving(a, b)


# --------------------------------------------------------------------------- after a valid handshake


def request_frame(request_id: int, name: str, payload: Any) -> bytes:
    return encode_request(request_id, name, msgpack.packb(payload))


async def receive_reply(raw: RawPeer, request_id: int) -> Any:
    """Skip the node's control frames until the REPLY to ``request_id``; return its payload."""
    while True:
        got = await raw.receive_frame()
        assert got is not None, "the node closed the connection instead of replying"
        if got[0] == REPLY and struct.unpack_from(">Q", got, 1)[0] == request_id:
            return msgpack.unpackb(got[9:])


async def test_raw_member_is_served_like_a_node(caplog: pytest.LogCaptureFixture) -> None:
    """Positive control for the tests below: a raw client with a right HELLO is a working peer."""
    events: list[tuple[str, int]] = []
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):

            @a.on("ev")
            async def ev(sender: str, payload: bytes) -> None:
                events.append((sender, len(payload)))

            async with RawPeer.connect(port_of(a)) as raw:
                await raw.handshake(RAW_ID)
                await wait_until(lambda: RAW_ID in alive_ids(a), what="A to list the raw member")
                await raw.send_frames(request_frame(7, "echo", {"x": 1}))
                assert await receive_reply(raw, 7) == [RAW_ID, {"x": 1}]
                # A frame of exactly max_frame_size is still accepted.
                head = encode_event("ev", b"")
                size = LIMIT - len(head) - 3  # msgpack bin16: 3 header bytes
                body = msgpack.packb(bytes(size))
                assert len(head) + len(body) == LIMIT
                await raw.send_frames(head + body)
                await wait_until(lambda: events, what="the max-size event")
                assert events == [(RAW_ID, size)]
            await wait_until(lambda: RAW_ID not in alive_ids(a), what="A to drop the raw member")
            assert pydevts_warnings(caplog.records) == []
            await assert_serving(a, b)


BAD_CORE_FRAMES = [
    b"\x05unknown kind",
    b"\x01\xffab",  # event name runs past the end
    b"\x01\x02\xff\xfe",  # event name is not UTF-8
    b"\x02\x00\x00",  # truncated request header
    b"\x03\x00",  # truncated reply
    b"\x04\x00\x00",  # truncated error
    b"\x30{}",  # a HELLO after the handshake
    b"\x20",  # a bare kind byte
]


async def test_bad_core_frames_are_dropped_and_the_link_stays_up(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.handshake(RAW_ID)
                await raw.send_frames(request_frame(1, "echo", "before"))
                assert await receive_reply(raw, 1) == [RAW_ID, "before"]
                await raw.send_frames(*BAD_CORE_FRAMES)
                await raw.send_frames(request_frame(2, "echo", "after"))
                assert await receive_reply(raw, 2) == [RAW_ID, "after"]
                await wait_logged(caplog, "unknown message kind 0x05")
                await wait_logged(caplog, "malformed message frame")
                assert a.statistics()["bad_frames"] == len(BAD_CORE_FRAMES)
                assert RAW_ID in alive_ids(a)
                await assert_serving(a, b)
            await assert_serving(a, b)


BAD_CONTROL = {
    "not-json": b"\x40not json",
    "not-utf8": b"\x40\xff\xfe",
    "empty": b"\x40",
    "array": b"\x40[1, 2, 3]",
    "unknown-type": b'\x40{"t": "bogus"}',
    "sync-without-members": b'\x40{"t": "sync"}',
    "sync-member-not-object": b'\x40{"t": "sync", "members": [42]}',
    "intro-without-member": b'\x40{"t": "intro"}',
    "intro-tags-not-object": (
        b'\x40{"t": "intro", "member": {"id": "x", "address": "127.0.0.1:1", "tags": [1]}}'
    ),
    "intro-port-out-of-range": (
        b'\x40{"t": "intro", "member": {"id": "x", "address": "127.0.0.1:1180591620717411303424"}}'
    ),
    "sync-port-99999": b'\x40{"t": "sync", "members": [{"id": "x", "address": "127.0.0.1:99999"}]}',
    "unknown-router-kind": b"\x41{}",
}


@pytest.mark.parametrize("control", list(BAD_CONTROL.values()), ids=list(BAD_CONTROL))
async def test_malformed_router_control_closes_only_that_link(
    caplog: pytest.LogCaptureFixture, control: bytes
) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.handshake(RAW_ID)
                await raw.send_frames(b"\x05unknown core kind")  # dropped; the link stays
                await raw.send_frames(request_frame(1, "echo", "still linked"))
                assert await receive_reply(raw, 1) == [RAW_ID, "still linked"]
                await raw.send_frames(control)
                await assert_closed_by_node(raw, within=3)
            await wait_logged(caplog, "unknown message kind 0x05")
            await wait_logged(caplog, "bad peer router frame", RAW_ID)
            await wait_until(lambda: RAW_ID not in alive_ids(a), what="A to drop the raw member")
            assert a.members[-1].id == RAW_ID and a.members[-1].state == MemberState.FAILED
            await assert_serving(a, b)


async def test_truncated_frame_after_handshake(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.handshake(RAW_ID)
                await wait_until(lambda: RAW_ID in alive_ids(a), what="A to list the raw member")
                await raw.send_raw(struct.pack(">I", 100) + b"\x01" * 10)
            await wait_until(lambda: RAW_ID not in alive_ids(a), what="A to drop the raw member")
            await assert_serving(a, b)


async def test_oversized_frame_header_after_handshake(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                await raw.handshake(RAW_ID)
                await raw.send_raw(struct.pack(">I", 2**32 - 1))
                await assert_closed_by_node(raw, within=2)
            await wait_logged(caplog, RAW_ID, "maximum frame size")
            await wait_until(lambda: RAW_ID not in alive_ids(a), what="A to drop the raw member")
            await assert_serving(a, b)


# --------------------------------------------------------------------------- inputs that kill the node

DEEP_JSON = b"[" * 50_000  # under A's 64 KiB limit; deeper than json's recursion limit

CRASHERS = [
    pytest.param(
        False,
        frame(b"\x30" + DEEP_JSON),
        id="hello-deeply-nested-json",
    ),
    pytest.param(
        False,
        frame(hello_json(protocol=float("inf"))),
        id="hello-protocol-infinity",
    ),
    # After the handshake these once killed the node too (PeerRouter._on_frames read frame[0] of an
    # empty frame; _on_control let json's RecursionError escape); the link reader now contains them.
    pytest.param(True, frame(b""), id="empty-frame-after-handshake"),
    pytest.param(True, frame(b"\x40" + DEEP_JSON), id="control-deeply-nested-json"),
]


@pytest.mark.parametrize("handshake, data", CRASHERS)
async def test_input_that_must_not_kill_the_node(
    caplog: pytest.LogCaptureFixture, handshake: bool, data: bytes
) -> None:
    with anyio.fail_after(15):
        async with two_nodes(caplog) as (a, b):
            async with RawPeer.connect(port_of(a)) as raw:
                if handshake:
                    await raw.handshake(RAW_ID)
                await raw.send_raw(data)
                await assert_closed_by_node(raw, within=3)
            await wait_until(lambda: pydevts_warnings(caplog.records), what="the reason to be logged")
            await wait_until(lambda: RAW_ID not in alive_ids(a), what="A to drop the raw member")
            await assert_serving(a, b)
