"""Each QUIC connection's timers, run by one task per connection.

aioquic's own timer (loss recovery, acknowledgement delay, idle timeout),
the keep-alive pings, a closed connection's linger deadline and a handshake's
half-open deadline: :func:`run_timers` sleeps until the earliest of them,
acts, and sleeps again. aioquic's timer moves with nearly every datagram, so
:func:`follow_timer` (after each transmit) moves the sleeping task's deadline
along, and :func:`rearm` makes the task look at all its deadlines again, now.
"""

from __future__ import annotations

import math
from typing import Protocol

import anyio

from ._aioquic import close_event
from .admission import Admission
from .closing import LINGER_SILENCE
from .connection import QUICConnection

__all__ = ["TimerHost", "follow_timer", "rearm", "run_timers"]


class TimerHost(Protocol):
    """What a connection's timer task needs of the endpoint it runs in."""

    keepalive: float
    admission: Admission

    def transmit(self, conn: QUICConnection) -> None: ...
    def drop_half_open(self, conn: QUICConnection, why: str) -> None: ...
    def broken(self, conn: QUICConnection, doing: str) -> None: ...


def follow_timer(conn: QUICConnection) -> None:
    """Move ``conn``'s sleeping timer task's deadline to aioquic's timer, as it stands now.

    No task switch, and no wake-up for a deadline that went away.
    """
    scope = conn.timer_scope
    if scope is not None:
        timer = conn.quic.get_timer()
        deadline = conn.own_deadline if timer is None else min(timer, conn.own_deadline)
        if deadline != conn.sleeping_until:
            conn.sleeping_until = deadline
            scope.deadline = deadline


def rearm(conn: QUICConnection) -> None:
    """Make ``conn``'s timer task look at all its deadlines again, now."""
    scope = conn.timer_scope
    if scope is not None:
        conn.timer_scope = None
        conn.sleeping_until = -math.inf
        scope.cancel()


async def run_timers(host: TimerHost, conn: QUICConnection) -> None:
    """Run ``conn``'s aioquic timer, its linger deadline and its keep-alive pings until it ends.

    While lingering, pings go every third of LINGER_SILENCE: a live peer
    must acknowledge them at once, so silence then means it is gone.
    """
    quic = conn.quic
    last_ping = anyio.current_time()
    while not conn.terminated:
        now = anyio.current_time()
        linger = conn.linger_until
        if linger is None:
            next_ping = last_ping + host.keepalive
        else:  # it ends early if the peer falls silent
            linger = min(linger, conn.last_heard + conn.silence_limit())
            next_ping = last_ping + LINGER_SILENCE / 3
        own = next_ping if linger is None else min(linger, next_ping)
        if conn.half_open_until is not None:
            if now >= conn.half_open_until:
                host.admission.stats.half_open_timed_out += 1
                host.drop_half_open(conn, f"did not finish within {host.admission.handshake_timeout:g} s")
                return
            own = min(own, conn.half_open_until)
        timer = quic.get_timer()
        deadline = own if timer is None else min(timer, own)
        if deadline - now > 1e-6:
            # follow_timer() moves the deadline as aioquic's timer moves; rearm() cancels the scope.
            with anyio.CancelScope(deadline=deadline) as scope:
                conn.timer_scope = scope
                conn.own_deadline = own
                conn.sleeping_until = deadline
                await anyio.sleep_forever()
            conn.timer_scope = None
            conn.sleeping_until = math.inf
            continue
        try:
            timer = quic.get_timer()
            if timer is not None and now >= timer:
                quic.handle_timer(now)
            if now >= next_ping:
                last_ping = now
                if conn.ready.is_set() and close_event(quic) is None:
                    quic.send_ping(0)
            conn.handle_events(now)
        except Exception:
            host.broken(conn, "running its timers")
            return
        if not conn.terminated:
            host.transmit(conn)
