"""The QUIC transport over real loopback UDP sockets, on both anyio backends.

Certificates, ALPN, refusals of bad input, a vanished peer, bounded memory,
and the failure detector's datagrams sharing the QUIC socket.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pydevts_quic.transport as quic_transport
import pytest
from certs import CA
from pydevts.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    RemoteProtocolError,
    TransportError,
)
from pydevts.protocols import Address, Connection
from pydevts_quic import QUICTransport
from pydevts_quic._aioquic import data_received
from pydevts_quic.connection import HIGH_WATER, READ_SIZE, QUICConnection
from pydevts_quic.transport import QUICListener

pytestmark = pytest.mark.anyio

LOCAL = Address("127.0.0.1", 0)


# ----------------------------------------------------------------------------- helpers


@asynccontextmanager
async def serving(transport: QUICTransport) -> AsyncIterator[tuple[QUICListener, list[Connection]]]:
    """A listener whose accepted connections echo every frame back (and are listed)."""
    listener = await transport.listen(LOCAL)
    accepted: list[Connection] = []

    async def echo(conn: Connection) -> None:
        accepted.append(conn)
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
            yield listener, accepted
        finally:
            await listener.aclose()
            tg.cancel_scope.cancel()


async def round_trip(conn: Connection, frames: list[bytes]) -> None:
    await conn.send_frames(frames)
    got: list[bytes] = []
    while len(got) < len(frames):
        got.extend(await conn.receive_frames())
    assert got == frames


async def assert_serves(listener: QUICListener, transport: QUICTransport | None = None) -> None:
    """A fresh, well-behaved client still gets served."""
    conn = await (transport or QUICTransport()).connect(listener.address)
    try:
        await round_trip(conn, [b"still serving"])
    finally:
        await conn.aclose()


# ----------------------------------------------------------------------------- TLS


async def test_the_default_self_signed_certificate_just_works() -> None:
    with anyio.fail_after(10):
        async with serving(QUICTransport()) as (listener, _):
            conn = await QUICTransport().connect(listener.address)
            await round_trip(conn, [b"a", b"", b"b" * 5000])
            await conn.aclose()


async def test_nodes_with_certificates_from_one_ca_connect(tmp_path: Path) -> None:
    ca = CA(tmp_path, "cluster")
    with anyio.fail_after(10):
        async with serving(QUICTransport(**ca.issue("server"))) as (listener, _):
            conn = await QUICTransport(**ca.issue("client")).connect(listener.address)
            await round_trip(conn, [b"verified"])
            await conn.aclose()


async def test_a_certificate_the_client_does_not_trust_is_refused_clearly(tmp_path: Path) -> None:
    ours, theirs = CA(tmp_path, "ours"), CA(tmp_path, "theirs")
    with anyio.fail_after(15):
        async with serving(QUICTransport(**theirs.issue("server"))) as (listener, _):
            with pytest.raises(ConnectError) as caught:
                await QUICTransport(**ours.issue("client")).connect(listener.address)
            message = str(caught.value)
            assert "TLS handshake with 127.0.0.1:" in message and "failed" in message, message
            assert "certificate" in message.lower() or "issuer" in message.lower(), message
            # the refusing client does not upset the server: a trusted one is served
            await assert_serves(listener, QUICTransport(**theirs.issue("client")))


async def test_a_certificate_for_another_host_is_refused_unless_server_name_says_so(tmp_path: Path) -> None:
    ca = CA(tmp_path, "cluster")
    with anyio.fail_after(15):
        async with serving(QUICTransport(**ca.issue("server", ip="10.9.9.9"))) as (listener, _):
            with pytest.raises(ConnectError, match=r"hostname '127\.0\.0\.1' doesn't match"):
                await QUICTransport(**ca.issue("client")).connect(listener.address)
            named = QUICTransport(**ca.issue("client"), server_name="node.pydevts")
            await assert_serves(listener, named)


async def test_bad_certificate_settings_are_configuration_errors(tmp_path: Path) -> None:
    ca = CA(tmp_path, "cluster")
    with pytest.raises(ConfigurationError, match="cafile given without certfile"):
        QUICTransport(cafile=ca.cafile)
    with pytest.raises(ConfigurationError, match="keyfile given without certfile"):
        QUICTransport(keyfile="x.key")
    with pytest.raises(ConfigurationError, match="cannot load cafile"):
        QUICTransport(**{**ca.issue("n"), "cafile": str(tmp_path / "missing.pem")})
    broken = QUICTransport(certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="cannot load certfile"):
        await broken.listen(LOCAL)


async def test_alpn_names_the_protocol_version_and_a_mismatch_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert quic_transport.ALPN == "pydevts/1"
    with anyio.fail_after(15):
        async with serving(QUICTransport()) as (listener, _):
            monkeypatch.setattr(quic_transport, "ALPN", "pydevts/99")
            with pytest.raises(ConnectError, match="ALPN"):
                await QUICTransport().connect(listener.address)
            monkeypatch.undo()
            await assert_serves(listener)


# ----------------------------------------------------------------------------- bad input


async def test_junk_datagrams_are_dropped_and_the_listener_keeps_serving() -> None:
    with anyio.fail_after(10):
        async with serving(QUICTransport()) as (listener, _):
            conn = await QUICTransport().connect(listener.address)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                for payload in (
                    b"",
                    b"\x00probe-for-nobody",
                    b"\x3fnot quic",
                    b"\xc0" + b"\xff" * 40,
                    b"\x40abc",
                ):
                    junk.sendto(payload, (listener.address.host, listener.address.port))
            await round_trip(conn, [b"unharmed"])
            await anyio.lowlevel.checkpoint()  # the junk was read before the echo came back
            assert listener.endpoint.dropped >= 3
            await conn.aclose()


async def test_a_stream_that_is_not_pydevts_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with anyio.fail_after(10):
        async with serving(QUICTransport()) as (listener, accepted):
            monkeypatch.setattr(quic_transport, "PREAMBLE", b"GET / HTTP/1.1\r\n")
            stranger = await QUICTransport().connect(listener.address)
            monkeypatch.undo()
            with pytest.raises(ConnectionClosedError, match="not a pydevts"):
                await stranger.receive_frames()
            await stranger.aclose()
            assert accepted == []  # never handed to the application
            await assert_serves(listener)


async def test_an_oversized_frame_closes_that_connection_only() -> None:
    with anyio.fail_after(10):
        async with serving(QUICTransport(max_frame_size=64 * 1024)) as (listener, _):
            bystander = await QUICTransport().connect(listener.address)
            big = await QUICTransport(max_frame_size=1024 * 1024).connect(listener.address)
            await big.send_frames([b"x" * (200 * 1024)])
            with pytest.raises(ConnectionClosedError, match="over the maximum frame size"):
                await big.receive_frames()
            await big.aclose()
            await round_trip(bystander, [b"fine"])
            await bystander.aclose()


async def test_frames_near_a_large_limit_never_starve_flow_control() -> None:
    limit = 4 * 1024 * 1024
    frames = [b"a" * 500_000, b"b" * limit, b"c" * 3_000_000, b"d" * limit, b"e"]
    with anyio.fail_after(20):
        async with serving(QUICTransport(max_frame_size=limit)) as (listener, _):
            conn = await QUICTransport(max_frame_size=limit).connect(listener.address)
            await round_trip(conn, frames)
            await conn.aclose()


async def test_a_bug_in_one_connection_costs_that_connection_not_the_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(10):
        async with serving(QUICTransport()) as (listener, accepted):
            good = await QUICTransport().connect(listener.address)
            await round_trip(good, [b"one"])
            doomed = await QUICTransport().connect(listener.address)
            await round_trip(doomed, [b"two"])
            victim = accepted[-1]
            assert isinstance(victim, QUICConnection)

            def broken(now: float) -> None:
                raise RuntimeError("a bug")

            victim.handle_events = broken  # type: ignore[method-assign]
            await doomed.send_frames([b"trigger"])
            with pytest.raises(ConnectionClosedError, match="internal error"):
                while True:
                    await doomed.receive_frames()
            await round_trip(good, [b"still fine"])
            await assert_serves(listener)
            logged = "QUIC connection to .* failed while (handling its events|running its timers)"
            assert re.search(logged, caplog.text)
            await good.aclose()
            await doomed.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_close_under_loss_delivers_everything_or_says_it_did_not(seed: int) -> None:
    rng = random.Random(seed)
    frames = [bytes([i]) * 20_000 for i in range(20)]
    with anyio.fail_after(30):
        listener = await QUICTransport().listen(LOCAL)
        got: list[bytes] = []
        ended: list[BaseException] = []
        finished = anyio.Event()

        async def collect(conn: Connection) -> None:
            try:
                while True:
                    got.extend(await conn.receive_frames())
            except ConnectionClosedError as exc:
                ended.append(exc)
            finally:
                await conn.aclose()
                finished.set()

        endpoint = listener.endpoint
        deliver = endpoint._datagram

        def lossy(data: bytes, addr: Any) -> None:
            if rng.random() >= 0.1:
                deliver(data, addr)

        endpoint._datagram = lossy  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, collect)
            conn = await QUICTransport().connect(listener.address)
            await conn.send_frames(frames)
            await conn.aclose()  # at once: what is unacknowledged is delivered while lingering
            await finished.wait()
            if got != frames:
                assert got == frames[: len(got)], "frames were changed or reordered"
                assert "undelivered" in str(ended[0]), (
                    f"lost {len(frames) - len(got)} frames silently: {ended}"
                )
            await listener.aclose()
            tg.cancel_scope.cancel()


# ----------------------------------------------------------------------------- failures


async def test_connecting_where_nothing_listens_is_refused_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with anyio.fail_after(3):  # well under the 5 s handshake timeout: the ICMP answer counts
        with pytest.raises(ConnectError) as caught:
            await QUICTransport().connect(Address("127.0.0.1", port))
    assert caught.value.refused


async def test_a_peer_that_vanishes_is_noticed_within_the_idle_timeout() -> None:
    transport = QUICTransport(idle_timeout=1.0)
    with anyio.fail_after(10):
        async with serving(transport) as (listener, accepted):
            conn = await QUICTransport(idle_timeout=1.0).connect(listener.address)
            await round_trip(conn, [b"hello"])
            # the server's host disappears: nothing it receives is read, nothing is sent, no goodbye
            endpoint = listener.endpoint
            endpoint._datagram = lambda data, addr: None  # type: ignore[method-assign]
            endpoint.transmit = lambda conn: None  # type: ignore[method-assign]
            started = anyio.current_time()
            with pytest.raises(ConnectionClosedError, match="timed out"):
                while True:
                    await conn.receive_frames()
            assert anyio.current_time() - started < 4.0
            await conn.aclose()
            (silent,) = accepted  # the silent side's own connection times out as well
            assert isinstance(silent, QUICConnection)
            while silent.error is None:
                await anyio.sleep(0.05)
            assert "timed out" in str(silent.error)


async def test_a_receiver_that_stops_reading_bounds_memory_on_both_sides() -> None:
    with anyio.fail_after(20):
        listener = await QUICTransport().listen(LOCAL)
        accepted: list[QUICConnection] = []

        async def hold(conn: Any) -> None:
            accepted.append(conn)  # never reads
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            sender = await QUICTransport().connect(listener.address)
            sent = 0
            chunk = [b"m" * 50_000] * 4
            with anyio.move_on_after(3):
                while sent < 200_000_000:
                    await sender.send_frames(chunk)
                    sent += 200_000
            assert sent < 200_000_000, "the sender was never made to wait"
            (receiver,) = accepted
            buffered = data_received(receiver.quic)
            assert buffered <= receiver.inbox.window, f"receiver holds {buffered} bytes unread"
            assert sender.unacknowledged() <= HIGH_WATER + 200_000 + 4 * 4
            # once the receiver reads, everything arrives and the sender moves again; each
            # read hands out at most READ_SIZE bytes, as a TCP read would
            got = 0
            with anyio.fail_after(10):
                while got < sent:
                    batch = sum(len(f) for f in await receiver.receive_frames())
                    assert batch <= READ_SIZE
                    got += batch
            assert got == sent
            await sender.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()


# ----------------------------------------------------------------------------- datagrams


async def test_probe_datagrams_share_the_quic_socket() -> None:
    transport_a, transport_b = QUICTransport(), QUICTransport()
    with anyio.fail_after(10):
        async with serving(transport_a) as (la, _), serving(transport_b) as (lb, _):
            da = await transport_a.open_datagrams(la.address)
            db = await transport_b.open_datagrams(lb.address)
            da.send(b"ping", lb.address)
            assert await db.receive() == b"ping"
            db.send(b"\x00ack", la.address)
            assert await da.receive() == b"\x00ack"
            await assert_serves(la)  # and QUIC on the same port is undisturbed
            await da.aclose()
            with pytest.raises(ConnectionClosedError):
                await da.receive()
            await db.aclose()


async def test_open_datagrams_needs_the_listener() -> None:
    with pytest.raises(TransportError, match="no listener"):
        await QUICTransport().open_datagrams(Address("127.0.0.1", 9))
