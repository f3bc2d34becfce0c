"""Datagram endpoints: the unreliable channel failure detectors probe over.

A router's failure detector must not share the data path (a link held up by
backpressure would delay its probes). A transport may offer its own channel
(``Transport.open_datagrams``, e.g. the in-memory transport, so that injected
partitions reach probes too); otherwise :class:`UdpEndpoint` binds UDP on the
same host and port number as the node's listener.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.lowlevel

from ..address import Address
from ..errors import ConnectionClosedError, TransportError

__all__ = ["MAX_DATAGRAM", "YIELD_EVERY", "UdpEndpoint", "receive_datagrams"]

MAX_DATAGRAM = 60_000
#: Datagrams handled in a row before a receive loop lets other tasks run.
YIELD_EVERY = 8


class _Receiving(Protocol):  # what this needs of a DatagramEndpoint (pydevts.protocols)
    async def receive(self) -> bytes: ...


async def receive_datagrams(
    endpoint: Callable[[], _Receiving | None],
    handle: Callable[[bytes], None],
    on_error: Callable[[], None],
) -> None:
    """Hand each datagram of ``endpoint()`` to ``handle`` until the endpoint is gone or closed.

    An exception from ``handle`` costs that datagram only (``on_error`` is
    called from the ``except`` block, to count and log it). A receive that
    finds a datagram waiting does not yield, so every :data:`YIELD_EVERY`
    datagrams the loop lets other tasks run: a backlog must not starve the
    node (its timers would run late and suspect others).
    """
    handled = 0
    while (current := endpoint()) is not None:
        try:
            data = await current.receive()
        except ConnectionClosedError:
            return
        try:
            handle(data)
        except Exception:  # one bad datagram costs only itself, never the node
            on_error()
        handled += 1
        if handled % YIELD_EVERY == 0:
            await anyio.lowlevel.checkpoint()


class UdpEndpoint:
    """A non-blocking UDP socket; implements :class:`~pydevts.protocols.DatagramEndpoint`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    @classmethod
    def open(cls, bind: Address) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((bind.host, bind.port))
        except OSError as exc:
            sock.close()
            raise TransportError(
                f"cannot bind UDP {bind} for failure detection: {exc.strerror or exc} "
                "(pydevts needs UDP on the same port number as the node's TCP listener)"
            ) from exc
        return cls(sock)

    def send(self, data: bytes, address: Address) -> None:
        """Send now or never: a full buffer drops the datagram, as UDP would anyway."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, (address.host, address.port))
        except OSError:
            pass

    async def receive(self) -> bytes:
        while True:
            sock = self._sock
            if sock is None:
                raise ConnectionClosedError("datagram endpoint closed")
            try:
                return sock.recv(MAX_DATAGRAM + 1024)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(sock)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
                    raise ConnectionClosedError("datagram endpoint closed") from exc
            except OSError:  # e.g. ICMP port unreachable after an earlier send: not fatal
                if sock.fileno() < 0:
                    raise ConnectionClosedError("datagram endpoint closed") from None

    async def aclose(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            anyio.notify_closing(sock)
            sock.close()
