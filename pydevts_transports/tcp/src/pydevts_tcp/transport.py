"""TCP transport: 4-byte length-prefixed frames over anyio socket streams.

A batch of frames given to :meth:`TCPConnection.send_frames` goes out in one
``send`` (the link layer above batches everything queued in one loop pass), and
each ``receive`` of up to 256 KiB is split into as many frames as it holds.
Every lower-layer error is translated to a :mod:`pydevts.errors` exception.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc
from pydevts.errors import (
    AddressInUseError,
    ConnectError,
    ConnectionClosedError,
    TransportError,
)
from pydevts.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frames
from pydevts.protocols import Address, Connection

__all__ = ["TCPConnection", "TCPListener", "TCPTransport"]

log = logging.getLogger("pydevts.tcp")

READ_SIZE = 256 * 1024
_CLOSED = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


def _format(sockaddr: object) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr)


class TCPConnection:
    """One TCP connection carrying length-prefixed frames."""

    def __init__(self, stream: anyio.abc.SocketStream, max_frame_size: int) -> None:
        self._stream = stream
        self.max_frame_size = max_frame_size
        self._decoder = FrameDecoder(max_frame_size)
        try:
            self._remote = _format(stream.extra(anyio.abc.SocketAttribute.remote_address))
        except Exception:
            self._remote = "?"

    @property
    def remote_address(self) -> str:
        return self._remote

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        data = encode_frames(frames, self.max_frame_size)
        try:
            await self._stream.send(data)
        except _CLOSED as exc:
            raise ConnectionClosedError(f"connection to {self._remote} closed: {exc!r}") from exc

    async def receive_frames(self) -> list[bytes]:
        while True:
            try:
                data = await self._stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                partial = self._decoder.buffered
                detail = f" in the middle of a frame ({partial} bytes buffered)" if partial else ""
                raise ConnectionClosedError(f"connection closed by {self._remote}{detail}") from None
            except _CLOSED as exc:
                raise ConnectionClosedError(f"connection to {self._remote} closed: {exc!r}") from exc
            frames = self._decoder.feed(data)
            if frames:
                return frames

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except (OSError, anyio.BrokenResourceError):
            pass


class TCPListener:
    """A bound TCP listener."""

    def __init__(self, listener: anyio.abc.SocketListener, max_frame_size: int) -> None:
        self._listener = listener
        self._max_frame_size = max_frame_size
        local = listener.extra(anyio.abc.SocketAttribute.local_address)
        assert isinstance(local, tuple), "TCP listeners have (host, port, ...) addresses"
        self._address = Address(str(local[0]), int(local[1]))

    @property
    def address(self) -> Address:
        return self._address

    async def serve(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        async def accepted(stream: anyio.abc.SocketStream) -> None:
            await handler(TCPConnection(stream, self._max_frame_size))

        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await self._listener.accept()
                except anyio.ClosedResourceError:
                    return
                except OSError as exc:  # e.g. EMFILE: keep serving
                    log.warning("accept on %s failed: %s", self._address, exc)
                    await anyio.sleep(0.1)
                    continue
                tg.start_soon(accepted, stream)

    async def aclose(self) -> None:
        try:
            await self._listener.aclose()
        except OSError:
            pass


class TCPTransport:
    """The ``tcp`` transport."""

    name = "tcp"

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, connect_timeout: float = 5.0) -> None:
        self.max_frame_size = max_frame_size
        self.connect_timeout = connect_timeout

    async def listen(self, address: Address) -> TCPListener:
        try:
            listener = await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"cannot listen on {address}: address in use") from exc
            raise TransportError(f"cannot listen on {address}: {exc}") from exc
        # One socket is enough for a node; anyio may bind one per address family.
        first, *extra = listener.listeners
        for other in extra:
            await other.aclose()
        assert isinstance(first, anyio.abc.SocketListener)
        return TCPListener(first, self.max_frame_size)

    async def connect(self, address: Address) -> TCPConnection:
        try:
            with anyio.fail_after(self.connect_timeout):
                stream = await anyio.connect_tcp(address.host, address.port)
        except TimeoutError as exc:
            raise ConnectError(f"connecting to {address} timed out after {self.connect_timeout:g} s") from exc
        except OSError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise ConnectError(f"cannot connect to {address}: {cause.strerror or cause}") from exc
        return TCPConnection(stream, self.max_frame_size)
