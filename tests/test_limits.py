"""Limits (issue 10, point 4): what one peer may cost a node, over real loopback TCP.

Each attack is run against a node with small limits (so that the test is
quick) while a member and other clients keep being served; the last part
tests the bookkeeping of :mod:`pydevts.limits` without any IO.
"""

from __future__ import annotations

import argparse
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import msgpack
import pytest
from inproc import RawPeer, cluster, frame, free_port, wait_for_mesh, wait_until
from pydevts import HandshakeRefusedError, Limits, Node
from pydevts.cli.options import add_node_options, node_from_args
from pydevts.errors import ConfigurationError
from pydevts.limits import (
    ConnectionGuard,
    PendingTable,
    RequestSlots,
    address_key,
    default_max_connections,
)
from pydevts.node.client import NodeClient
from pydevts.protocols import Address, Connection
from pydevts.wire import REPLY, encode_request
from pydevts.wire.link import Link
from pydevts_tcp.transport import MAPPED_FRAME, TCPTransport

PORT_WAIT = 5.0


async def echo(sender: str, payload: Any) -> Any:
    return [sender, payload]


def stat(node: Node, name: str) -> int:
    return node.statistics()[f"limits.{name}"]


async def assert_closed_by_node(raw: RawPeer, within: float) -> float:
    start = anyio.current_time()
    with anyio.fail_after(within):
        await raw.receive_until_eof()
    return anyio.current_time() - start


async def assert_serving(a: Node, b: Node) -> None:
    assert await b.request("a", "echo", "to a", timeout=5) == ["b", "to a"]
    assert await a.request("b", "echo", "to b", timeout=5) == ["a", "to b"]


@asynccontextmanager
async def pair(limits: Limits, **options: Any) -> AsyncIterator[tuple[Node, Node, int]]:
    """Node ``a`` (with ``limits``; it starts the cluster) and member ``b``, both answering ``echo``."""
    port = free_port()
    a = Node(port, node_id="a", limits=limits, **options)
    b = Node(port, node_id="b")
    for node in (a, b):
        node.add_handler("echo", echo)
    async with cluster(a, b):
        yield a, b, port


def request_frame(request_id: int, payload: Any) -> bytes:
    return encode_request(request_id, "echo", msgpack.packb(payload))


async def receive_reply(raw: RawPeer, request_id: int) -> Any:
    while True:
        got = await raw.receive_frame()
        assert got is not None, "the node closed the connection instead of replying"
        if got[0] == REPLY and struct.unpack_from(">Q", got, 1)[0] == request_id:
            return msgpack.unpackb(got[9:])


# --------------------------------------------------------------------------- connections


@pytest.mark.anyio
async def test_connections_over_the_per_address_limit_are_dropped_and_a_member_still_joins() -> None:
    limits = Limits(max_connections_per_address=8, max_pending_handshakes=8, max_clients_per_address=4)
    port = free_port()
    a, b = Node(port, node_id="a", limits=limits), Node(port, node_id="b")
    for node in (a, b):
        node.add_handler("echo", echo)
    with anyio.fail_after(20):
        async with a, AsyncExitStack() as stack:
            # 30 connections from this address that never say a word: the 22 oldest are dropped.
            raws = [await stack.enter_async_context(RawPeer.connect(port)) for _ in range(30)]
            await wait_until(lambda: stat(a, "handshakes_dropped") == 22, PORT_WAIT, "22 dropped handshakes")
            assert stat(a, "pending_handshakes") == 8
            for raw in raws[:22]:
                await assert_closed_by_node(raw, within=2)
            # A member from the very same address still joins (the oldest silent one makes room).
            async with b:
                await wait_for_mesh([a, b])
                await assert_serving(a, b)
                # Clients: four per address; the fifth is told why at the handshake.
                async with AsyncExitStack() as clients:
                    for _ in range(4):
                        client = await clients.enter_async_context(NodeClient(a.address))
                        assert (await client.request("echo", 1))[1] == 1
                    with pytest.raises(HandshakeRefusedError, match="at most 4 clients per address"):
                        async with NodeClient(a.address):
                            pass
                    assert stat(a, "clients_refused") == 1
                    assert stat(a, "open_clients") == 4
                    await assert_serving(a, b)
                await wait_until(lambda: stat(a, "open_clients") == 0, PORT_WAIT, "clients released")
                for raw in raws[22:]:
                    await raw.stream.aclose()
                await wait_until(lambda: stat(a, "pending_handshakes") == 0, PORT_WAIT, "handshakes released")
                assert stat(a, "open_connections") == 1  # b's link, and nothing leaked
                await assert_serving(a, b)


@pytest.mark.anyio
async def test_over_max_connections_a_new_connection_is_closed_at_once() -> None:
    with anyio.fail_after(20):
        async with pair(Limits(max_connections=3, max_clients=2)) as (a, b, port):
            async with NodeClient(a.address) as one, NodeClient(a.address) as two:
                assert (await one.request("echo", 1))[1] == 1 and (await two.request("echo", 2))[1] == 2
                assert stat(a, "open_connections") == 3  # b, one, two
                async with RawPeer.connect(port) as raw:
                    took = await assert_closed_by_node(raw, within=2)
                assert took < 0.5
                assert stat(a, "connections_refused") == 1
                await assert_serving(a, b)


# --------------------------------------------------------------------------- slow consumers


@pytest.mark.anyio
async def test_a_client_that_never_reads_its_replies_blocks_nobody_and_is_cut() -> None:
    """The pipelining attack: thousands of requests, no reply read. Others are served; it is cut."""
    timeout = 1.0
    with anyio.fail_after(30):
        async with pair(Limits(slow_consumer_timeout=timeout)) as (a, b, port):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw = RawPeer(stream)
            await raw.handshake("flooder", role="client")
            payload = bytes(2048)
            flood = b"".join(frame(request_frame(i, payload)) for i in range(1, 10_001))  # 20 MB of replies

            async def send_flood() -> None:
                try:
                    await stream.send(flood)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

            async with stream, anyio.create_task_group() as tg:
                tg.start_soon(send_flood)
                links: list[Link] = []

                def stuck() -> bool:
                    links[:] = list(a._ctx.clients.values())
                    return bool(links) and links[0].queued_bytes >= links[0].high_water

                await wait_until(stuck, 10, "the flooder's link to be full")
                stuck_at = anyio.current_time()
                link = links[0]
                key = next(iter(a._ctx.clients))
                # While it is stuck, everyone else is served: a member's 300 requests at once, a client.
                replies: list[Any] = []

                async def ask(i: int) -> None:
                    replies.append(await b.request("a", "echo", i, timeout=5))

                async with anyio.create_task_group() as others:
                    for i in range(300):
                        others.start_soon(ask, i)
                assert sorted(r[1] for r in replies) == list(range(300))
                async with NodeClient(a.address) as client:
                    assert (await client.request("echo", "me too"))[1] == "me too"
                assert await a.request("b", "echo", "out", timeout=5) == ["a", "out"]
                # Memory stays bounded: the queue under high water plus a frame, 64 requests in flight.
                assert link.queued_bytes <= link.high_water + a.max_frame_size
                assert a._ctx.dispatcher.requests_in_flight(key) <= a.limits.max_requests_per_origin
                await wait_until(lambda: stat(a, "slow_consumers_cut") == 1, timeout + 3, "the cut")
                took = anyio.current_time() - stuck_at
                assert link.closed and "slow consumer" in (link.close_reason or "")
                tg.cancel_scope.cancel()
            assert took <= timeout + 1.5, f"cut {took:.2f} s after its queue filled"
            await wait_until(lambda: stat(a, "open_clients") == 0, PORT_WAIT, "the client released")
            await assert_serving(a, b)
            assert stat(a, "slow_consumers_cut") == 1


# --------------------------------------------------------------------------- stalled frames


@pytest.mark.anyio
async def test_peers_stalled_inside_a_large_frame_are_closed_within_the_frame_timeout() -> None:
    timeout = 0.5
    with anyio.fail_after(20):
        async with pair(Limits(frame_timeout=timeout)) as (a, b, port), AsyncExitStack() as stack:
            raws = []
            for i in range(10):
                raw = await stack.enter_async_context(RawPeer.connect(port))
                # nine clients and one member, each 200 KB into a frame of 1,000,000 bytes
                await raw.handshake(f"staller-{i}", role="member" if i == 0 else "client")
                await raw.send_raw(struct.pack(">I", 1_000_000) + bytes(200_000))
                raws.append(raw)
            start = anyio.current_time()
            for raw in raws:
                await assert_closed_by_node(raw, within=timeout + 2)
            assert anyio.current_time() - start <= timeout + 1.5
            await wait_until(lambda: stat(a, "stalled_frames_closed") == 10, PORT_WAIT, "10 stalled frames")
            await assert_serving(a, b)


@pytest.mark.anyio
async def test_a_frame_whose_bytes_keep_coming_is_not_cut() -> None:
    with anyio.fail_after(20):
        async with pair(Limits(frame_timeout=1.0)) as (a, _, port), RawPeer.connect(port) as raw:
            await raw.handshake("trickle", role="client")
            data = frame(request_frame(1, bytes(400_000)))
            step = len(data) // 4 + 1
            for i in range(0, len(data), step):  # 0.6 s of waiting in all: under the timeout
                await raw.send_raw(data[i : i + step])
                await anyio.sleep(0.2)
            assert (await receive_reply(raw, 1))[1] == bytes(400_000)
            assert stat(a, "stalled_frames_closed") == 0


@pytest.mark.anyio
async def test_large_frames_are_assembled_apart_and_arrive_whole() -> None:
    """Frames of MAPPED_FRAME bytes or more take the memory-map path: mixed with small ones, in pieces."""
    big = bytes(range(256)) * (MAPPED_FRAME // 256)
    frames = [b"a", big, b"b" * 5, big[:-1], big + b"tail", b"c", bytes(3 * 1024 * 1024), b"d"]
    transport = TCPTransport(max_frame_size=4 * 1024 * 1024)
    listener = await transport.listen(Address("127.0.0.1", 0))
    received: list[list[bytes]] = []

    async def collect(conn: Connection) -> None:
        got: list[bytes] = []
        while len(got) < len(frames):
            got.extend(await conn.receive_frames())
        received.append(got)
        await conn.aclose()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, collect)
            conn = await transport.connect(listener.address)
            await conn.send_frames(frames)  # all in one write
            async with await anyio.connect_tcp("127.0.0.1", listener.address.port) as raw:
                data = b"".join(frame(f) for f in frames)
                for i in range(0, len(data), 100_000):  # in pieces split anywhere
                    await raw.send(data[i : i + 100_000])
                await wait_until(lambda: len(received) == 2, 5, "both connections' frames")
            await conn.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()
    assert received == [frames, frames]


# --------------------------------------------------------------------------- idle clients


@pytest.mark.anyio
async def test_an_idle_client_is_closed_after_the_idle_timeout_but_not_while_served() -> None:
    idle = 0.5

    async def slow(sender: str, payload: Any) -> Any:
        await anyio.sleep(2 * idle)
        return payload

    with anyio.fail_after(20):
        async with pair(Limits(client_idle_timeout=idle)) as (a, b, port), RawPeer.connect(port) as raw:
            a.add_handler("slow", slow)
            await raw.handshake("idler", role="client")
            # a request that runs longer than the idle timeout is answered
            await raw.send_frames(encode_request(1, "slow", msgpack.packb("late")))
            assert await receive_reply(raw, 1) == "late"
            # requests more often than the idle timeout keep the client
            for i in range(2, 6):
                await raw.send_frames(request_frame(i, i))
                assert (await receive_reply(raw, i))[1] == i
                await anyio.sleep(idle / 2)
            took = await assert_closed_by_node(raw, within=idle + 2)
            assert idle / 2 - 0.1 <= took <= idle + 1.0
            assert stat(a, "idle_clients_closed") == 1
            await assert_serving(a, b)


# --------------------------------------------------------------------------- options


def test_limits_are_node_options_and_cli_flags() -> None:
    parser = argparse.ArgumentParser()
    add_node_options(parser)
    args = parser.parse_args(
        ["7000", "--max-connections", "100", "--max-clients-per-address", "3", "--client-idle-timeout", "2.5"]
    )
    node = node_from_args(args)
    assert node.limits.max_connections == 100 and node.limits.max_clients == 25
    assert node.limits.max_clients_per_address == 3 and node.limits.client_idle_timeout == 2.5
    assert node.limits.slow_consumer_timeout == Limits().slow_consumer_timeout
    for bad in (["--max-connections", "0"], ["--frame-timeout", "-1"], ["--max-requests", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["7000", *bad])
    assert Node(7000).limits == Limits().resolve()


# --------------------------------------------------------------------------- limits.py, sans-IO


def test_limits_are_checked_and_auto_values_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (
        {"max_connections": 0},
        {"max_requests": True},
        {"frame_timeout": -1.0},
        {"client_idle_timeout": float("inf")},
        {"max_clients_per_address": 65},
    ):
        with pytest.raises(ConfigurationError):
            Limits(**bad)
    with pytest.raises(ConfigurationError, match="max_clients"):
        Limits(max_connections=10, max_clients=11).resolve()
    resolved = Limits(max_connections=400).resolve()
    assert resolved.max_clients == 100
    import resource

    for soft, expected in ((1024, 768), (20000, 1000), (100, 16), (resource.RLIM_INFINITY, 1000)):
        monkeypatch.setattr(resource, "getrlimit", lambda _which, soft=soft: (soft, soft))
        assert default_max_connections() == expected


def test_address_key_groups_by_host_and_ipv6_prefix() -> None:
    assert address_key("127.0.0.1:5000") == "127.0.0.1"
    assert address_key("[2001:db8::1]:7000") == "2001:db8::/64"
    assert address_key("[2001:db8::ffff:1]:1") == address_key("[2001:db8::2]:2")
    assert address_key("[::ffff:10.0.0.1]:1") == "10.0.0.1"
    assert address_key("::1") == "::/64"
    assert address_key("?") == "?"


def test_pending_table_drops_the_oldest_of_the_busiest_address() -> None:
    table: PendingTable[str] = PendingTable(max_total=4, max_per_address=3)
    assert [table.add(x, "x") for x in ("x1", "x2")] == [None, None]
    assert table.add("y1", "y") is None
    assert table.add("x3", "x") is None
    assert table.add("z1", "z") == "x1"  # full: the busiest address gives up its oldest
    assert table.add("x4", "x") == "x2"  # x has 2 (of 3) but the table is full: x is still the busiest
    assert table.add("x5", "x") == "x3"  # its own cap: its own oldest
    assert len(table) == 4 and table.count("x") == 2 and "z1" in table
    assert table.remove("y1") and not table.remove("y1")
    assert table.heaviest_oldest() == "x4"


def test_connection_guard_admits_counts_and_releases() -> None:
    guard = ConnectionGuard(
        Limits(
            max_connections=6,
            max_connections_per_address=3,
            max_pending_handshakes=4,
            max_clients=2,
            max_clients_per_address=2,
        )
    )
    first, dropped = guard.admit("x")
    assert first is not None and dropped == []
    assert guard.client(first) is None
    second, _ = guard.admit("x")
    assert second is not None and guard.client(second) is None
    third, _ = guard.admit("x")  # x: two clients and one handshake
    assert third is not None
    fourth, dropped = guard.admit("x")  # over x's 3: its own oldest handshake goes
    assert fourth is not None and dropped == [third] and third.role == "closed"
    assert guard.client(fourth) is not None  # two clients already
    assert guard.counters.clients_refused == 1
    guard.release(fourth)
    members = []
    for address in ("m1", "m2", "m3", "m4"):
        ticket, dropped = guard.admit(address)
        assert ticket is not None and dropped == []
        guard.member(ticket)
        members.append(ticket)
    assert guard.open == 6
    refused, dropped = guard.admit("y")  # full and no handshake in progress to drop: refused at once
    assert refused is None and dropped == [] and guard.counters.connections_refused == 1
    guard.release(members[0])
    guard.release(members[0])  # idempotent
    assert guard.open == 5
    stats = guard.statistics()
    assert stats["limits.open_connections"] == 5 and stats["limits.open_clients"] == 2
    assert stats["limits.handshakes_dropped"] == 1


@pytest.mark.anyio
async def test_request_slots_bound_each_origin_and_the_node() -> None:
    slots = RequestSlots(max_requests=3, per_origin=2)
    assert slots.try_acquire("a") and slots.try_acquire("a")
    assert not slots.try_acquire("a")  # a's two are taken
    assert slots.try_acquire("b")
    assert not slots.try_acquire("c")  # the node's three are taken
    assert slots.in_flight("a") == 2 and slots.in_flight("c") == 0
    slots.handler_done()  # a's first handler returned; its reply is still being queued
    assert slots.try_acquire("c")
    got = []

    async def third_from_a() -> None:
        await slots.acquire("a")
        got.append("a")

    async with anyio.create_task_group() as tg:
        tg.start_soon(third_from_a)
        await anyio.sleep(0.05)
        assert got == []  # a waits for its own slot, nobody else does
        slots.handler_done()
        slots.release("a")  # a's first reply is queued: its slot is free
        with anyio.fail_after(1):
            while not got:
                await anyio.sleep(0.01)
    assert slots.in_flight("a") == 2
