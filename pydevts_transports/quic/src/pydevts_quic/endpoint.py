"""A UDP socket and the QUIC connections on it, driven from anyio.

An :class:`Endpoint` plays the part the kernel plays for TCP: it reads
datagrams, feeds them to the right ``QuicConnection`` (by connection ID),
sends what aioquic wants sent, runs each connection's timers (loss recovery,
acknowledgement delay, idle timeout, keep-alive pings: see
:mod:`pydevts_quic.timers`) and lets a closed
connection finish delivering what was written to it. It therefore runs as a
detached task (:func:`~pydevts_quic._spawn.spawn_detached`) that ends on its
own once it has nothing left to do, rather than inside the task that opened
it: a node cancelling its task group must not cut off a connection that is
still flushing its last frames.

One socket also carries the node's failure-detector datagrams (see
:mod:`pydevts_quic.udp`).

Which Initial packets may open a connection, and for how long a handshake
may stay half-open, is :mod:`pydevts_quic.admission`'s business.
"""

from __future__ import annotations

import logging
import socket
from collections import deque

import anyio
import anyio.lowlevel
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicHeader, QuicPacketType, encode_quic_version_negotiation
from anyio.abc import TaskGroup
from pydevts.errors import ConnectionClosedError
from pydevts.protocols import Address
from pydevts.ratelog import RateLimitedLog

from ._aioquic import discard_state, pull_header
from .admission import Admission
from .connection import QUICConnection
from .timers import follow_timer, rearm, run_timers
from .udp import DATAGRAM_MARK, Datagrams, tune_socket

# DATAGRAM_MARK, Datagrams and tune_socket live in udp.py; still importable from here (bench/ does).
__all__ = ["DATAGRAM_MARK", "Datagrams", "Endpoint", "tune_socket"]

log = logging.getLogger("pydevts.quic")

READ_SIZE = 65_536
#: Datagrams read in a row before answering them and letting other tasks run.
BATCH = 64


class Endpoint:
    """One UDP socket; for a listener, many server connections; for a client, one."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        server: QuicConfiguration | None = None,
        connection_options: dict[str, float | int] | None = None,
        keepalive: float = 5.0,
        admission: Admission | None = None,
    ) -> None:
        self.sock = sock
        self.admission = admission if admission is not None else Admission()
        self.ratelog = RateLimitedLog(log)  # what peers can make this endpoint say
        host, port = sock.getsockname()[:2]
        self.address = Address(str(host), int(port))
        self._server = server
        self._options = connection_options or {}
        self._connected = server is None  # a client socket is connect()ed: ICMP errors reach us
        self.keepalive = keepalive
        self.accepting = server is not None
        self._by_cid: dict[bytes, QUICConnection] = {}
        self.connections: set[QUICConnection] = set()
        self._client: QUICConnection | None = None  # a client endpoint's one connection
        self._touched: dict[QUICConnection, None] = {}
        self._accepted: deque[QUICConnection] = deque()
        self._accept_wake: anyio.Event | None = None
        self._tg: TaskGroup | None = None
        self.closing = server is None  # a client endpoint ends with its connection
        self.datagrams: Datagrams | None = None
        self.dropped = 0
        self.done = anyio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for conn in self.connections:
                    tg.start_soon(run_timers, self, conn)
                await self._receive_loop()
                tg.cancel_scope.cancel()
        except Exception:  # a detached task has nobody to raise to
            log.exception("QUIC endpoint %s failed", self.address)
        finally:
            self._tg = None
            self._close_socket()
            for conn in list(self.connections):
                conn.fail(ConnectionClosedError(f"QUIC endpoint {self.address} closed"))
                conn.terminated = True
            self.connections.clear()
            if self._accept_wake is not None:
                self._accept_wake.set()
            self.done.set()

    def stop_accepting(self) -> None:
        """Listener closed: no new connections; the socket closes once the last one has ended."""
        self.accepting = False
        self.closing = True
        for conn in list(self._accepted):
            conn.quic.close(reason_phrase="listener closed")
            self.transmit(conn)
        self._accepted.clear()
        if self._accept_wake is not None:
            self._accept_wake.set()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.closing and not self.connections:
            self._close_socket()

    def _close_socket(self) -> None:
        if self.sock.fileno() >= 0:
            anyio.notify_closing(self.sock)
            self.sock.close()
        if self.datagrams is not None:
            self.datagrams.closed()

    # ------------------------------------------------------------------ connections

    def register(self, conn: QUICConnection, cids: list[bytes]) -> None:
        self.connections.add(conn)
        if self._server is None:
            self._client = conn
        for cid in cids:
            self.add_cid(conn, cid)
        if self._tg is not None:
            self._tg.start_soon(run_timers, self, conn)

    def add_cid(self, conn: QUICConnection, cid: bytes) -> None:
        self._by_cid[cid] = conn
        conn.cids.add(cid)

    def remove_cid(self, cid: bytes) -> None:
        conn = self._by_cid.pop(cid, None)
        if conn is not None:
            conn.cids.discard(cid)

    def forget(self, conn: QUICConnection) -> None:
        self.admission.done(conn)
        for cid in conn.cids:
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        conn.cids.clear()
        self.connections.discard(conn)
        if self._client is conn:
            self._client = None
        self.rearm(conn)
        self._maybe_finish()

    def accepted(self, conn: QUICConnection) -> None:
        self.admission.done(conn)
        conn.half_open_until = None
        if not self.accepting:
            conn.quic.close(reason_phrase="listener closed")
            return
        self._accepted.append(conn)
        if self._accept_wake is not None:
            self._accept_wake.set()
            self._accept_wake = None

    async def next_accepted(self) -> QUICConnection | None:
        """The next connection whose stream opened; None once the listener is closed."""
        while True:
            if self._accepted:
                return self._accepted.popleft()
            if not self.accepting or self.done.is_set():
                return None
            self._accept_wake = anyio.Event()
            await self._accept_wake.wait()

    # ------------------------------------------------------------------ sending

    def transmit(self, conn: QUICConnection) -> None:
        """Send every datagram aioquic has for ``conn`` now (a full socket buffer drops; QUIC resends)."""
        sock = self.sock
        conn.transmits += 1
        try:
            datagrams = conn.quic.datagrams_to_send(now=anyio.current_time())
        except Exception:
            self.broken(conn, "sending")
            return
        for data, addr in datagrams:
            try:
                if self._connected:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except BlockingIOError:
                pass
            except ConnectionRefusedError:
                if self._connected:
                    conn.refuse()
                    return
            except OSError:
                if sock.fileno() < 0:
                    return
        follow_timer(conn)

    def rearm(self, conn: QUICConnection) -> None:
        """Make ``conn``'s timer task look at all its deadlines again, now."""
        rearm(conn)

    # ------------------------------------------------------------------ receiving

    async def _receive_loop(self) -> None:
        sock = self.sock
        batch = 0
        while True:
            try:
                data, addr = sock.recvfrom(READ_SIZE)
            except BlockingIOError:
                await self._flush()
                batch = 0
                if sock.fileno() < 0:  # closed while flushing (its last connection ended)
                    return
                try:
                    await anyio.wait_readable(sock)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    return
                continue
            except ConnectionRefusedError:
                for conn in list(self.connections):
                    conn.refuse()
                continue
            except OSError:
                if sock.fileno() < 0:
                    return
                continue
            self._datagram(data, addr)
            batch += 1
            if batch >= BATCH:
                batch = 0
                if not await self._flush():
                    await anyio.lowlevel.checkpoint()

    async def _flush(self) -> bool:
        """Act on the datagrams read; True if it let other tasks run meanwhile.

        A connection whose reader was woken (frames arrived for it) is
        transmitted for only after the reader had its turn: a reply sent
        right away then leaves first, carrying whatever aioquic had to send
        (a due ACK, say), and the extra pass through aioquic's packet builder
        (which usually finds nothing to send) is skipped, as the reply's
        transmit did its work. Anything else is sent at once.
        """
        if not self._touched:
            return False
        now = anyio.current_time()
        touched, self._touched = self._touched, {}
        deferred: list[tuple[QUICConnection, int]] = []
        for conn in [c for c in touched if not c.terminated]:  # (a half-open one may be dropped since)
            conn.woke_reader = False
            try:
                conn.handle_events(now)
            except Exception:
                self.broken(conn, "handling its events")
                continue
            if conn.terminated:
                continue
            if conn.woke_reader:
                deferred.append((conn, conn.transmits))
            else:
                self.transmit(conn)
        if not deferred:
            return False
        await anyio.lowlevel.checkpoint()
        for conn, transmits in deferred:
            if not conn.terminated and conn.transmits == transmits:
                self.transmit(conn)
        return True

    def broken(self, conn: QUICConnection, doing: str) -> None:
        """A bug in one connection's handling costs that connection, never the endpoint."""
        if conn.terminated:
            return  # (closing it below may fail the same way)
        conn.terminated = True
        log.exception("QUIC connection to %s failed while %s", conn.remote_address, doing)
        conn.fail(ConnectionClosedError(f"connection to {conn.remote_address} failed: internal error"))
        try:
            conn.quic.close(reason_phrase="internal error")
            self.transmit(conn)
        except Exception:
            log.debug("closing a failed QUIC connection failed too", exc_info=True)
        self.forget(conn)

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data:
            return
        if data[0] & 0xC0 == 0:  # QUIC's fixed bit is clear: one of ours, or junk
            if data[0] == DATAGRAM_MARK and self.datagrams is not None:
                self.datagrams.put(data[1:])
            else:
                self.dropped += 1
            return
        try:
            header = pull_header(data, host_cid_length=8)
        except ValueError:
            self.dropped += 1
            return
        conn = self._by_cid.get(header.destination_cid) if self._server is not None else self._client
        if conn is None:
            conn = self._new_connection(data, addr, header)
            if conn is None:
                return
        now = conn.last_heard = anyio.current_time()
        try:
            conn.quic.receive_datagram(data, addr, now=now)
        except Exception:
            self.broken(conn, "reading a datagram")
            return
        self._touched[conn] = None

    def _new_connection(
        self, data: bytes, addr: tuple[str, int], header: QuicHeader
    ) -> QUICConnection | None:
        config = self._server
        if config is None or not self.accepting:
            self.dropped += 1
            return None
        version, packet_type = header.version, header.packet_type
        if packet_type != QuicPacketType.VERSION_NEGOTIATION and version is not None:
            if version not in config.supported_versions:
                self.send_to(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=config.supported_versions,
                    ),
                    addr,
                )
                return None
        if packet_type != QuicPacketType.INITIAL or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            self.dropped += 1
            return None
        verdict = self.admission.initial(header, addr, anyio.current_time())
        if not isinstance(verdict, tuple):
            if verdict is None:
                self.dropped += 1
            else:
                self.send_to(verdict, addr)  # a Retry (address validation under load), or a close
            return None
        original_cid, retry_cid = verdict
        quic = QuicConnection(
            configuration=config,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
        )
        conn = QUICConnection(
            quic,
            self,
            addr,
            max_frame_size=int(self._options["max_frame_size"]),
            idle_timeout=float(self._options["idle_timeout"]),
            is_client=False,
        )
        conn.half_open_until = anyio.current_time() + self.admission.handshake_timeout
        victim = self.admission.opened(conn, addr)
        if victim is not None:
            self.drop_half_open(victim, "dropped to make room for a newer one")
        self.register(conn, [header.destination_cid, quic.host_cid])
        return conn

    def drop_half_open(self, conn: QUICConnection, why: str) -> None:
        """Forget a connection still in its handshake (no CLOSE: its sender may be spoofed).

        Its aioquic state is emptied at once: it is full of reference cycles
        (bound methods), so under a flood it would otherwise pile up until the
        cyclic garbage collector's next full pass.
        """
        self.ratelog.warning(
            "quic.half_open",
            "QUIC handshake from %s %s (%d in progress, limit %d)",
            *(conn.remote_address, why, len(self.admission.half_open), self.admission.half_open.max_total),
        )
        conn.terminated = True
        conn.fail(ConnectionClosedError(f"QUIC handshake from {conn.remote_address} {why}"))
        self.forget(conn)
        discard_state(conn.quic)

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass
