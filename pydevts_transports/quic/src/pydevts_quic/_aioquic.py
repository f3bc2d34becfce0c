"""Every use pydevts-quic makes of aioquic's internals, in one place.

aioquic has no public API for what a transport with bounded memory needs
(connection credit granted as the application reads, bytes written but not
acknowledged, whether a close has begun, the probe timeout's backoff), so
pydevts reaches into its private state. Each such touch is one function or
class here, whose docstring says what it reads or writes and why; the rest
of :mod:`pydevts_quic` calls these and never names a private attribute or
module of aioquic.

:func:`check` (called when a :class:`~pydevts_quic.QUICTransport` is created)
verifies that every internal named here still exists on the installed
aioquic, so that an aioquic release that drops one fails there, loudly,
naming it, rather than deep inside a connection. Every touch was checked
against the aioquic version :data:`CHECKED_AGAINST`; the behaviour pydevts
relies on (aioquic honouring the credit, acknowledgements emptying the send
buffer, ...) is exercised against real aioquic connections by the package's
``tests/test_aioquic_compat.py``.
"""

from __future__ import annotations

import logging
import types
from typing import TYPE_CHECKING, Any

import aioquic
import aioquic.asyncio.server as _server_module
import aioquic.buffer as _buffer_module
import aioquic.quic.connection as _connection_module
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet import QuicFrameType, QuicHeader, pull_quic_header
from pydevts.errors import ConfigurationError

if TYPE_CHECKING:
    from aioquic._buffer import Buffer
    from aioquic.quic.connection import Limit, QuicConnectionAdapter
else:  # looked up, not imported: if aioquic drops one, check() names it instead of an ImportError
    Buffer = getattr(_buffer_module, "Buffer", None)
    Limit = getattr(_connection_module, "Limit", object)
    QuicConnectionAdapter = getattr(_connection_module, "QuicConnectionAdapter", logging.LoggerAdapter)

__all__ = [
    "CHECKED_AGAINST",
    "AioquicIncompatibleError",
    "ConnectionLog",
    "ReadCredit",
    "check",
    "close_event",
    "data_received",
    "discard_state",
    "install_read_credit",
    "installed_version",
    "invalid_token_close",
    "probe_timeout",
    "pto_count",
    "pull_header",
    "quiet_log",
    "stream_delivered",
    "unacknowledged",
    "verify",
]

#: The aioquic release every touch below was read against (``aioquic.__version__``).
CHECKED_AGAINST = "1.7.2"


class AioquicIncompatibleError(ConfigurationError):
    """The installed aioquic lacks an internal pydevts-quic relies on."""


# ----------------------------------------------------------------------------- flow control


class ReadCredit(Limit):
    """Connection credit (QUIC ``MAX_DATA``) granted as the application reads.

    Replaces ``QuicConnection._local_max_data`` (an ``aioquic.quic.connection.Limit``),
    which aioquic reads as the ``initial_max_data`` transport parameter and
    whenever it builds a packet (``value`` against ``sent``: a ``MAX_DATA`` frame
    when they differ), and against which it counts received stream bytes
    (``used``). aioquic's own policy doubles ``value`` whenever half of it has
    arrived, so a receiver that never reads would buffer without limit:
    assignments to ``value`` are ignored here, and :meth:`grant` moves it
    instead. Checked against aioquic 1.7.2.
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


def install_read_credit(quic: QuicConnection, window: int) -> ReadCredit:
    """Make ``quic`` grant ``MAX_DATA`` as pydevts says (see :class:`ReadCredit`), not on its own.

    Writes ``QuicConnection._local_max_data``; must run before the handshake,
    whose transport parameters carry the first window. Checked against aioquic 1.7.2.
    """
    credit = ReadCredit(window)
    quic._local_max_data = credit
    return credit


def data_received(quic: QuicConnection) -> int:
    """Stream bytes received on ``quic`` so far, as counted against ``MAX_DATA``.

    Reads ``QuicConnection._local_max_data.used``: what the peer has sent,
    against what pydevts granted (the tests check that a receiver that does
    not read holds at most a window). Checked against aioquic 1.7.2.
    """
    return quic._local_max_data.used


# ----------------------------------------------------------------------------- sending


def unacknowledged(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to stream ``stream_id`` that the peer has not acknowledged yet (0: no such stream).

    Reads ``QuicConnection._streams`` and the stream sender's ``_buffer_start``
    (first unacknowledged offset) and ``_buffer_stop`` (end of what was
    written): aioquic keeps every written byte until it is acknowledged and
    says nothing of how many there are, and pydevts' writers wait above a
    high-water mark, as over TCP. Checked against aioquic 1.7.2.
    """
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    sender = stream.sender
    return sender._buffer_stop - sender._buffer_start


def stream_delivered(quic: QuicConnection, stream_id: int) -> bool:
    """True when stream ``stream_id`` has nothing left to deliver (ended and acknowledged, or absent).

    Reads ``QuicConnection._streams`` (then the public ``QuicStreamSender.is_finished``):
    a closed connection lingers until the peer has everything. Checked against aioquic 1.7.2.
    """
    stream = quic._streams.get(stream_id)
    return stream is None or stream.sender.is_finished


# ----------------------------------------------------------------------------- closing


def close_event(quic: QuicConnection) -> ConnectionTerminated | None:
    """Why ``quic`` is closing, once a close has begun (by either side, or on an error); else None.

    Reads ``QuicConnection._close_event``, which aioquic sets at once but
    reports (as ``ConnectionTerminated``) only after the closing period:
    pydevts tells its application why a connection failed as soon as it
    does, and does not close a connection twice. Checked against aioquic 1.7.2.
    """
    return quic._close_event


def pto_count(quic: QuicConnection) -> int:
    """Probe timeouts in a row without an acknowledgement (the PTO backoff exponent).

    Reads ``QuicConnection._loss._pto_count``: a lingering connection takes
    its peer for gone after three probe timeouts of silence, backoff
    included, so that a live peer on a lossy path is not given up on.
    Checked against aioquic 1.7.2.
    """
    return quic._loss._pto_count


def probe_timeout(quic: QuicConnection) -> float:
    """The probe timeout (PTO) period of ``quic``, without backoff, in seconds.

    Calls ``QuicConnection._loss.get_probe_timeout()`` (public method of the
    private loss recovery): see :func:`pto_count`. Checked against aioquic 1.7.2.
    """
    return quic._loss.get_probe_timeout()


def discard_state(quic: QuicConnection) -> None:
    """Empty ``quic`` at once; it must not be used afterwards.

    Clears the instance ``__dict__`` of ``QuicConnection`` (aioquic keeps all
    its state there): a connection is full of reference cycles (bound
    methods), so under a flood of dropped handshakes it would otherwise pile
    up until the cyclic garbage collector's next full pass. Checked against aioquic 1.7.2.
    """
    vars(quic).clear()


# ----------------------------------------------------------------------------- packets and logs


def pull_header(data: bytes, host_cid_length: int) -> QuicHeader:
    """The QUIC header of a received datagram; ValueError if it is not one.

    Uses ``aioquic.buffer.Buffer`` (a re-export of the compiled private module
    ``aioquic._buffer``, not exported for type checkers) to call the public
    ``pull_quic_header``: an endpoint routes datagrams by connection ID.
    Checked against aioquic 1.7.2.
    """
    return pull_quic_header(Buffer(data=data), host_cid_length=host_cid_length)


def invalid_token_close(version: int, source_cid: bytes, destination_cid: bytes) -> bytes:
    """The Initial packet closing a connection with ``INVALID_TOKEN``, as aioquic's own server sends it.

    Calls ``aioquic.asyncio.server._encode_invalid_token_close``: a client
    whose Retry token does not validate then fails at once instead of timing
    out. Checked against aioquic 1.7.2.
    """
    return bytes(
        _server_module._encode_invalid_token_close(
            version=version, source_cid=source_cid, destination_cid=destination_cid
        )
    )


class ConnectionLog(QuicConnectionAdapter):
    """aioquic's per-connection logger (``quic``) with its INFO messages moved to DEBUG.

    aioquic reports every connection's life at INFO (protocol version and ALPN
    negotiated, close sent or received): a few lines per ``pydevts members``
    call, which read like trouble and tell an operator nothing. What a node
    must know about a connection, pydevts says itself; aioquic's warnings and
    errors (a peer breaking the protocol, say) stay as they are. A subclass of
    ``aioquic.quic.connection.QuicConnectionAdapter`` (not in aioquic's
    documented API), which adds the ``[connection id]`` prefix. Checked against aioquic 1.7.2.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


def quiet_log(quic: QuicConnection) -> None:
    """Install :class:`ConnectionLog` on ``quic``, keeping aioquic's ``[connection id]`` prefix.

    Reads and writes ``QuicConnection._logger`` (an
    ``aioquic.quic.connection.QuicConnectionAdapter``). Checked against aioquic 1.7.2.
    """
    current = quic._logger
    if isinstance(current, QuicConnectionAdapter) and not isinstance(current, ConnectionLog):
        quic._logger = ConnectionLog(current.logger, current.extra)


# ----------------------------------------------------------------------------- the check


def installed_version() -> str:
    """``aioquic.__version__``."""
    return str(getattr(aioquic, "__version__", "(unknown version)"))


_Kind = type | tuple[type, ...]


def _lacks(root: object, path: str, kind: _Kind) -> bool:
    """True if ``root.<path>`` (dotted) is missing, or not a ``kind``."""
    obj = root
    for name in path.split("."):
        if not hasattr(obj, name):
            return True
        obj = getattr(obj, name)
    return not isinstance(obj, kind)


def _first_missing() -> str | None:
    """The first internal used above that the installed aioquic lacks, or None."""
    names: tuple[tuple[object, str, str, _Kind], ...] = (
        (_connection_module, "aioquic.quic.connection", "Limit", type),
        (_connection_module, "aioquic.quic.connection", "QuicConnectionAdapter", type),
        (_buffer_module, "aioquic.buffer", "Buffer", type),
        (_server_module, "aioquic.asyncio.server", "_encode_invalid_token_close", types.FunctionType),
    )
    for module, module_name, name, kind in names:
        if _lacks(module, name, kind):
            return f"{module_name}.{name}"
    try:
        probe = QuicConnection(configuration=QuicConfiguration(is_client=True))
    except Exception as exc:  # its constructor changed
        return f"QuicConnection(configuration=QuicConfiguration(is_client=True)) ({exc!r})"
    attributes: tuple[tuple[str, _Kind], ...] = (
        ("__dict__", dict),  # discard_state()
        ("_local_max_data", Limit),
        ("_local_max_data.used", int),
        ("_local_max_data.sent", int),
        ("_local_max_data.value", int),
        ("_streams", dict),
        ("_close_event", (ConnectionTerminated, type(None))),
        ("_loss._pto_count", int),
        ("_loss.get_probe_timeout", types.MethodType),
        ("_logger", QuicConnectionAdapter),
    )
    for path, kind in attributes:
        if _lacks(probe, path, kind):
            return f"QuicConnection.{path}"
    try:
        probe.send_stream_data(0, b"")  # opens the stream
    except Exception as exc:
        return f"QuicConnection.send_stream_data(0, b'') ({exc!r})"
    stream = probe._streams.get(0)
    senders: tuple[tuple[str, _Kind], ...] = (
        ("sender._buffer_start", int),
        ("sender._buffer_stop", int),
        ("sender.is_finished", bool),
    )
    for path, kind in senders:
        if _lacks(stream, path, kind):
            return f"QuicConnection._streams[stream_id].{path}"
    return None


def verify() -> None:
    """Raise :class:`AioquicIncompatibleError` naming the first internal the installed aioquic lacks."""
    missing = _first_missing()
    if missing is not None:
        raise AioquicIncompatibleError(
            f"pydevts-quic was checked against aioquic {CHECKED_AGAINST}; aioquic {installed_version()} "
            f"has no {missing}: upgrade pydevts-quic or pin aioquic"
        )


_verified = False


def check() -> None:
    """:func:`verify`, once per process (a ``QUICTransport`` calls it as it is created)."""
    global _verified
    if not _verified:
        verify()
        _verified = True
