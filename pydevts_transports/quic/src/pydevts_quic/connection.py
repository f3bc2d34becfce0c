"""One pydevts connection over QUIC: length-prefixed frames on stream 0.

The client opens bidirectional stream 0 by writing :data:`PREAMBLE` (the
stream framing version) and then frames exactly as the TCP transport writes
them (4-byte big-endian length, then the bytes). The server hands the
connection to the application once the preamble has arrived.

aioquic is sans-IO and buffers without limit, so this module adds the two
bounds a transport needs:

* **Receiver**: connection flow-control credit (QUIC ``MAX_DATA``) is granted
  as the application *reads* frames, not as packets arrive (aioquic's own
  policy), so a receiver that stops reading stops its sender after one
  window: memory stays bounded on both sides.
* **Sender**: :meth:`QUICConnection.send_frames` waits while more than
  :data:`HIGH_WATER` bytes are written but not yet acknowledged.

All calls into the ``QuicConnection`` happen on the event loop thread, each
in one synchronous stretch, so tasks never see it half-updated. The
:class:`~pydevts_quic.endpoint.Endpoint` owning the UDP socket feeds it
datagrams and runs its timers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from aioquic.quic import events
from aioquic.quic.connection import Limit, QuicConnection, QuicConnectionAdapter
from aioquic.quic.packet import QuicErrorCode, QuicFrameType
from pydevts.errors import ConnectError, ConnectionClosedError, PydevtsError, RemoteProtocolError
from pydevts.framing import FrameDecoder, encode_frames
from pydevts.limits import DEFAULT_FRAME_TIMEOUT, StalledFrameError
from pydevts.protocols import Address

if TYPE_CHECKING:
    from .endpoint import Endpoint

__all__ = ["HIGH_WATER", "PREAMBLE", "QUICConnection"]

log = logging.getLogger("pydevts.quic")

#: First byte on stream 0: the stream framing version.
PREAMBLE = b"\x01"
#: Written-but-unacknowledged bytes past which ``send_frames`` waits.
HIGH_WATER = 1024 * 1024
#: How long a closed connection keeps trying to deliver what was written before it closed...
LINGER = 5.0
#: ... unless the peer has said nothing for this long, and for three probe timeouts
#: (see :meth:`QUICConnection.silence_limit`): it is gone, nobody will acknowledge.
LINGER_SILENCE = 1.0
#: Application error code of a close that leaves written bytes unacknowledged.
UNDELIVERED = 0x1
#: Frames handed out in a row without waiting before yielding to other tasks anyway.
FAIR_READS = 16
#: Bytes of frames one ``receive_frames`` returns at most (at least one frame), as TCP's read size:
#: what the application has taken but not handled stays as bounded as over TCP.
READ_SIZE = 256 * 1024
STREAM_ID = 0


class _ConnectionLog(QuicConnectionAdapter):
    """aioquic's per-connection logger (``quic``) with its INFO messages moved to DEBUG.

    aioquic reports every connection's life at INFO (protocol version and ALPN
    negotiated, close sent or received): a few lines per ``pydevts members``
    call, which read like trouble and tell an operator nothing. What a node
    must know about a connection, pydevts says itself; aioquic's warnings and
    errors (a peer breaking the protocol, say) stay as they are.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


def quiet_aioquic_log(quic: QuicConnection) -> None:
    """Install :class:`_ConnectionLog` on ``quic`` (keeping aioquic's ``[connection id]`` prefix)."""
    current = getattr(quic, "_logger", None)
    if isinstance(current, QuicConnectionAdapter) and not isinstance(current, _ConnectionLog):
        quic._logger = _ConnectionLog(current.logger, current.extra)


def format_address(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr)


class _Credit(Limit):
    """``MAX_DATA`` granted as the application reads.

    aioquic doubles the limit whenever half of it has arrived; assignments to
    ``value`` are ignored here, and :meth:`grant` moves it instead.
    """

    def __init__(self, window: int) -> None:
        self._granted = window
        super().__init__(frame_type=QuicFrameType.MAX_DATA, name="max_data", value=window)

    @property
    def value(self) -> int:
        return self._granted

    @value.setter
    def value(self, _ignored: int) -> None:
        pass

    def grant(self, consumed: int, window: int, needed: int) -> bool:
        """Allow ``window`` bytes past ``consumed``; True when worth telling the peer now.

        Always when less than ``needed`` (a whole largest frame) is left past ``consumed``.
        """
        target = consumed + window
        if target - self._granted < window // 4 and self._granted - consumed >= needed:
            return False
        self._granted = target
        return True


def describe_termination(event: events.ConnectionTerminated, remote: str, idle_timeout: float) -> str:
    code, reason = event.error_code, event.reason_phrase
    if reason == "Idle timeout":
        return f"connection to {remote} timed out: no packet for {idle_timeout:g} s (peer gone?)"
    if 0x100 <= code <= 0x1FF:
        return f"TLS handshake with {remote} failed: {reason or 'alert'} (TLS alert {code - 0x100})"
    if code == QuicErrorCode.NO_ERROR:
        return f"connection closed by {remote}" + (f" ({reason})" if reason and reason != "closed" else "")
    return f"connection closed by {remote}: {reason or 'error'} (QUIC error 0x{code:x})"


class QUICConnection:
    """A pydevts :class:`~pydevts.protocols.Connection` over one QUIC connection."""

    def __init__(
        self,
        quic: QuicConnection,
        endpoint: Endpoint,
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
        # A frame completes only once all of it is in: with credit that lags by at most a quarter
        # of the window, three quarters of two largest frames always leave room for one.
        self._window = max(2 * 1024 * 1024, 2 * (max_frame_size + 4))
        self._credit = _Credit(self._window)
        quic._local_max_data = self._credit
        quiet_aioquic_log(quic)
        self._consumed = 0
        self._decoder = FrameDecoder(max_frame_size)
        self._inbox: list[bytes] = []
        self._inbox_bytes = 0
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
            if self._inbox:
                frames = self._take()
                if self._credit.grant(self._consumed, self._window, self.max_frame_size + 4):
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
            if self._decoder.buffered and self.frame_timeout is not None:
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
                f"{self._remote} stalled inside a frame: {self._decoder.buffered} bytes of it arrived, "
                f"the rest not within {timeout:g} s"
            )

    def _take(self) -> list[bytes]:
        """Up to READ_SIZE bytes of frames from the inbox (at least one frame); credit them."""
        inbox = self._inbox
        if self._inbox_bytes <= READ_SIZE:
            self._inbox = []
            taken, self._inbox_bytes = self._inbox_bytes, 0
            self._consumed += taken
            return inbox
        size = count = 0
        for frame in inbox:
            if count and size + len(frame) + 4 > READ_SIZE:
                break
            size += len(frame) + 4
            count += 1
        frames, self._inbox = inbox[:count], inbox[count:]
        self._inbox_bytes -= size
        self._consumed += size
        return frames

    def _check_open(self) -> None:
        if self.closed_locally:
            raise ConnectionClosedError(f"connection to {self._remote} closed")
        if self._error is not None:
            raise ConnectionClosedError(str(self._error))

    def unacknowledged(self) -> int:
        stream = self.quic._streams.get(STREAM_ID)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

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
        if not self.terminated and self.quic._close_event is None:
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
        if self.linger_until is None:
            return
        if self.quic._close_event is not None:  # closing already: the linger is over
            self.linger_until = None
            return
        stream = self.quic._streams.get(STREAM_ID)
        if stream is None or stream.sender.is_finished:
            self.linger_until = None
            self.quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="closed")
        elif now >= self.linger_until or now - self.last_heard >= self.silence_limit():
            self.linger_until = None
            left = self.unacknowledged()
            if not left:
                # Every byte arrived; only the end of our stream is unacknowledged (the peer
                # typically closed first and its process has exited). Nothing was lost.
                log.debug("closing QUIC connection to %s: all delivered but the end of stream", self._remote)
                self.quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="closed")
                return
            silent = now - self.last_heard >= self.silence_limit()
            why = "the peer fell silent" if silent else f"not acknowledged within {LINGER:g} s"
            if self._eof:
                # The peer ended its stream first, so nothing more was going to be read there
                # (a CLI client that got its reply and exited, say): not a loss anyone feels.
                log.debug(
                    "closing QUIC connection to %s (closed by the peer) with %d bytes unacknowledged: %s",
                    self._remote,
                    left,
                    why,
                )
            else:
                self.endpoint.ratelog.info(
                    "quic.undelivered",
                    "closing QUIC connection to %s with %d written bytes unacknowledged (%s): "
                    "the peer may not have received them",
                    self._remote,
                    left,
                    why,
                )
            # An application close, not NO_ERROR: the peer learns that it did not get everything.
            self.quic.close(error_code=UNDELIVERED, reason_phrase=f"closed with {left} bytes undelivered")

    def silence_limit(self) -> float:
        """How long a lingering connection waits without a packet before taking its peer for gone.

        At least LINGER_SILENCE (it pings every third of that) and three probe
        timeouts, backoff included: on a lossy path retransmissions back off,
        and a live peer may then be silent for a while.
        """
        loss = self.quic._loss
        backoff: int = 2**loss._pto_count
        return max(LINGER_SILENCE, 3 * loss.get_probe_timeout() * backoff)

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
        close_event = quic._close_event
        if close_event is not None and self._error is None:
            # Closing (e.g. a TLS failure found here): say why now, not after the closing period.
            self.fail(self._termination_error(close_event))
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
            self._consumed += 1
            self._opened = True
            self.ready.set()
            self.endpoint.accepted(self)
        if self.closed_locally:
            return  # nobody will read it; the connection ends soon
        began = not self._decoder.buffered
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            self.protocol_error(str(exc))
            return
        if frames:
            self._waited = 0.0
            self._inbox.extend(frames)
            self._inbox_bytes += sum(map(len, frames)) + 4 * len(frames)
            if self._reader is not None:
                self._reader.set()
                self._reader = None
                self.woke_reader = True
        elif began and self._reader is not None and self._decoder.buffered:
            self._reader.set()  # a frame began: its reader now waits under the frame timeout
            self._reader = None
        if event.end_stream:
            self._eof = True
            partial = self._decoder.buffered
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
        if self.quic._close_event is None:
            self.quic.close(error_code=QuicErrorCode.PROTOCOL_VIOLATION, reason_phrase=message[:200])
        self.endpoint.transmit(self)
