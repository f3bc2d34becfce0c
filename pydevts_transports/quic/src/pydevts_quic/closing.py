"""How a QUIC connection ends: the linger after a local close, and the words for an end.

A connection closed by its application keeps sending (for up to
:data:`LINGER` s) until the peer has acknowledged everything written to it,
as a TCP socket's kernel would, then closes; a peer silent for
:func:`silence_limit` is taken for gone sooner. Sans-IO: the connection
calls :func:`check_linger` as packets and timers move it on.
"""

from __future__ import annotations

import logging

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from pydevts.ratelog import RateLimitedLog

from ._aioquic import close_event, probe_timeout, pto_count, stream_delivered, unacknowledged

__all__ = ["LINGER", "LINGER_SILENCE", "UNDELIVERED", "check_linger", "describe_termination", "silence_limit"]

log = logging.getLogger("pydevts.quic")

#: How long a closed connection keeps trying to deliver what was written before it closed...
LINGER = 5.0
#: ... unless the peer has said nothing for this long, and for three probe timeouts
#: (see :func:`silence_limit`): it is gone, nobody will acknowledge.
LINGER_SILENCE = 1.0
#: Application error code of a close that leaves written bytes unacknowledged.
UNDELIVERED = 0x1


def silence_limit(quic: QuicConnection) -> float:
    """How long a lingering connection waits without a packet before taking its peer for gone.

    At least LINGER_SILENCE (it pings every third of that) and three probe
    timeouts, backoff included: on a lossy path retransmissions back off,
    and a live peer may then be silent for a while.
    """
    backoff: int = 2 ** pto_count(quic)
    return max(LINGER_SILENCE, 3 * probe_timeout(quic) * backoff)


def check_linger(
    quic: QuicConnection,
    stream_id: int,
    now: float,
    *,
    until: float,
    last_heard: float,
    remote: str,
    peer_ended: bool,
    ratelog: RateLimitedLog,
) -> float | None:
    """Close ``quic`` once the peer has everything on ``stream_id`` (or the linger is over).

    Returns when the linger ends (``until``), or None once it is over.
    ``peer_ended``: the peer ended its stream first.
    """
    if close_event(quic) is not None:  # closing already: the linger is over
        return None
    if stream_delivered(quic, stream_id):
        quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="closed")
        return None
    silent = now - last_heard >= silence_limit(quic)
    if now < until and not silent:
        return until
    left = unacknowledged(quic, stream_id)
    if not left:
        # Every byte arrived; only the end of our stream is unacknowledged (the peer
        # typically closed first and its process has exited). Nothing was lost.
        log.debug("closing QUIC connection to %s: all delivered but the end of stream", remote)
        quic.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="closed")
        return None
    why = "the peer fell silent" if silent else f"not acknowledged within {LINGER:g} s"
    if peer_ended:
        # The peer ended its stream first, so nothing more was going to be read there
        # (a CLI client that got its reply and exited, say): not a loss anyone feels.
        log.debug(
            "closing QUIC connection to %s (closed by the peer) with %d bytes unacknowledged: %s",
            remote,
            left,
            why,
        )
    else:
        ratelog.info(
            "quic.undelivered",
            "closing QUIC connection to %s with %d written bytes unacknowledged (%s): "
            "the peer may not have received them",
            remote,
            left,
            why,
        )
    # An application close, not NO_ERROR: the peer learns that it did not get everything.
    quic.close(error_code=UNDELIVERED, reason_phrase=f"closed with {left} bytes undelivered")
    return None


def describe_termination(event: events.ConnectionTerminated, remote: str, idle_timeout: float) -> str:
    code, reason = event.error_code, event.reason_phrase
    if reason == "Idle timeout":
        return f"connection to {remote} timed out: no packet for {idle_timeout:g} s (peer gone?)"
    if 0x100 <= code <= 0x1FF:
        return f"TLS handshake with {remote} failed: {reason or 'alert'} (TLS alert {code - 0x100})"
    if code == QuicErrorCode.NO_ERROR:
        return f"connection closed by {remote}" + (f" ({reason})" if reason and reason != "closed" else "")
    return f"connection closed by {remote}: {reason or 'error'} (QUIC error 0x{code:x})"
