"""The TCP transport over real loopback sockets, on both anyio backends."""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from pydevts.errors import (
    AddressInUseError,
    ConnectError,
    ConnectionClosedError,
    FrameTooLargeError,
    RemoteProtocolError,
    TransportError,
)
from pydevts.protocols import Address, Connection, Listener, Transport
from pydevts_tcp import TCPConnection, TCPListener, TCPTransport

pytestmark = pytest.mark.anyio

DEADLINE = 10.0
LOCALHOST = "127.0.0.1"


@asynccontextmanager
async def serving(
    transport: TCPTransport, address: Address | None = None
) -> AsyncIterator[tuple[TCPListener, anyio.abc.ObjectReceiveStream[Connection]]]:
    """Listen and serve; yield the listener and a stream of accepted server-side connections.

    Every accepted connection is held open until the block ends, then closed.
    """
    listener = await transport.listen(address or Address(LOCALHOST, 0))
    send, receive = anyio.create_memory_object_stream[Connection](10)
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        try:
            await send.send(conn)
            await done.wait()
        finally:
            await conn.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            try:
                yield listener, receive
            finally:
                done.set()
                await listener.aclose()
                tg.cancel_scope.cancel()
    finally:
        await listener.aclose()
        send.close()
        receive.close()


@asynccontextmanager
async def tcp_pair(max_frame_size: int = 1024 * 1024) -> AsyncIterator[tuple[TCPConnection, Connection]]:
    """A connected (client, server) pair of TCP connections."""
    transport = TCPTransport(max_frame_size=max_frame_size)
    async with serving(transport) as (listener, accepted):
        client = await transport.connect(listener.address)
        try:
            server = await accepted.receive()
            yield client, server
        finally:
            await client.aclose()


async def receive_n(conn: Connection, n: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < n:
        got.extend(await conn.receive_frames())
    assert len(got) == n  # never more than was sent
    return got


async def closed_port() -> int:
    """A loopback port with (very likely) nothing listening on it."""
    listener = await anyio.create_tcp_listener(local_host=LOCALHOST, local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


# ------------------------------------------------------------------ basics


async def test_listen_on_port_zero_binds_a_real_port() -> None:
    transport = TCPTransport()
    with anyio.fail_after(DEADLINE):
        listener = await transport.listen(Address(LOCALHOST, 0))
        try:
            assert listener.address.host == LOCALHOST
            assert listener.address.port > 0
            assert isinstance(listener, Listener)
        finally:
            await listener.aclose()
            await listener.aclose()  # idempotent


async def test_objects_satisfy_the_protocols() -> None:
    transport = TCPTransport(max_frame_size=4096)
    assert isinstance(transport, Transport)
    assert transport.name == "tcp"
    with anyio.fail_after(DEADLINE):
        async with tcp_pair(4096) as (client, server):
            assert isinstance(client, Connection) and isinstance(server, Connection)
            assert client.max_frame_size == server.max_frame_size == 4096
            assert client.remote_address.startswith(f"{LOCALHOST}:")
            assert server.remote_address.startswith(f"{LOCALHOST}:")


async def test_frames_round_trip_both_ways_in_order() -> None:
    rng = random.Random(7)
    batches = [[rng.randbytes(rng.randrange(0, 300)) for _ in range(rng.randrange(1, 20))] for _ in range(30)]
    batches.append([b""])  # an empty frame on its own
    expected = [f for batch in batches for f in batch]
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, server):
            for a, b in ((client, server), (server, client)):

                async def sender(conn: Connection = a) -> None:
                    for batch in batches:
                        await conn.send_frames(batch)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    assert await receive_n(b, len(expected)) == expected


async def test_both_directions_at_once() -> None:
    frames = [f"{i}".encode() * 50 for i in range(500)]
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, server):
            results: dict[str, list[bytes]] = {}

            async def receive_into(key: str, conn: Connection) -> None:
                results[key] = await receive_n(conn, len(frames))

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive_into, "server", server)
                tg.start_soon(receive_into, "client", client)
                tg.start_soon(client.send_frames, frames)
                tg.start_soon(server.send_frames, frames[::-1])
    assert results["server"] == frames
    assert results["client"] == frames[::-1]


@pytest.mark.parametrize("limit", [1024, 300_000, 1024 * 1024])
async def test_frame_exactly_at_the_limit_goes_through(limit: int) -> None:
    frame = random.Random(limit).randbytes(limit)
    with anyio.fail_after(DEADLINE):
        async with tcp_pair(limit) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send_frames, [frame, b"tail"])
                assert await receive_n(server, 2) == [frame, b"tail"]


async def test_oversize_send_raises_and_keeps_the_connection() -> None:
    limit = 1024
    with anyio.fail_after(DEADLINE):
        async with tcp_pair(limit) as (client, server):
            with pytest.raises(FrameTooLargeError) as info:
                await client.send_frames([b"before", b"x" * (limit + 1), b"after"])
            assert (info.value.size, info.value.limit) == (limit + 1, limit)
            # nothing of the refused batch was written, and the connection still works
            await client.send_frames([b"next"])
            assert await server.receive_frames() == [b"next"]
            await server.send_frames([b"reply"])
            assert await client.receive_frames() == [b"reply"]


async def test_peer_announcing_oversize_frame_is_a_protocol_error() -> None:
    limit = 1024
    transport = TCPTransport(max_frame_size=limit)
    with anyio.fail_after(DEADLINE):
        async with serving(transport) as (listener, accepted):
            raw = await anyio.connect_tcp(LOCALHOST, listener.address.port)
            try:
                server = await accepted.receive()
                # A good frame, then only the 4-byte header of an oversize one: no body is ever sent.
                await raw.send(struct.pack(">I", 2) + b"ok" + struct.pack(">I", limit + 1))
                got: list[bytes] = []
                with pytest.raises(RemoteProtocolError, match=str(limit + 1)):
                    while True:
                        got.extend(await server.receive_frames())
                assert got in ([], [b"ok"])  # the good frame may come first or be lost with the error
            finally:
                await raw.aclose()


async def test_receiver_with_smaller_limit_refuses_what_sender_allows() -> None:
    with anyio.fail_after(DEADLINE):
        async with serving(TCPTransport(max_frame_size=1024)) as (listener, accepted):
            client = await TCPTransport(max_frame_size=4096).connect(listener.address)
            try:
                server = await accepted.receive()
                await client.send_frames([b"y" * 2000])
                with pytest.raises(RemoteProtocolError):
                    await server.receive_frames()
            finally:
                await client.aclose()


# ------------------------------------------------------------------ errors


async def test_connect_to_closed_port_raises_connect_error() -> None:
    with anyio.fail_after(DEADLINE):
        port = await closed_port()
        with pytest.raises(ConnectError) as info:
            await TCPTransport().connect(Address(LOCALHOST, port))
    assert f"{LOCALHOST}:{port}" in str(info.value)
    assert isinstance(info.value, TransportError)
    assert isinstance(info.value.__cause__, OSError)


async def test_listen_on_taken_port_raises_address_in_use() -> None:
    transport = TCPTransport()
    with anyio.fail_after(DEADLINE):
        first = await transport.listen(Address(LOCALHOST, 0))
        try:
            with pytest.raises(AddressInUseError) as info:
                second = await transport.listen(first.address)
                await second.aclose()
            assert str(first.address) in str(info.value)
            assert isinstance(info.value, TransportError)
        finally:
            await first.aclose()


async def test_peer_close_gives_connection_closed_error() -> None:
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, server):
            await client.send_frames([b"last words"])
            await client.aclose()
            assert await server.receive_frames() == [b"last words"]
            with pytest.raises(ConnectionClosedError, match="closed by") as info:
                await server.receive_frames()
            assert "middle of a frame" not in str(info.value)
            # and again: it stays closed
            with pytest.raises(ConnectionClosedError):
                await server.receive_frames()


async def test_server_close_seen_by_client() -> None:
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, server):
            await server.aclose()
            with pytest.raises(ConnectionClosedError):
                await client.receive_frames()


async def test_peer_close_in_the_middle_of_a_frame_says_so() -> None:
    with anyio.fail_after(DEADLINE):
        async with serving(TCPTransport()) as (listener, accepted):
            raw = await anyio.connect_tcp(LOCALHOST, listener.address.port)
            try:
                server = await accepted.receive()
                await raw.send(struct.pack(">I", 100) + b"only part")
            finally:
                await raw.aclose()
            with pytest.raises(
                ConnectionClosedError, match=r"in the middle of a frame \(13 bytes buffered\)"
            ):
                await server.receive_frames()


async def test_use_after_own_close_raises_connection_closed_error() -> None:
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, _server):
            await client.aclose()
            await client.aclose()  # idempotent
            with pytest.raises(ConnectionClosedError):
                await client.send_frames([b"x"])
            with pytest.raises(ConnectionClosedError):
                await client.receive_frames()


async def test_listener_serves_many_connections_and_stops_on_close() -> None:
    transport = TCPTransport()
    with anyio.fail_after(DEADLINE):
        async with serving(transport) as (listener, accepted):
            clients = [await transport.connect(listener.address) for _ in range(5)]
            try:
                servers = [await accepted.receive() for _ in clients]
                for i, client in enumerate(clients):
                    await client.send_frames([str(i).encode()])
                got = [await s.receive_frames() for s in servers]
                assert sorted(got) == [[str(i).encode()] for i in range(5)]
            finally:
                for client in clients:
                    await client.aclose()
        # serving() closed the listener: nothing answers there any more
        with pytest.raises(ConnectError):
            await transport.connect(listener.address)


# ------------------------------------------------------------------ send_frames_nowait


async def test_send_frames_nowait_keeps_what_the_socket_refuses_and_sends_it_first() -> None:
    """Fill the socket while the peer does not read: the kept tail goes out before later frames."""
    big = [bytes([i % 251]) * 60_000 for i in range(200)]  # 12 MB: far more than socket buffers hold
    with anyio.fail_after(DEADLINE):
        async with tcp_pair() as (client, server):
            assert isinstance(client, TCPConnection)
            written = 0
            kept = False
            for frame in big:
                written += 1
                if not client.send_frames_nowait([frame]):
                    kept = True
                    break
            assert kept, "the socket buffer never filled"
            with pytest.raises(RuntimeError, match="kept bytes"):
                client.send_frames_nowait([b"too early"])
            tail = [b"after-1", b"after-2"]

            async def flush() -> None:
                await client.send_frames(tail)  # writes the kept bytes first, then these

            async with anyio.create_task_group() as tg:
                tg.start_soon(flush)
                got = await receive_n(server, written + len(tail))
            assert got == big[:written] + tail
            # once flushed, the fast path works again
            assert client.send_frames_nowait([b"again"])
            assert await server.receive_frames() == [b"again"]
