"""TCP transport: 4-byte length-prefixed frames over non-blocking sockets.

The sockets are driven directly with anyio's readiness primitives
(``anyio.wait_readable`` / ``wait_writable``) rather than through anyio's
stream objects: a read or write that can complete at once does so without a
trip through the event loop, which roughly halves the round-trip time of a
request on asyncio. Everything else stays anyio: it runs on asyncio and trio.

A batch of frames given to :meth:`TCPConnection.send_frames` goes out in one
``send`` call (the link layer above batches everything queued in one loop
pass); each read of up to 256 KiB is split into as many frames as it holds.
Every OS error is translated to a :mod:`pydevts.errors` exception.

A peer that stops in the middle of a frame holds the part received so far:
once :attr:`TCPConnection.frame_timeout` seconds have been spent waiting for
the rest of one frame, the connection raises
:class:`~pydevts.limits.StalledFrameError` (time spent not reading, e.g.
under backpressure, does not count). A frame of :data:`MAPPED_FRAME` bytes
or more is assembled in an anonymous memory map of its own, which goes back
to the system as soon as the connection drops it: freed heap memory mostly
stays with the process (glibc), so 100 clients cut inside 1 MiB frames left
a node 100 MiB larger.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel
from pydevts.errors import (
    AddressInUseError,
    ConnectError,
    ConnectionClosedError,
    TransportError,
)
from pydevts.limits import DEFAULT_FRAME_TIMEOUT, StalledFrameError
from pydevts.protocols import Address, Connection
from pydevts.ratelog import RateLimitedLog
from pydevts.wire.framing import DEFAULT_MAX_FRAME_SIZE, HEADER, FrameDecoder, encode_frames

from .linger import linger

__all__ = ["TCPConnection", "TCPListener", "TCPTransport"]

log = logging.getLogger("pydevts.tcp")

READ_SIZE = 256 * 1024
#: Reads that find data at once in a row before yielding to other tasks anyway.
FAIR_READS = 16
_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError)
#: Frames at least this large are assembled in a memory map of their own (see above).
MAPPED_FRAME = 256 * 1024


def _format(sockaddr: object) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr)


async def _close_socket(sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        anyio.notify_closing(sock)  # wakes a task waiting on it, on every backend
        sock.close()


class _Decoder(FrameDecoder):
    """A :class:`FrameDecoder` that assembles each frame of MAPPED_FRAME bytes or more in a memory map."""

    __slots__ = ("_filled", "_map")

    def __init__(self, max_frame_size: int) -> None:
        super().__init__(max_frame_size)
        self._map: mmap.mmap | None = None
        self._filled = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) + (4 + self._filled if self._map is not None else 0)

    @property
    def mapping(self) -> bool:
        """A large frame is being assembled: read it with :meth:`receive_into`, not :meth:`feed`."""
        return self._map is not None

    def feed(self, data: bytes) -> list[bytes]:
        frames = super().feed(data)
        buf = self._buf
        if len(buf) >= 4 and (size := HEADER.unpack_from(buf)[0]) >= MAPPED_FRAME:
            self._map = mmap.mmap(-1, size)  # (the size was checked against the limit by feed)
            self._filled = self._map.write(buf[4:])
            del buf[:]
        return frames

    def receive_into(self, sock: socket.socket) -> list[bytes]:
        """Read the mapped frame's next bytes (EOFError at the end of the stream); it, once complete."""
        mapped = self._map
        assert mapped is not None
        with memoryview(mapped) as whole, whole[self._filled :] as rest:
            got = sock.recv_into(rest)
        if not got:
            raise EOFError
        self._filled += got
        if self._filled < len(mapped):
            return []
        frame = mapped[:]
        self.release()
        return [frame]

    def release(self) -> None:
        mapped, self._map, self._filled = self._map, None, 0
        if mapped is not None:
            mapped.close()


class TCPConnection:
    """One TCP connection carrying length-prefixed frames."""

    def __init__(self, sock: socket.socket, max_frame_size: int) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self.max_frame_size = max_frame_size
        self._decoder = _Decoder(max_frame_size)
        self._quick_reads = 0
        self._rest: memoryview | None = None
        #: Seconds of waiting for the rest of a frame after which the peer is taken to have stalled.
        self.frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT
        self._waited = 0.0  # waiting for the rest of the current frame, so far
        try:
            self._remote = _format(sock.getpeername())
        except OSError:
            self._remote = "?"

    @property
    def remote_address(self) -> str:
        return self._remote

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        """Write ``frames`` now, without waiting.

        Whatever the socket does not take at once is kept and written first
        by the next :meth:`send_frames`; returns ``False`` when that happened.
        """
        if self._rest is not None:
            raise RuntimeError("send_frames_nowait called before the kept bytes were sent")
        data = encode_frames(frames, self.max_frame_size)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ConnectionClosedError(f"connection to {self._remote} closed: {exc!r}") from exc
        if sent == len(data):
            return True
        self._rest = memoryview(data)[sent:]
        return False

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write the kept bytes (if any), then ``frames``, waiting for the socket as needed."""
        data = encode_frames(frames, self.max_frame_size)
        if self._rest is not None:
            rest, self._rest = self._rest, None
            await self._write(rest)
        await self._write(memoryview(data))

    async def _write(self, view: memoryview) -> None:
        sock = self._sock
        try:
            while view:
                try:
                    sent = sock.send(view)
                except BlockingIOError:
                    await anyio.wait_writable(sock)
                    continue
                view = view[sent:]
        except _CLOSED as exc:
            raise ConnectionClosedError(f"connection to {self._remote} closed: {exc!r}") from exc

    async def receive_frames(self) -> list[bytes]:
        sock = self._sock
        decoder = self._decoder
        while True:
            try:
                if decoder.mapping:
                    frames = decoder.receive_into(sock)
                else:
                    data = sock.recv(READ_SIZE)
                    if not data:
                        raise EOFError
                    frames = decoder.feed(data)
            except BlockingIOError:
                self._quick_reads = 0
                if self._decoder.buffered and self.frame_timeout is not None:
                    await self._wait_inside_frame(self.frame_timeout)
                    continue
                try:
                    await anyio.wait_readable(sock)
                except _CLOSED as exc:
                    raise ConnectionClosedError(f"connection to {self._remote} closed") from exc
                continue
            except EOFError:
                partial = decoder.buffered
                detail = f" in the middle of a frame ({partial} bytes buffered)" if partial else ""
                message = f"connection closed by {self._remote}{detail}"
                raise ConnectionClosedError(message, eof=not partial) from None
            except OSError as exc:
                raise ConnectionClosedError(f"connection to {self._remote} closed: {exc!r}") from exc
            if frames:
                self._waited = 0.0
                self._quick_reads += 1
                if self._quick_reads >= FAIR_READS:
                    # Data kept arriving faster than we handle it: let others run.
                    self._quick_reads = 0
                    await anyio.lowlevel.checkpoint()
                return frames

    async def _wait_inside_frame(self, timeout: float) -> None:
        start = anyio.current_time()
        with anyio.move_on_after(timeout - self._waited) as waiting:
            try:
                await anyio.wait_readable(self._sock)
            except _CLOSED as exc:
                raise ConnectionClosedError(f"connection to {self._remote} closed") from exc
        self._waited += anyio.current_time() - start
        if waiting.cancelled_caught:
            raise StalledFrameError(
                f"{self._remote} stalled inside a frame: {self._decoder.buffered} bytes of it arrived, "
                f"the rest not within {timeout:g} s"
            )

    async def aclose(self) -> None:
        if self._sock.fileno() >= 0:
            await linger(self._sock)
        await _close_socket(self._sock)
        self._decoder.release()


class TCPListener:
    """A bound, listening TCP socket."""

    def __init__(self, sock: socket.socket, max_frame_size: int) -> None:
        self._sock = sock
        self._max_frame_size = max_frame_size
        self._ratelog = RateLimitedLog(log)
        host, port = sock.getsockname()[:2]
        self._address = Address(str(host), int(port))

    @property
    def address(self) -> Address:
        return self._address

    async def serve(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        async def accepted(conn: TCPConnection) -> None:
            await handler(conn)

        async with anyio.create_task_group() as tg:
            while True:
                try:
                    client, _ = self._sock.accept()
                except BlockingIOError:
                    try:
                        await anyio.wait_readable(self._sock)
                    except _CLOSED:
                        return
                    continue
                except OSError as exc:
                    if self._sock.fileno() < 0:
                        return
                    self._ratelog.warning("tcp.accept", "accept on %s failed: %s", self._address, exc)
                    await anyio.sleep(0.1)
                    continue
                try:
                    conn = TCPConnection(client, self._max_frame_size)
                except OSError as exc:  # reset before we got to it
                    client.close()
                    self._ratelog.info(
                        "tcp.reset", "accepted connection on %s failed at once: %s", self._address, exc
                    )
                    continue
                tg.start_soon(accepted, conn)
                del conn, client  # not kept alive (with its buffers) until the next accept

    async def aclose(self) -> None:
        await _close_socket(self._sock)


class TCPTransport:
    """The ``tcp`` transport."""

    name = "tcp"

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, connect_timeout: float = 5.0) -> None:
        self.max_frame_size = max_frame_size
        self.connect_timeout = connect_timeout

    async def listen(self, address: Address) -> TCPListener:
        try:
            infos = await anyio.getaddrinfo(
                address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except (OSError, ValueError, OverflowError) as exc:
            raise TransportError(f"cannot listen on {address}: {exc}") from exc
        family, _, proto, _, sockaddr = infos[0]
        try:
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
        except OSError as exc:  # e.g. EMFILE
            raise TransportError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(512)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"cannot listen on {address}: address in use") from exc
            raise TransportError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        return TCPListener(sock, self.max_frame_size)

    async def connect(self, address: Address) -> TCPConnection:
        try:
            with anyio.fail_after(self.connect_timeout):
                sock = await self._connect(address)
        except TimeoutError as exc:
            raise ConnectError(f"connecting to {address} timed out after {self.connect_timeout:g} s") from exc
        except OSError as exc:
            refused = exc.errno == errno.ECONNREFUSED
            raise ConnectError(
                f"cannot connect to {address}: {exc.strerror or exc}", refused=refused
            ) from exc
        except (ValueError, OverflowError) as exc:  # e.g. a port out of range
            raise ConnectError(f"cannot connect to {address}: {exc}") from exc
        try:
            return TCPConnection(sock, self.max_frame_size)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"connection to {address} failed at once: {exc}") from exc

    async def _connect(self, address: Address) -> socket.socket:
        infos = await anyio.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(errno.EHOSTUNREACH, "no address to connect to")
        for family, _, proto, _, sockaddr in infos:
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
            sock.setblocking(False)
            try:
                code = sock.connect_ex(sockaddr)
                if code == errno.EINPROGRESS:
                    await anyio.wait_writable(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    return sock
                error = OSError(code, os.strerror(code))
            except BaseException:
                sock.close()
                raise
            sock.close()
        raise error
