"""A flood of QUIC Initial packets costs a listener bounded state, given back (admission.py).

Every Initial below is junk after a valid long header (1,200 bytes, a fresh
destination connection ID each): aioquic would create a whole connection for
each before finding it cannot decrypt it. The RSS figures are in
``bench/quic_initial_flood.py``; here the number of connections is counted.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from pydevts import Node
from pydevts.errors import ConnectionClosedError, RemoteProtocolError
from pydevts.limits import StalledFrameError
from pydevts.protocols import Address, Connection
from pydevts_quic import QUICTransport
from pydevts_quic.connection import STREAM_ID, QUICConnection
from pydevts_quic.transport import QUICListener

pytestmark = pytest.mark.anyio

LOCAL = Address("127.0.0.1", 0)


def junk_initial(token: bytes = b"") -> bytes:
    """A QUIC v1 Initial: a valid long header, a fresh destination CID, then random bytes."""
    head = bytes([0xC3]) + (1).to_bytes(4, "big") + b"\x08" + os.urandom(8) + b"\x08" + os.urandom(8)
    head += bytes([len(token)]) + token  # (a one-byte varint: tokens under 64 bytes)
    rest = 1200 - len(head) - 2
    return head + (0x4000 | rest).to_bytes(2, "big") + os.urandom(rest)


@asynccontextmanager
async def serving(transport: QUICTransport) -> AsyncIterator[QUICListener]:
    listener = await transport.listen(LOCAL)

    async def echo(conn: Connection) -> None:
        try:
            while True:
                await conn.send_frames(await conn.receive_frames())
        except (ConnectionClosedError, RemoteProtocolError):
            pass
        finally:
            await conn.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        try:
            yield listener
        finally:
            await listener.aclose()
            tg.cancel_scope.cancel()


async def flood(listener: QUICListener, count: int, peak: list[int]) -> None:
    """Send ``count`` junk Initials, a few at a time, noting the most connections the listener held."""
    endpoint = listener.endpoint
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(junk_initial(), (listener.address.host, listener.address.port))
            if i % 20 == 19:
                await anyio.sleep(0.002)
                peak[0] = max(peak[0], len(endpoint.connections))
    await anyio.sleep(0.05)
    peak[0] = max(peak[0], len(endpoint.connections))


async def round_trip(listener: QUICListener) -> None:
    conn = await QUICTransport().connect(listener.address)
    try:
        await conn.send_frames([b"served"])
        assert await conn.receive_frames() == [b"served"]
    finally:
        await conn.aclose()


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


async def test_under_a_flood_of_initials_new_clients_prove_their_address_first() -> None:
    transport = QUICTransport(connect_timeout=0.5, max_half_open=16, retry_above=4)
    stats = transport.admission_stats
    with anyio.fail_after(20):
        async with serving(transport) as listener:
            peak = [0]
            await flood(listener, 2000, peak)
            assert peak[0] <= 4, f"{peak[0]} connections for junk Initials (Retry should start at 4)"
            assert stats.retries_sent >= 1000  # (a few may be lost in the socket buffer)
            await round_trip(listener)  # a real client goes through the Retry and is served
            # The junk handshakes end after the handshake timeout, and are forgotten.
            await wait_for(lambda: not listener.endpoint.connections, 3, "the half-open connections to go")
            assert stats.half_open_timed_out == 4 and stats.half_open_dropped == 0
            assert len(listener.endpoint.admission.half_open) == 0
            await round_trip(listener)


async def test_without_address_validation_the_half_open_cap_holds() -> None:
    transport = QUICTransport(connect_timeout=0.5, max_half_open=16, retry_above=10**6)
    stats = transport.admission_stats
    with anyio.fail_after(20):
        async with serving(transport) as listener:
            peak = [0]
            await flood(listener, 300, peak)
            assert peak[0] <= 16
            assert stats.half_open_dropped >= 250 and stats.retries_sent == 0
            await round_trip(listener)  # its handshake is the newest: the oldest junk makes room
            await wait_for(lambda: not listener.endpoint.connections, 3, "the half-open connections to go")
            assert len(listener.endpoint.admission.half_open) == 0


async def test_retry_always_and_a_bad_token_is_told_at_once() -> None:
    transport = QUICTransport(retry_above=0)
    with anyio.fail_after(10):
        async with serving(transport) as listener:
            await round_trip(listener)
            await round_trip(listener)
            assert transport.admission_stats.retries_sent == 2
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                sock.sendto(
                    junk_initial(token=os.urandom(40)), (listener.address.host, listener.address.port)
                )
                with anyio.fail_after(3):
                    await anyio.wait_readable(sock)
                answer = sock.recv(2048)
            assert answer[0] & 0xF0 == 0xC0  # a long-header Initial: the INVALID_TOKEN close
            assert transport.admission_stats.invalid_tokens == 1
            assert len(listener.endpoint.admission.half_open) == 0  # it opened nothing


async def test_a_quic_node_reports_the_counters() -> None:
    port = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = Node(port, node_id="q", transport="quic", transport_options={"max_half_open": 4, "retry_above": 2})
    with anyio.fail_after(15):
        async with node:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(50):
                    sock.sendto(junk_initial(), ("127.0.0.1", port))
            await wait_for(lambda: node.statistics()["transport.retries_sent"] >= 40, 5, "Retry packets")
            assert node.statistics()["transport.half_open_dropped"] == 0


async def test_a_peer_stalled_inside_a_frame_is_cut_after_the_frame_timeout() -> None:
    transport = QUICTransport()
    listener = await transport.listen(LOCAL)
    outcome: list[str] = []
    took: list[float] = []

    async def stalled(conn: Connection) -> None:
        assert isinstance(conn, QUICConnection)
        conn.frame_timeout = 0.5
        start = anyio.current_time()
        try:
            await conn.send_frames(await conn.receive_frames())  # a whole frame first: echoed
            await conn.receive_frames()
        except StalledFrameError as exc:
            outcome.append(str(exc))
            took.append(anyio.current_time() - start)
        finally:
            await conn.aclose()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, stalled)
            client = await QUICTransport().connect(listener.address)
            assert isinstance(client, QUICConnection)
            await client.send_frames([b"whole"])
            assert await client.receive_frames() == [b"whole"]
            client.quic.send_stream_data(STREAM_ID, struct.pack(">I", 100_000) + bytes(5_000))
            client.endpoint.transmit(client)
            while not outcome:
                await anyio.sleep(0.05)
            await client.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()
    assert "stalled inside a frame: 5004 bytes" in outcome[0]
    assert 0.4 <= took[0] <= 2.0
