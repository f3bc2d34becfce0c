"""Closing a TCP connection without losing what is still to be sent (Linux; a no-op elsewhere)."""

from __future__ import annotations

import socket
import sys

import anyio

try:
    import fcntl
    import termios

    _IOCTL = True
except ImportError:  # not on Windows: no lingering there
    _IOCTL = False

__all__ = ["CLOSE_LINGER", "CLOSE_STALL", "linger", "unsent"]

#: At most this long, a closing connection waits for the peer to take what it still has to send.
CLOSE_LINGER = 2.0
#: ... and it stops waiting once the peer has taken nothing for this long (it does not read).
CLOSE_STALL = 0.2


def unsent(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that the peer has not acknowledged yet (Linux; 0 elsewhere)."""
    if not _IOCTL:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)), sys.byteorder)
    except OSError:
        return 0


async def linger(sock: socket.socket) -> None:
    """Wait (bounded) until the peer has acknowledged everything written.

    Closing a socket with bytes unread in its receive buffer (the peer's
    acknowledgements, say) makes the kernel reset the connection and throw
    away what it has not sent yet: the last frames of a node that leaves.
    So a closing connection first lets its send queue drain — for at most
    CLOSE_LINGER seconds, and only while the peer keeps taking bytes.
    """
    left = unsent(sock)
    if not left:
        return
    start = last_progress = anyio.current_time()
    while left:
        now = anyio.current_time()
        if now - start >= CLOSE_LINGER or now - last_progress >= CLOSE_STALL:
            return
        await anyio.sleep(0.005)
        now_left = unsent(sock)
        if now_left < left:
            last_progress = anyio.current_time()
        left = now_left
