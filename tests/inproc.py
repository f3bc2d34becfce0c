"""Helpers for in-process cluster tests: real loopback sockets, no fixed sleeps.

Every node of a test runs in the test's own task; ``cluster(...)`` enters them
in order (the first one starts the cluster at its cluster port, the others
join through it) and waits until each one sees every other one alive.
:class:`RawPeer` is a bare TCP client speaking pydevts framing by hand, for
feeding a node bytes that no real node would send.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import anyio.abc
from pydevts import Node
from pydevts.wire import Hello
from pydevts.wire.framing import FrameDecoder

__all__ = [
    "RawPeer",
    "alive_ids",
    "cluster",
    "frame",
    "free_port",
    "pydevts_warnings",
    "raw_hello",
    "wait_for_mesh",
    "wait_stalled",
    "wait_until",
]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    pred: Callable[[], object], timeout: float = 5.0, what: str | Callable[[], str] = "a condition"
) -> None:
    """Poll ``pred`` until it is true; fail the test if it is not within ``timeout`` seconds.

    ``what`` may be a callable, called at the deadline (to say what things are like then).
    """
    with anyio.move_on_after(timeout):
        while not pred():
            await anyio.sleep(0.005)
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


async def wait_stalled(value: Callable[[], object], quiet: float = 0.3, timeout: float = 8.0) -> None:
    """Wait until ``value()`` has not changed for ``quiet`` seconds (e.g. a sender blocked for good)."""
    with anyio.move_on_after(timeout):
        last, since = value(), anyio.current_time()
        while anyio.current_time() - since < quiet:
            await anyio.sleep(0.01)
            now = value()
            if now != last:
                last, since = now, anyio.current_time()
        return
    raise AssertionError(f"value still changing after {timeout:g} s")


def alive_ids(node: Node) -> set[str]:
    """Ids of the members ``node`` sees alive, itself included."""
    return {m.id for m in node.members if m.alive}


async def wait_for_mesh(nodes: Sequence[Node], timeout: float = 8.0) -> None:
    """Wait until every node sees exactly the given nodes alive."""
    ids = {n.id for n in nodes}
    await wait_until(
        lambda: all(alive_ids(n) == ids for n in nodes),
        timeout,
        lambda: f"full membership {sorted(ids)} (now: { {n.id: sorted(alive_ids(n)) for n in nodes} })",
    )


@asynccontextmanager
async def cluster(*nodes: Node, timeout: float = 8.0) -> AsyncIterator[tuple[Node, ...]]:
    """Run ``nodes`` (first one starts the cluster) and wait for full membership."""
    async with AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        await wait_for_mesh(nodes, timeout)
        yield nodes


def pydevts_warnings(records: Iterable[logging.LogRecord]) -> list[str]:
    """Messages of WARNING-or-worse records from ``pydevts.*`` loggers (but the open-cluster notice)."""
    return [
        r.getMessage()
        for r in records
        if r.name.startswith("pydevts")
        and r.levelno >= logging.WARNING
        and "OPEN cluster" not in r.getMessage()
    ]


# --------------------------------------------------------------------------- raw TCP


def frame(body: bytes) -> bytes:
    """One frame on the wire: 4-byte big-endian length, then the body."""
    return struct.pack(">I", len(body)) + body


def raw_hello(node_id: str, *, cluster: str = "default", serializer: str = "msgpack", **kw: object) -> bytes:
    """A HELLO frame body for a raw client; it advertises a port nobody listens on."""
    return Hello(
        cluster=cluster,
        node_id=node_id,
        address=f"127.0.0.1:{free_port()}",
        serializer=serializer,
        **kw,  # type: ignore[arg-type]
    ).to_frame()


class RawPeer:
    """A bare TCP client that speaks pydevts framing by hand."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(64 * 1024 * 1024)
        self._frames: list[bytes] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawPeer]:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            yield cls(stream)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send_frames(self, *bodies: bytes) -> None:
        await self.stream.send(b"".join(frame(b) for b in bodies))

    async def receive_frame(self) -> bytes | None:
        """The next whole frame, or ``None`` once the node has closed the connection."""
        while not self._frames:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                return None
            self._frames.extend(self._decoder.feed(data))
        return self._frames.pop(0)

    async def receive_until_eof(self) -> list[bytes]:
        """Every frame the node still sends, until it closes the connection."""
        frames = []
        while (f := await self.receive_frame()) is not None:
            frames.append(f)
        return frames

    async def handshake(self, node_id: str, **kw: object) -> bytes:
        """Send a valid HELLO; return the node's HELLO frame."""
        await self.send_frames(raw_hello(node_id, **kw))  # type: ignore[arg-type]
        reply = await self.receive_frame()
        assert reply is not None and reply[0] == 0x30, f"expected the node's HELLO, got {reply!r}"
        return reply
