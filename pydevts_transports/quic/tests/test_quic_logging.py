"""What the QUIC transport logs: nothing at INFO for a connection that merely comes and goes.

aioquic reports each connection's life at INFO (protocol version and ALPN
negotiated, close sent or received); the transport moves that to DEBUG, and
its own linger message is DEBUG unless written bytes may really be lost.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from pydevts.errors import ConnectionClosedError, RemoteProtocolError
from pydevts.protocols import Address, Connection
from pydevts_quic import QUICTransport
from pydevts_quic.connection import QUICConnection

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

LOCAL = Address("127.0.0.1", 0)


@asynccontextmanager
async def serving(last_words: bytes | None = None) -> AsyncIterator[tuple[Address, list[QUICConnection]]]:
    """A listener echoing frames; at the peer's end of stream it sends ``last_words`` if given, and closes."""
    listener = await QUICTransport().listen(LOCAL)
    accepted: list[QUICConnection] = []

    async def echo(conn: Connection) -> None:
        assert isinstance(conn, QUICConnection)
        accepted.append(conn)
        try:
            while True:
                await conn.send_frames(await conn.receive_frames())
        except (ConnectionClosedError, RemoteProtocolError):
            if last_words is not None:
                await conn.send_frames([last_words])
        finally:
            await conn.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        try:
            yield listener.address, accepted
        finally:
            await listener.aclose()
            tg.cancel_scope.cancel()


async def round_trip(conn: Connection, frame: bytes) -> None:
    await conn.send_frames([frame])
    assert await conn.receive_frames() == [frame]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"not within {timeout} s: {what}")


def vanish(conn: QUICConnection) -> None:
    """As if the process at this end exited: its socket closes, nothing more is sent or acknowledged."""
    conn.endpoint._close_socket()


def loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


def assert_aioquic_spoke_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """aioquic's chatter was captured (so the check above it could fail), at DEBUG."""
    chatter = [r for r in caplog.records if r.name == "quic" and "ALPN negotiated" in r.getMessage()]
    assert chatter and all(r.levelno == logging.DEBUG for r in chatter), chatter


async def test_a_client_connecting_and_closing_logs_nothing_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(20):
        async with serving() as (address, accepted):
            client_transport = QUICTransport()
            conn = await client_transport.connect(address)
            await round_trip(conn, b"hello")
            await conn.aclose()
            await client_transport.aclose()  # the client's linger, as a stopping node waits for it
            assert conn.terminated
            await wait_until(lambda: bool(accepted) and accepted[0].terminated, 10, "the server side ended")
    assert loud(caplog) == []
    assert_aioquic_spoke_at_debug(caplog)
    closes = [r for r in caplog.records if r.name == "quic" and "Connection close" in r.getMessage()]
    assert closes and all(r.levelno == logging.DEBUG for r in closes), closes


async def test_a_client_that_exits_right_after_closing_logs_nothing_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `pydevts members`: the CLI gets its reply, closes and exits, so the node's last frames
    # (here: written after the client's end of stream) are never acknowledged.
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(20):
        async with serving(last_words=b"bye") as (address, accepted):
            conn = await QUICTransport().connect(address)
            assert isinstance(conn, QUICConnection)
            await round_trip(conn, b"members?")
            await conn.aclose()
            vanish(conn)
            await wait_until(lambda: bool(accepted) and accepted[0].terminated, 10, "the server side ended")
    assert loud(caplog) == []
    assert_aioquic_spoke_at_debug(caplog)
    lingered = [r.getMessage() for r in caplog.records if r.name == "pydevts.quic"]
    assert any("(closed by the peer) with" in m and "bytes unacknowledged" in m for m in lingered), lingered


async def test_bytes_a_vanished_peer_never_acknowledged_are_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(20):
        async with serving() as (address, accepted):
            conn = await QUICTransport().connect(address)
            assert isinstance(conn, QUICConnection)
            await round_trip(conn, b"hello")
            vanish(conn)  # a crash: no end of stream, no close
            server = accepted[0]
            await server.send_frames([b"x" * 5000])
            await server.aclose()
            await wait_until(lambda: server.terminated, 10, "the server side ended")
    [line] = loud(caplog)
    # 5000 bytes and a length prefix, maybe with the echo of "hello" if its ACK had not left yet
    pattern = (
        rf"INFO pydevts\.quic: closing QUIC connection to {re.escape(server.remote_address)} with "
        r"(5004|5013) written bytes unacknowledged \(the peer fell silent\): "
        r"the peer may not have received them"
    )
    assert re.fullmatch(pattern, line), line
    assert_aioquic_spoke_at_debug(caplog)
