"""An in-memory transport: connections without sockets, with fault injection.

Every :class:`MemoryTransport` belongs to a :class:`MemoryNetwork` and has a
*host* name; listeners bind ``(host, port)`` addresses in that network. The
test drives faults on the network:

- ``network.partition({"a"}, {"b", "c"})``: frames between the two sides
  vanish (as on a cut cable: no error, no close) and connects between them
  fail; ``network.heal()`` undoes every partition;
- ``network.drop_rate``: the probability that a batch of frames is lost;
- ``network.delay``: seconds each batch (or datagram) takes to arrive; it is
  latency, not throughput: the sender goes on at once (while the
  connection's window of 64 batches has room) and the frames wait in flight,
  in order, until they are due;
- ``network.jitter``: up to this many more seconds, drawn for each batch, so
  that copies on different links overtake each other (each link stays FIFO).

Faults apply when a batch is sent: what is in flight when a partition
starts still arrives. Datagrams to one endpoint share one queue (1,024
deep; a full queue drops, as a network would), so one datagram's jitter
also holds back those behind it.

Transports also offer a datagram channel (``open_datagrams``) that failure
detectors use instead of UDP, so partitions and drops reach probes too.

Registered through the same hook as every transport, under the name
``memory`` (all such transports share :func:`default_network`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import (
    AddressInUseError,
    ConnectError,
    ConnectionClosedError,
    FrameTooLargeError,
    RemoteProtocolError,
)
from ..protocols import Address, Connection
from ..wire.framing import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "MemoryConnection",
    "MemoryDatagrams",
    "MemoryListener",
    "MemoryNetwork",
    "MemoryTransport",
    "default_network",
]

T = TypeVar("T")

BATCHES_IN_FLIGHT = 64  # per direction of a connection: the receiver's window


class MemoryNetwork:
    """A set of in-memory endpoints and the faults between them."""

    def __init__(self, *, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.drop_rate = 0.0
        self.delay = 0.0
        self.jitter = 0.0
        self._listeners: dict[Address, MemoryListener] = {}
        self._datagrams: dict[Address, MemoryDatagrams] = {}
        self._cuts: set[frozenset[str]] = set()
        self._next_port = 40000
        self._open: set[MemoryConnection] = set()

    def transport(self, host: str = "127.0.0.1", **settings: int) -> MemoryTransport:
        return MemoryTransport(self, host=host, **settings)

    def due(self) -> float:
        """When something sent now arrives: ``delay`` plus up to ``jitter`` seconds from now."""
        if not (self.delay or self.jitter):
            return 0.0
        return anyio.current_time() + self.delay + (self.rng.random() * self.jitter if self.jitter else 0.0)

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every host of ``side_a`` off from every host of ``side_b`` (both ways)."""
        b_hosts = list(side_b)
        for a in side_a:
            for b in b_hosts:
                if a != b:
                    self._cuts.add(frozenset((a, b)))

    def heal(self) -> None:
        self._cuts.clear()

    def reset(self, host_a: str, host_b: str | None = None) -> int:
        """Reset every open connection between ``host_a`` and ``host_b`` (any host if None), as a TCP RST.

        Both ends see the connection closed at once and whatever was in
        flight is lost. Returns how many connections were reset.
        """
        hits = [
            conn
            for conn in self._open
            if conn._local_host == host_a and (host_b is None or conn._remote_host == host_b)
        ]
        for conn in hits:
            conn._reset()
            if conn._peer is not None:
                conn._peer._reset()
        return len(hits)

    def can_talk(self, host_a: str, host_b: str) -> bool:
        return frozenset((host_a, host_b)) not in self._cuts

    def _port(self) -> int:
        while True:
            self._next_port += 1
            if self._next_port > 65535:
                self._next_port = 40001
            if not any(a.port == self._next_port for a in self._listeners):
                return self._next_port


_DEFAULT = MemoryNetwork()


class _InFlight(Generic[T]):
    """The receiving end of a stream of ``(due, item)``: each item once it is due, in order.

    Cancel-safe: an item taken off the stream while its delay runs is kept
    for the next ``receive`` (a cancelled read loses nothing, as on a socket).
    One reader at a time.
    """

    def __init__(self, stream: MemoryObjectReceiveStream[tuple[float, T]]) -> None:
        self.stream = stream
        self._next: tuple[float, T] | None = None

    async def receive(self) -> T:
        if self._next is None:
            self._next = await self.stream.receive()
        due, item = self._next
        if due and (wait := due - anyio.current_time()) > 0:
            await anyio.sleep(wait)
        self._next = None
        return item

    async def aclose(self) -> None:
        self._next = None
        await self.stream.aclose()


def default_network() -> MemoryNetwork:
    """The network that transports made by name (``transport="memory"``) share."""
    return _DEFAULT


class MemoryConnection:
    """One end of an in-memory connection."""

    def __init__(
        self,
        network: MemoryNetwork,
        local_host: str,
        remote: str,
        remote_host: str,
        out: MemoryObjectSendStream[tuple[float, list[bytes]]],
        inbox: MemoryObjectReceiveStream[tuple[float, list[bytes]]],
        max_frame_size: int,
    ) -> None:
        self.network = network
        self.max_frame_size = max_frame_size
        self._local_host = local_host
        self._remote = remote
        self._remote_host = remote_host
        self._out = out
        self._in = _InFlight(inbox)
        self._peer: MemoryConnection | None = None
        self._was_reset = False
        network._open.add(self)

    def _reset(self) -> None:
        self._was_reset = True
        self.network._open.discard(self)
        self._in._next = None
        self._out.close()
        self._in.stream.close()

    @property
    def remote_address(self) -> str:
        return self._remote

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            if len(frame) > self.max_frame_size:
                raise FrameTooLargeError(len(frame), self.max_frame_size)
        net = self.network
        if self._was_reset:
            await anyio.lowlevel.checkpoint()
            raise ConnectionClosedError(f"connection to {self._remote} reset")
        if not net.can_talk(self._local_host, self._remote_host):
            await anyio.lowlevel.checkpoint()
            return  # a cut cable: gone without a word
        if net.drop_rate and net.rng.random() < net.drop_rate:
            await anyio.lowlevel.checkpoint()
            return
        try:
            await self._out.send((net.due(), list(frames)))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ConnectionClosedError(f"connection to {self._remote} closed") from exc

    async def receive_frames(self) -> list[bytes]:
        try:
            batch = await self._in.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            if self._was_reset:
                raise ConnectionClosedError(f"connection to {self._remote} reset") from exc
            eof = isinstance(exc, anyio.EndOfStream)
            raise ConnectionClosedError(f"connection closed by {self._remote}", eof=eof) from exc
        if self._was_reset:
            raise ConnectionClosedError(f"connection to {self._remote} reset")
        for frame in batch:
            if len(frame) > self.max_frame_size:
                raise RemoteProtocolError(
                    f"peer sent a frame of {len(frame)} bytes, over the maximum frame size "
                    f"of {self.max_frame_size} bytes"
                )
        return batch

    async def aclose(self) -> None:
        self.network._open.discard(self)
        await self._out.aclose()
        await self._in.aclose()


class MemoryDatagrams:
    """In-memory datagrams between transports of one network; partitions and drops apply."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self.address = address
        self._in, out = anyio.create_memory_object_stream[tuple[float, bytes]](1024)
        self._out = _InFlight(out)

    def send(self, data: bytes, address: Address) -> None:
        net = self._network
        target = net._datagrams.get(address)
        if target is None or not net.can_talk(self.address.host, address.host):
            return
        if net.drop_rate and net.rng.random() < net.drop_rate:
            return
        try:
            target._in.send_nowait((net.due(), data))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # a full or closed queue drops it, as a network would

    async def receive(self) -> bytes:
        try:
            return await self._out.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            raise ConnectionClosedError("datagram endpoint closed") from exc

    async def aclose(self) -> None:
        if self._network._datagrams.get(self.address) is self:
            del self._network._datagrams[self.address]
        await self._in.aclose()
        await self._out.aclose()


class MemoryListener:
    """A bound in-memory address that accepts connections."""

    def __init__(self, network: MemoryNetwork, address: Address, max_frame_size: int) -> None:
        self._network = network
        self._address = address
        self.max_frame_size = max_frame_size
        self._accept_in, self._accept_out = anyio.create_memory_object_stream[MemoryConnection](128)

    @property
    def address(self) -> Address:
        return self._address

    async def serve(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        async def run(conn: Connection) -> None:
            await handler(conn)

        async with anyio.create_task_group() as tg:
            async for conn in self._accept_out:
                tg.start_soon(run, conn)

    async def aclose(self) -> None:
        if self._network._listeners.get(self._address) is self:
            del self._network._listeners[self._address]
        await self._accept_in.aclose()


class MemoryTransport:
    """The ``memory`` transport: one host of a :class:`MemoryNetwork`."""

    name = "memory"

    def __init__(
        self,
        network: MemoryNetwork | None = None,
        *,
        host: str = "127.0.0.1",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.network = network if network is not None else default_network()
        self.host = host
        self.max_frame_size = max_frame_size

    async def listen(self, address: Address) -> MemoryListener:
        await anyio.lowlevel.checkpoint()
        net = self.network
        if address.port == 0:
            address = Address(address.host, net._port())
        if address in net._listeners:
            raise AddressInUseError(f"cannot listen on {address}: address in use")
        listener = net._listeners[address] = MemoryListener(net, address, self.max_frame_size)
        return listener

    async def open_datagrams(self, address: Address) -> MemoryDatagrams:
        """The datagram channel at ``address`` (beside a listener), for failure detectors."""
        await anyio.lowlevel.checkpoint()
        if address in self.network._datagrams:
            raise AddressInUseError(f"datagrams already bound at {address}")
        endpoint = self.network._datagrams[address] = MemoryDatagrams(self.network, address)
        return endpoint

    async def connect(self, address: Address) -> MemoryConnection:
        await anyio.lowlevel.checkpoint()
        net = self.network
        if not net.can_talk(self.host, address.host):
            raise ConnectError(f"cannot connect to {address}: unreachable (partitioned)")
        listener = net._listeners.get(address)
        if listener is None:
            raise ConnectError(f"cannot connect to {address}: connection refused", refused=True)
        a_out, b_in = anyio.create_memory_object_stream[tuple[float, list[bytes]]](BATCHES_IN_FLIGHT)
        b_out, a_in = anyio.create_memory_object_stream[tuple[float, list[bytes]]](BATCHES_IN_FLIGHT)
        mine = MemoryConnection(net, self.host, str(address), address.host, a_out, a_in, self.max_frame_size)
        theirs = MemoryConnection(
            net, address.host, f"{self.host}:0", self.host, b_out, b_in, listener.max_frame_size
        )
        mine._peer, theirs._peer = theirs, mine
        try:
            listener._accept_in.send_nowait(theirs)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise ConnectError(f"cannot connect to {address}: not accepting") from exc
        return mine
