"""The extension protocols: Transport, Router, Serializer, ConnectionPlugin, and optional capabilities.

Implementations are plain classes; they need not inherit from anything here.
They are found by name through the hooks in :mod:`pydevts.plugins.hookspecs`.

Layers, bottom up::

    Transport   reliable, ordered, framed connections between addresses (bytes)
    Link        (core) a connection after the handshake, with the plugin pipeline
    Router      topology and delivery: which links exist, how a frame reaches a node
    Node        (core) events, requests, handlers, members
    Serializer  event payloads <-> bytes, one per cluster

The router boundary: most routers are *decision machines*
(:class:`pydevts.routing.RouterMachine`): they decide, and core's link host
(:class:`pydevts.routing.LinkHost`, which implements :class:`Router` below)
owns the links and does the IO. :class:`Router` and :class:`RouterContext`
are for routers that bring their own IO (a broker-backed router with no
direct links, say), and are what the node itself talks to.

Optional capabilities are declared by implementing a small protocol
(:class:`SendsWithoutWaiting`, :class:`OpensDatagrams`, :class:`ClosesLast`,
:class:`KeepsStatistics`); core checks them with ``isinstance``, once, never
by looking attributes up by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .address import MAX_ADDRESS_CHARS as MAX_ADDRESS_CHARS
from .address import MAX_HOST_CHARS as MAX_HOST_CHARS
from .address import Address

if TYPE_CHECKING:
    from .members import Member, MemberState, MemberView
    from .wire.link import Link
    from .wire.messages import Hello

__all__ = [
    "Address",
    "ClosesLast",
    "Connection",
    "ConnectionInfo",
    "ConnectionPlugin",
    "DatagramEndpoint",
    "KeepsStatistics",
    "Listener",
    "OpensDatagrams",
    "Router",
    "RouterContext",
    "SendsWithoutWaiting",
    "Serializer",
    "Transport",
]


# --------------------------------------------------------------------------
# Transport: bytes
# --------------------------------------------------------------------------


@runtime_checkable
class Connection(Protocol):
    """A reliable, ordered, framed, bidirectional connection.

    Frames are whole ``bytes`` objects; the transport preserves their
    boundaries and order. ``max_frame_size`` is enforced in both directions:
    :meth:`send_frames` raises :class:`~pydevts.errors.FrameTooLargeError`
    before writing anything, and a peer announcing a larger frame makes
    :meth:`receive_frames` raise :class:`~pydevts.errors.RemoteProtocolError`.

    Optional fast path: :class:`SendsWithoutWaiting`.
    """

    max_frame_size: int

    @property
    def remote_address(self) -> str:
        """Printable address of the other end (for logs)."""
        ...

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write all ``frames``, in order, in as few writes as possible."""
        ...

    async def receive_frames(self) -> list[bytes]:
        """Wait for and return one or more whole frames, in order.

        Raises :class:`~pydevts.errors.ConnectionClosedError` at end of stream.
        """
        ...

    async def aclose(self) -> None:
        """Close the connection; pending writes are abandoned. Idempotent."""
        ...


@runtime_checkable
class Listener(Protocol):
    """A bound listening endpoint. Binding happened when it was created."""

    @property
    def address(self) -> Address:
        """The address actually bound (the real port when 0 was asked)."""
        ...

    async def serve(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        """Accept connections forever, running ``handler`` for each in its own task.

        The handler owns the connection and must close it.
        """
        ...

    async def aclose(self) -> None:
        """Stop listening. Idempotent."""
        ...


@runtime_checkable
class DatagramEndpoint(Protocol):
    """An unreliable, unordered datagram channel (for failure-detector probes)."""

    def send(self, data: bytes, address: Address) -> None:
        """Send now or drop; never waits, never raises for a lost datagram."""
        ...

    async def receive(self) -> bytes:
        """The next datagram; ConnectionClosedError once closed."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Makes connections and listeners. Registered under a name (``tcp``)."""

    name: str

    async def listen(self, address: Address) -> Listener:
        """Bind ``address`` now; raise :class:`~pydevts.errors.AddressInUseError` if taken."""
        ...

    async def connect(self, address: Address) -> Connection:
        """Connect; raise :class:`~pydevts.errors.ConnectError` if nothing answers."""
        ...

    # Optional: OpensDatagrams, ClosesLast, KeepsStatistics (below).


# --------------------------------------------------------------------------
# Optional capabilities (declared by implementing the method; checked with isinstance)
# --------------------------------------------------------------------------


@runtime_checkable
class SendsWithoutWaiting(Protocol):
    """A :class:`Connection` that can write from the caller's task.

    ``send_frames_nowait(frames)`` writes without waiting, keeps whatever the
    transport would not take at once, writes that first on the next
    ``send_frames``, and returns ``False`` if it kept anything. Links use it
    to send requests and replies from the caller's task, saving a task switch
    per round trip.
    """

    def send_frames_nowait(self, frames: Sequence[bytes]) -> bool: ...


@runtime_checkable
class OpensDatagrams(Protocol):
    """A :class:`Transport` with a datagram channel of its own, bound beside its listener.

    Without it, failure detectors use UDP on the listener's port.
    """

    async def open_datagrams(self, address: Address) -> DatagramEndpoint: ...


@runtime_checkable
class ClosesLast(Protocol):
    """A :class:`Transport` awaited last when a node stops.

    A transport that delivers after ``Connection.aclose`` in tasks of its own
    (QUIC) waits there, bounded, until it has.
    """

    async def aclose(self) -> None: ...


@runtime_checkable
class KeepsStatistics(Protocol):
    """A :class:`Transport` that keeps counters (``Node.statistics()`` shows them as ``transport.*``)."""

    def statistics(self) -> Mapping[str, int]: ...


# --------------------------------------------------------------------------
# Serializer: payloads
# --------------------------------------------------------------------------


@runtime_checkable
class Serializer(Protocol):
    """Encodes event payloads. Every node of a cluster must use the same one."""

    name: str

    def dumps(self, obj: Any) -> bytes:
        """Encode; raise :class:`~pydevts.errors.SerializationError` naming a bad type."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode; raise :class:`~pydevts.errors.SerializationError` on bad input."""
        ...


# --------------------------------------------------------------------------
# Connection plugins: observe or transform every frame of every link
# --------------------------------------------------------------------------


class ConnectionInfo(NamedTuple):
    """What a connection plugin knows about a link."""

    local_id: str
    peer_id: str
    peer_address: str
    initiated: bool
    peer_tags: Mapping[str, str]


@runtime_checkable
class ConnectionPlugin(Protocol):
    """A plugin that sees every link of a node.

    ``on_open`` may refuse the link by raising any exception (its message is
    logged and sent to the peer). ``on_frame_out``/``on_frame_in`` return the
    frame to pass on (possibly transformed) or ``None`` to drop it. They are
    called on the hot path: keep them cheap.
    """

    name: str

    def on_open(self, info: ConnectionInfo) -> None: ...

    def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None: ...

    def on_frame_in(self, info: ConnectionInfo, frame: bytes) -> bytes | None: ...

    def on_close(self, info: ConnectionInfo, reason: str | None) -> None: ...


# --------------------------------------------------------------------------
# Router: topology and delivery
# --------------------------------------------------------------------------


class RouterContext(Protocol):
    """What the node gives its router (the link host, or a router with IO of its own).

    The router owns links; the node owns none.
    """

    @property
    def node_id(self) -> str: ...

    @property
    def hello(self) -> Hello:
        """This node's own handshake record (id, address, tags, ...)."""
        ...

    @property
    def listen_address(self) -> Address:
        """The address this node's listener is bound to (a router may bind beside it)."""
        ...

    @property
    def members(self) -> MemberView:
        """Read-only use: change members through the two methods below."""
        ...

    def update_member(self, member: Member) -> None:
        """Record a member (new, changed, or back); the node raises the lifecycle events."""
        ...

    def set_member_state(self, node_id: str, state: MemberState) -> None:
        """Mark a member left/failed/suspect/alive; pending requests to it fail if it is gone."""
        ...

    async def connect(self, address: Address) -> Link:
        """Open a transport connection, run the handshake and the plugin pipeline."""
        ...

    def relayed(self, origin: str, frame: bytes, to: str) -> None:
        """The router passed ``origin``'s core ``frame`` on to its neighbour ``to``.

        Routers that relay other nodes' messages call it so that plugins
        (``Plugin.on_relay``) and traces see relays; it costs a check when
        nobody watches.
        """
        ...

    def dropped(self, origin: str, frame: bytes, reason: str) -> None:
        """The router dropped ``origin``'s core ``frame`` (hop limit, no route, a full link)."""
        ...

    async def deliver(
        self, origin: str, frames: list[bytes]
    ) -> Callable[[], Coroutine[Any, Any, None]] | None:
        """Hand core messages (kinds below ``0x40``) from ``origin`` up to the node.

        May wait: this is where a slow handler pushes back on the sender. May
        return a *tail* (a request to answer now), which the router passes
        back as the return value of its ``Link.run`` frames handler.
        """
        ...

    async def open_datagrams(self) -> DatagramEndpoint:
        """A datagram channel bound beside this node's listener (for probes)."""
        ...

    def spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str = "") -> None:
        """Run ``func(*args)`` in the node's task group."""
        ...


@runtime_checkable
class Router(Protocol):
    """Owns topology: which links to open, and how a frame reaches one node or all.

    Implemented by core's :class:`~pydevts.routing.LinkHost` for every
    :class:`~pydevts.routing.RouterMachine`; implement it directly only for a
    router that brings its own IO (``docs/writing-a-router.md``, last section).

    Frames whose first byte is ``0x40`` or above belong to the router; lower
    kinds are core messages that the router hands to
    :meth:`RouterContext.deliver` at their destination.
    """

    name: str

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        """Begin routing. ``entry`` is the link we joined through (``None``: new cluster)."""
        ...

    def add_link(self, link: Link) -> None:
        """Adopt an incoming link whose handshake succeeded."""
        ...

    async def send(self, dest: str, frame: bytes) -> None:
        """Send one core message to ``dest``; raise UnknownNodeError if unreachable."""
        ...

    async def broadcast(self, frame: bytes) -> None:
        """Send one core message to every other live member, once each."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """This node's tags changed: tell the other members."""
        ...

    async def stop(self) -> None:
        """Announce leave, flush and close every link."""
        ...

    def forget(self, node_id: str) -> bool:
        """The node is about to reap ``node_id`` (down, left or failed, for ``reap_after`` s).

        A plain method (it must not block): drop what the router still keeps
        about it and return True, or return False to keep the member (the
        router has news of it, e.g. it is alive again but not linked yet). A
        member that comes back after being reaped is learned anew, as a newcomer.
        """
        ...

    def statistics(self) -> Mapping[str, int]:
        """The router's counters (``Node.statistics()`` shows them as ``router.*``); may be empty."""
        ...
