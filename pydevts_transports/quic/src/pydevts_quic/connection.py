"""One pydevts connection over QUIC: length-prefixed frames on stream 0.

The client opens bidirectional stream 0 by writing :data:`PREAMBLE` (the
stream framing version) and then frames exactly as the TCP transport writes
them (4-byte big-endian length, then the bytes). The server hands the
connection to the application once the preamble has arrived.

aioquic is sans-IO and buffers without limit, so pydevts adds the two
bounds a transport needs:

* **Receiver**: connection credit is granted as the application *reads*
  frames (see :mod:`pydevts_quic.inbox`): a receiver that stops reading
  stops its sender after one window.
* **Sender**: :meth:`QUICConnection.send_frames` waits while more than
  :data:`HIGH_WATER` bytes are written but not yet acknowledged.

All calls into the ``QuicConnection`` happen on the event loop thread, each
in one synchronous stretch, so tasks never see it half-updated. The
:class:`~pydevts_quic.endpoint.Endpoint` owning the UDP socket feeds it
datagrams and runs its timers; a connection knows it only as a
:class:`Driver`, so this module does not import the endpoint's. How a
connection ends is :mod:`pydevts_quic.closing`'s business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from pydevts.errors import ConnectError, ConnectionClosedError, PydevtsError, RemoteProtocolError
from pydevts.limits import DEFAULT_FRAME_TIMEOUT, StalledFrameError
from pydevts.protocols import Address
from pydevts.ratelog import RateLimitedLog
from pydevts.wire.framing import encode_frames

from ._aioquic import close_event, quiet_log, unacknowledged
from .closing import LINGER, check_linger, describe_termination, silence_limit
from .inbox import READ_SIZE, Inbox

__all__ = ["HIGH_WATER", "PREAMBLE", "READ_SIZE", "STREAM_ID", "Driver", "QUICConnection"]

#: First byte on stream 0: the stream framing version.
PREAMBLE = b"\x01"
#: Written-but-unacknowledged bytes past which ``send_frames`` waits.
HIGH_WATER = 1024 * 1024
#: Frames handed out in a row without waiting before yielding to other tasks anyway.
FAIR_READS = 16
STREAM_ID = 0


class Driver(Protocol):
    """What a connection asks of the endpoint driving it (an :class:`~pydevts_quic.endpoint.Endpoint`)."""

    ratelog: RateLimitedLog  # what peers can make the endpoint say

    def transmit(self, conn: QUICConnection) -> None: ...  # send what aioquic has for ``conn`` now
    def rearm(self, conn: QUICConnection) -> None: ...  # ``conn``'s deadlines changed
    def forget(self, conn: QUICConnection) -> None: ...  # ``conn`` has ended
    def add_cid(self, conn: QUICConnection, cid: bytes) -> None: ...
    def remove_cid(self, cid: bytes) -> None: ...
    def accepted(self, conn: QUICConnection) -> None: ...  # a server connection's stream opened


def format_address(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr)


class QUICConnection:
    """A pydevts :class:`~pydevts.protocols.Connection` over one QUIC connection."""

    def __init__(
        self,
        quic: QuicConnection,
        endpoint: Driver,
        peer: Any,
        *,
        max_frame_size: int,
        idle_timeout: float,
        is_client: bool,
    ) -> None:
        self.quic = quic
        self.endpoint = endpoint
        self.peer = peer
        self.max_frame_size = max_frame_size
        self.idle_timeout = idle_timeout
        self.is_client = is_client
        self._remote = format_address(peer)
        self.inbox = Inbox(quic, max_frame_size)
        quiet_log(quic)
        self._quick_reads = 0
        self._reader: anyio.Event | None = None
        self._writers: anyio.Event | None = None
        self._rest: bytes | None = None
        self._opened = is_client  # the server waits for the preamble
        self._eof = False
        self._error: PydevtsError | None = None
        #: Set when the handshake finished (client) or the preamble arrived (server), or on failure.
        self.ready = anyio.Event()
        self.closed_locally = False
        self.terminated = False
        self.refused = False
        self.linger_until: float | None = None
        self.last_heard = anyio.current_time()
        self.cids: set[bytes] = set()
        # The endpoint's timer task sleeps in this scope until its deadline (``sleeping_until``),
        # which the endpoint moves as aioquic's timer moves, without waking the task.
        self.timer_scope: anyio.CancelScope | None = None
        self.sleeping_until = float("inf")
        #: The timer task's deadlines other than aioquic's (keep-alive ping, linger), as of its last look.
        self.own_deadline = float("inf")
        #: Calls of ``Endpoint.transmit`` so far, and whether received frames woke the reader.
        self.transmits = 0
        self.woke_reader = False
        #: A server connection still in its handshake must be accepted by then (see admission.py).
        self.half_open_until: float | None = None
        #: Seconds of waiting for the rest of a frame after which the peer is taken to have stalled.
        self.frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT
        self._waited = 0.0  # waiting for the rest of the current frame, so far

    # ------------------------------------------------------------ application side

    @property
    def remote_address(self) -> str:
        return self._remote

    @property
    def error(self) -> PydevtsError | None:
        """Why the connection ended (or failed to start), once it has."""
        return self._error

    async def receive_frames(self) -> list[bytes]:
        while True:
            if self.inbox.frames:
                frames, tell_peer = self.inbox.take()
                if tell_peer:
                    self.endpoint.transmit(self)
                self._quick_reads += 1
                if self._quick_reads >= FAIR_READS:
                    self._quick_reads = 0
                    await anyio.lowlevel.checkpoint()
                return frames
            self._quick_reads = 0
            if self.closed_locally:
                raise ConnectionClosedError(f"connection to {self._remote} closed")
            if isinstance(self._error, RemoteProtocolError):
                raise RemoteProtocolError(str(self._error))
            if self._error is not None:
                raise ConnectionClosedError(str(self._error))
            if self._eof:
                raise ConnectionClosedError(f"connection closed by {self._remote}", eof=True)
            self._reader = anyio.Event()
            if self.inbox.partial and self.frame_timeout is not None:
                await self._wait_inside_frame(self._reader, self.frame_timeout)
            else:
                await self._reader.wait()

    async def _wait_inside_frame(self, reader: anyio.Event, timeout: float) -> None:
        start = anyio.current_time()
        with anyio.move_on_after(timeout - self._waited) as waiting:
            await reader.wait()
        self._waited += anyio.current_time() - start
        if waiting.cancelled_caught:
            raise StalledFrameError(
                f"{self._remote} stalled inside a frame: {self.inbox.partial} bytes of it arrived, "
                f"the rest not within {timeout:g} s"
            )

    def _check_open(self) -> None:
        if self.closed_locally:
            raise ConnectionClosedError(f"connection to {self._remote} closed")
        if self._error is not None:
            raise ConnectionClosedError(str(self._error))

    def unacknowledged(self) -> int:
        return unacknowledged(self.quic, STREAM_ID)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        self._check_open()
        data = encode_frames(frames, self.max_frame_size)
        if self._rest is not None:
            rest, self._rest = self._rest, None
            await self._write(rest)
        await self._write(data)

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """Write now unless over the high-water mark; then keep the bytes for the next send."""
        if self._rest is not None:
            raise RuntimeError("send_frames_nowait called before the kept bytes were sent")
        self._check_open()
        data = encode_frames(frames, self.max_frame_size)
        if self.unacknowledged() >= HIGH_WATER:
            self._rest = data
            return False
        self.quic.send_stream_data(STREAM_ID, data)
        self.endpoint.transmit(self)
        return True

    async def _write(self, data: bytes) -> None:
        while self.unacknowledged() >= HIGH_WATER:
            if self._writers is None:
                self._writers = anyio.Event()
            await self._writers.wait()
            self._check_open()
        self.quic.send_stream_data(STREAM_ID, data)
        self.endpoint.transmit(self)

    async def aclose(self) -> None:
        """Close; what was written is still delivered (for up to :data:`LINGER` s), then it ends."""
        if self.closed_locally:
            return
        self.closed_locally = True
        self._rest = None
        self._wake()
        if not self.terminated and close_event(self.quic) is None:
            if self._opened and self.ready.is_set() and self._error is None:
                self.quic.send_stream_data(STREAM_ID, b"", end_stream=True)
                self.linger_until = anyio.current_time() + LINGER
                self.check_linger(anyio.current_time())
            else:
                self.quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="closed")
            self.endpoint.transmit(self)
            self.endpoint.rearm(self)
        await anyio.lowlevel.checkpoint()

    # ------------------------------------------------------------ endpoint side

    def _wake(self) -> None:
        if self._reader is not None:
            self._reader.set()
            self._reader = None
        if self._writers is not None:
            self._writers.set()
            self._writers = None

    def wake_writers_if_room(self) -> None:
        if self._writers is not None and self.unacknowledged() < HIGH_WATER:
            self._writers.set()
            self._writers = None

    def fail(self, error: PydevtsError) -> None:
        if self._error is None:
            self._error = error
        self.ready.set()
        self._wake()

    def refuse(self) -> None:
        """The peer's host said nothing listens on that UDP port (ICMP)."""
        self.refused = True
        if self.ready.is_set():
            self.fail(ConnectionClosedError(f"{self._remote} is gone: its host says nothing listens there"))
        else:
            self.fail(ConnectError(f"cannot connect to {self._remote}: connection refused", refused=True))
        self._terminated()

    def _terminated(self) -> None:
        self.terminated = True
        self._wake()
        self.endpoint.forget(self)

    def check_linger(self, now: float) -> None:
        """After a local close, end the connection once the peer has everything (or LINGER passed)."""
        if self.linger_until is not None:
            self.linger_until = check_linger(
                self.quic,
                STREAM_ID,
                now,
                until=self.linger_until,
                last_heard=self.last_heard,
                remote=self._remote,
                peer_ended=self._eof,
                ratelog=self.endpoint.ratelog,
            )

    def silence_limit(self) -> float:
        """See :func:`pydevts_quic.closing.silence_limit`."""
        return silence_limit(self.quic)

    def handle_events(self, now: float) -> None:
        """Act on everything aioquic has to say since the last call."""
        quic = self.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived):
                self._on_data(event)
            elif isinstance(event, events.HandshakeCompleted):
                if self.is_client:
                    self.ready.set()
            elif isinstance(event, events.ConnectionIdIssued):
                self.endpoint.add_cid(self, event.connection_id)
            elif isinstance(event, events.ConnectionIdRetired):
                self.endpoint.remove_cid(event.connection_id)
            elif isinstance(event, events.StreamReset):
                self.fail(
                    ConnectionClosedError(f"{self._remote} reset the stream (error {event.error_code})")
                )
            elif isinstance(event, events.ConnectionTerminated):
                self.fail(self._termination_error(event))
                self._terminated()
                return
        closing = close_event(quic)
        if closing is not None and self._error is None:
            # Closing (e.g. a TLS failure found here): say why now, not after the closing period.
            self.fail(self._termination_error(closing))
        self.check_linger(now)
        self.wake_writers_if_room()

    def _termination_error(self, event: events.ConnectionTerminated) -> PydevtsError:
        text = describe_termination(event, self._remote, self.idle_timeout)
        if not self.ready.is_set() and self.is_client:
            return ConnectError(text)
        return ConnectionClosedError(text)

    def _on_data(self, event: events.StreamDataReceived) -> None:
        if event.stream_id != STREAM_ID:
            self.protocol_error(f"unexpected QUIC stream {event.stream_id} (pydevts uses stream 0 only)")
            return
        data = event.data
        if not self._opened:
            if not data:
                if event.end_stream:
                    self.protocol_error("stream ended before the preamble")
                return
            if data[:1] != PREAMBLE:
                self.protocol_error(
                    f"not a pydevts QUIC stream (first byte {data[:1]!r}, expected {PREAMBLE!r})"
                )
                return
            data = data[1:]
            self.inbox.consumed += 1
            self._opened = True
            self.ready.set()
            self.endpoint.accepted(self)
        if self.closed_locally:
            return  # nobody will read it; the connection ends soon
        began = not self.inbox.partial
        try:
            frames = self.inbox.feed(data)
        except RemoteProtocolError as exc:
            self.protocol_error(str(exc))
            return
        if frames:
            self._waited = 0.0
            if self._reader is not None:
                self._reader.set()
                self._reader = None
                self.woke_reader = True
        elif began and self._reader is not None and self.inbox.partial:
            self._reader.set()  # a frame began: its reader now waits under the frame timeout
            self._reader = None
        if event.end_stream:
            self._eof = True
            partial = self.inbox.partial
            if partial:
                self.fail(
                    ConnectionClosedError(f"{self._remote} ended the stream inside a frame ({partial} bytes)")
                )
            self._wake()

    def protocol_error(self, message: str) -> None:
        """Refuse what the peer sent: close the connection saying why."""
        self.endpoint.ratelog.warning(
            "quic.protocol_error", "closing QUIC connection from %s: %s", self._remote, message
        )
        self.fail(RemoteProtocolError(f"{self._remote}: {message}"))
        if close_event(self.quic) is None:
            self.quic.close(error_code=QuicErrorCode.PROTOCOL_VIOLATION, reason_phrase=message[:200])
        self.endpoint.transmit(self)
