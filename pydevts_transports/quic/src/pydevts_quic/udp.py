"""The node's UDP socket, shared by QUIC and the failure detector's datagrams.

A datagram whose first byte has both top bits clear can never be QUIC (RFC
9000 requires the fixed bit), so the failure detector's datagrams, which
begin with :data:`DATAGRAM_MARK`, are told apart from QUIC packets as RFC
9443 describes, and nothing else binds the node's UDP port. The
:class:`~pydevts_quic.endpoint.Endpoint` reading the socket hands them to
:class:`Datagrams`.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Protocol

import anyio
import anyio.lowlevel
from pydevts.errors import ConnectionClosedError
from pydevts.protocols import Address

__all__ = ["DATAGRAM_MARK", "DatagramSocket", "Datagrams", "tune_socket"]

#: First byte of a pydevts (non-QUIC) datagram on the shared socket.
DATAGRAM_MARK = 0x00
SOCKET_BUFFER = 4 * 1024 * 1024


def tune_socket(sock: socket.socket) -> None:
    """Large socket buffers: QUIC bursts a window of datagrams at a time."""
    for option, forced in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER)
        except OSError:  # not root: the kernel caps the plain option instead
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass


class DatagramSocket(Protocol):
    """What :class:`Datagrams` needs of the endpoint whose socket it shares."""

    sock: socket.socket
    datagrams: Datagrams | None

    def send_to(self, data: bytes, addr: tuple[str, int]) -> None: ...


class Datagrams:
    """The failure detector's channel on a listener's socket (a ``DatagramEndpoint``)."""

    QUEUE = 1024

    def __init__(self, endpoint: DatagramSocket) -> None:
        self._endpoint: DatagramSocket | None = endpoint
        self._queue: deque[bytes] = deque()
        self._wake: anyio.Event | None = None
        self.dropped = 0

    def put(self, data: bytes) -> None:
        if len(self._queue) >= self.QUEUE:
            self.dropped += 1
            return
        self._queue.append(data)
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def closed(self) -> None:
        self._endpoint = None
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def send(self, data: bytes, address: Address) -> None:
        endpoint = self._endpoint
        if endpoint is None or endpoint.sock.fileno() < 0:
            return
        endpoint.send_to(bytes((DATAGRAM_MARK,)) + data, (address.host, address.port))

    async def receive(self) -> bytes:
        while not self._queue:
            if self._endpoint is None:
                raise ConnectionClosedError("datagram endpoint closed")
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._queue.popleft()

    async def aclose(self) -> None:
        endpoint = self._endpoint
        if endpoint is not None and endpoint.datagrams is self:
            endpoint.datagrams = None
        self.closed()
        await anyio.lowlevel.checkpoint()
