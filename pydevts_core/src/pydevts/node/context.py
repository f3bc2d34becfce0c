"""What a running node gives its router (internal).

Clients it serves are in ``clients.py``; lifecycle events queue in ``lifecycle.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..cluster.lifecycle import LIFECYCLE_QUEUE as LIFECYCLE_QUEUE
from ..cluster.lifecycle import LifecycleQueue
from ..errors import PydevtsError
from ..limits import ConnectionGuard, Limits, Ticket, address_key
from ..members import Member, MemberEvent, MemberState, MemberView
from ..observe.hooks import Observers
from ..observe.tracing import TraceLog
from ..protocols import (
    Address,
    Connection,
    ConnectionPlugin,
    DatagramEndpoint,
    KeepsStatistics,
    Listener,
    OpensDatagrams,
    Router,
    Serializer,
    Transport,
)
from ..ratelog import RateLimitedLog
from ..wire.datagrams import UdpEndpoint
from ..wire.handshake import open_link
from ..wire.keyring import Keyring
from ..wire.link import DEFAULT_HIGH_WATER, Link, Tail
from ..wire.link_writer import Pressure
from ..wire.messages import Hello
from ..wire.secure import SealedDatagrams
from ..wire.sessions import SessionTable
from .clients import CLIENT_PREFIX, serve_client
from .watch import Watching

if TYPE_CHECKING:
    from .dispatch import Dispatcher

__all__ = ["NodeContext"]

log = logging.getLogger("pydevts.node")


class NodeContext(Watching):
    """Implements :class:`~pydevts.protocols.RouterContext` for one running node."""

    dispatcher: Dispatcher

    def __init__(
        self,
        *,
        hello: Hello,
        members: MemberView,
        transport: Transport,
        router: Router,
        serializer: Serializer,
        plugins: Sequence[ConnectionPlugin],
        listener: Listener,
        task_group: TaskGroup,
        callbacks: list[Callable[[MemberEvent], Awaitable[None]]],
        handshake_timeout: float,
        keyring: Keyring | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.hello = hello
        self.keyring = keyring
        self._sealed: SealedDatagrams | None = None
        self._drops = RateLimitedLog(log)
        self.members = members
        self.transport = transport
        self.router = router
        self.serializer = serializer
        self.observers = Observers(plugins)
        self.plugins = self.observers.links  # the plugins that see links
        self.listener = listener
        self.task_group = task_group
        self.handshake_timeout = handshake_timeout
        self.lifecycle = LifecycleQueue(callbacks)
        self.clients: dict[str, Link] = {}
        self.client_active: dict[str, list[float]] = {}  # when each client last sent or got something
        self._reaper = anyio.CancelScope()
        self.guard = ConnectionGuard(limits or Limits())
        self.limits = self.guard.limits
        self.ratelog = RateLimitedLog(log)  # what peers can make this node say (limits, refusals)
        self.sessions = SessionTable(DEFAULT_HIGH_WATER)
        self.open_links: set[Link] = set()  # every handshaked link (bounded by the connection limits)
        self.traces = TraceLog(hello.node_id)
        self.trace_fanout = anyio.Lock()  # pydevts.trace for every member: one round at a time
        self.pressure = Pressure()

    @property
    def node_id(self) -> str:
        return self.hello.node_id

    @property
    def listen_address(self) -> Address:
        return self.listener.address

    async def emit_here_and_to_all(self, payload: dict[str, Any]) -> list[str]:
        """``pydevts emit``: the event goes to this node's handlers too; returns who it went to."""
        frame = self.event_frame(payload["name"], payload.get("payload"), payload.get("headers"), None)
        await self.send_frame(self.node_id, frame)
        others = [m.id for m in self.members if m.alive and m.id != self.node_id]
        await self.router.broadcast(frame)
        return [self.node_id, *others]

    async def open_datagrams(self) -> DatagramEndpoint:
        """The failure detector's datagram channel; sealed with the keyring when there is one."""
        endpoint: DatagramEndpoint
        if isinstance(self.transport, OpensDatagrams):
            endpoint = await self.transport.open_datagrams(self.listener.address)
        else:
            endpoint = UdpEndpoint.open(self.listener.address)
        if self.keyring is None:
            return endpoint
        sealed = SealedDatagrams(endpoint, self.keyring, on_drop=self._datagram_dropped)
        self._sealed = sealed
        return sealed

    def datagrams_dropped(self) -> int:
        """Datagrams the keyring refused (0 before the channel is open)."""
        return self._sealed.dropped if self._sealed is not None else 0

    def _datagram_dropped(self, why: str) -> None:
        self._drops.warning("secure.datagram", "dropped a datagram: %s", why)

    # ------------------------------------------------------------ router side

    async def connect(self, address: Address) -> Link:
        return await self.handshake(await self.transport.connect(address), initiated=True)

    async def handshake(self, conn: Connection, *, initiated: bool, ticket: Ticket | None = None) -> Link:
        """Run this node's handshake (with its plugins and checks) on a new connection.

        With the ``ticket`` of an accepted connection, a client over the
        client limits is refused (REFUSE says why).
        """
        check = self.check_peer
        if ticket is not None:

            def check(remote: Hello) -> str | None:
                reason = self.check_peer(remote)
                if reason is None and remote.role == "client":
                    reason = self.guard.client(ticket)
                return reason

        link = await open_link(
            conn,
            self.hello,
            initiated=initiated,
            plugins=self.plugins,
            timeout=self.handshake_timeout,
            check=check,
            keyring=self.keyring,
        )
        self.configure_link(link)
        return link

    def configure_link(self, link: Link) -> None:
        """Give ``link`` this node's limits (slow consumer, frame timeout), counters and log."""
        client = link.peer.role == "client" and not link.initiated
        link.stall_timeout = self.limits.slow_consumer_timeout if client else self.limits.slow_member_timeout
        link.on_limit = self._limit_hit
        link.ratelog = self.ratelog
        link.pressure = self.pressure
        if link not in self.open_links and not link.closed:
            self.open_links.add(link)
            link.when_closed(partial(self.open_links.discard, link))
        set_frame_timeout(link.conn, self.limits.frame_timeout)
        if (
            link.peer.role == "member"
            and link.local.extensions.get("resume")
            and link.peer.extensions.get("resume")
        ):
            link.attach(self.sessions.for_link(link))

    def link_statistics(self) -> dict[str, int]:
        """``links.*``: frames sent again after a link dropped, duplicates dropped, frames lost."""
        counters = {f"links.{key}": value for key, value in self.sessions.statistics().items()}
        counters["links.send_waits"] = self.pressure.waits  # sends that waited for room
        counters["links.send_wait_us"] = self.pressure.wait_us  # ... and how long, summed
        counters["links.queued_bytes"] = sum(link.queued_bytes for link in self.open_links)
        counters["inbox.queued_batches"] = self.dispatcher.queued_batches()
        counters["lifecycle.dropped"] = self.lifecycle_dropped
        return counters

    def _limit_hit(self, link: Link, kind: str, reason: str) -> None:
        counters = self.guard.counters
        if kind == "slow_consumer":
            counters.slow_consumers_cut += 1
        elif kind == "stalled_frame":
            counters.stalled_frames_closed += 1
        name = next((key for key, client in self.clients.items() if client is link), None)
        who = link.peer_id if name is None else f"{name} (says {link.peer_id!r})"
        where = link.conn.remote_address
        self.ratelog.warning(f"limits.{kind}", "closing link with %s (%s): %s", who, where, reason)

    def limit_statistics(self) -> dict[str, int]:
        """``limits.*`` counters, and the transport's own (``transport.*``) when it keeps any."""
        counters = self.guard.statistics()
        if isinstance(self.transport, KeepsStatistics):
            counters.update({f"transport.{k}": v for k, v in self.transport.statistics().items()})
        return counters

    def check_peer(self, remote: Hello) -> str | None:
        """Refuse a peer that claims the id of another live member, or a client's kind of id."""
        if remote.role != "client" and remote.node_id.startswith(CLIENT_PREFIX):
            return f"node ids starting with {CLIENT_PREFIX!r} are reserved for clients: {remote.node_id!r}"
        member = self.members.get(remote.node_id)
        if member is not None and member.alive and member.address != remote.address:
            return f"node id {remote.node_id!r} is already in use by the member at {member.address}"
        return None

    async def deliver(self, origin: str, frames: list[bytes]) -> Tail | None:
        return await self.dispatcher.deliver(origin, frames)

    def spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str = "") -> None:
        self.task_group.start_soon(func, *args, name=name or None)

    def update_member(self, member: Member) -> None:
        self._changed(self.members.upsert(member))

    def set_member_state(self, node_id: str, state: MemberState) -> None:
        self._changed(self.members.set_state(node_id, state))

    def _changed(self, event: MemberEvent | None) -> None:
        if event is None:
            return
        if event.kind in ("left", "failed"):
            self.sessions.drop(event.member.id, f"it {event.kind}")
            self.dispatcher.fail_pending(event.member.id, f"it {event.kind}")
            self.dispatcher.close_inbox(event.member.id)
        elif event.kind == "joined":
            self.dispatcher.revive(event.member.id)
        log.info("member %s %s (%s)", event.member.id, event.kind, event.member.address)
        self._queue(event)

    # ------------------------------------------------------------ node side

    async def send_frame(self, dest: str, frame: bytes) -> None:
        """Send a core frame to ``dest``; to this node itself, deliver it locally."""
        if dest == self.hello.node_id:
            tail = await self.dispatcher.deliver(dest, [frame])
            if tail is not None:
                self.spawn(tail)
        elif (client := self.clients.get(dest)) is not None:
            await client.send(frame)
            if (active := self.client_active.get(dest)) is not None:
                active[0] = anyio.current_time()  # a reply: the idle clock starts again
        else:
            await self.router.send(dest, frame)

    async def accept(self, conn: Connection) -> None:
        """A connection arrived: admit it (limits), handshake, then hand it to the router (or serve a client).

        Over a connection limit it is closed at once; to make room for it, the
        oldest handshake in progress of its address (or of the address with
        the most) may be dropped instead (:class:`~pydevts.limits.ConnectionGuard`).
        """
        remote = conn.remote_address
        ticket, dropped = self.guard.admit(address_key(remote))
        for old in dropped:
            if old.drop is not None:
                old.drop()
        if dropped:
            self.ratelog.warning(
                "limits.handshake_dropped",
                "dropped a handshake in progress from %s to make room for one from %s (limits: %d in "
                "progress, %d per address)",
                *(dropped[0].address, remote, self.limits.max_pending_handshakes),
                self.limits.max_connections_per_address,
            )
        if ticket is None:
            self.ratelog.warning(
                "limits.connection_refused",
                "refused a connection from %s at once: %d connections open (limit %d; %d per address)",
                *(remote, self.guard.open, self.limits.max_connections),
                self.limits.max_connections_per_address,
            )
            with anyio.CancelScope(shield=True):
                await close_quietly(conn)
            return
        link: Link | None = None
        with anyio.CancelScope() as scope:
            ticket.drop = scope.cancel
            try:
                link = await self.handshake(conn, initiated=False, ticket=ticket)
            except PydevtsError as exc:
                self.ratelog.warning("accept.refused", "refused a connection from %s: %s", remote, exc)
            except Exception:  # a bug must cost this connection, never the node
                log.exception("dropped a connection from %s after an internal error", remote)
        if link is None or ticket.role == "closed":  # failed, or dropped to make room
            self.guard.release(ticket)
            if link is not None:
                with anyio.CancelScope(shield=True):
                    await link.aclose("dropped to make room for a newer handshake")
            return
        try:
            if link.peer.role == "client":
                try:
                    await self.serve_client(link)
                finally:
                    self.guard.release(ticket)
                return
            self.guard.member(ticket)
            link.when_closed(lambda: self.guard.release(ticket))
            self.router.add_link(link)
        except Exception as exc:
            log.exception("dropped the link from %s after an internal error", link.peer_id)
            await link.aclose(f"internal error: {exc!r}")

    async def serve_client(self, link: Link) -> None:
        """Serve a one-off client (``role: client``) until its link closes (:mod:`pydevts.node.clients`)."""
        await serve_client(self, link)

    async def notify(self, event: MemberEvent) -> None:
        self._queue(event)

    def _queue(self, event: MemberEvent) -> None:
        self.lifecycle.put(event)
        if self.observers.member:
            self.observers.call(self.observers.member, event)

    @property
    def lifecycle_dropped(self) -> int:
        """Lifecycle events dropped because the queue was full (a callback stuck)."""
        return self.lifecycle.dropped

    async def run_lifecycle(self) -> None:
        await self.lifecycle.run()

    async def run_reaper(self, reap_after: float) -> None:
        """Drop members down for ``reap_after`` seconds (a ``reaped`` event each), until the node stops.

        The router's ``forget(node_id) -> bool`` drops its own state first;
        ``False`` keeps the member (the router still deals with it).
        """
        forget = self.router.forget
        with self._reaper:
            while True:
                await anyio.sleep(min(max(reap_after / 4, 0.05), 60.0))
                for member in self.members.due(reap_after):
                    try:
                        if forget(member.id) is False:
                            continue
                    except Exception:  # a router's bug must not stop the node
                        log.exception("router %r failed to forget %s", self.router, member.id)
                    self.members.drop(member.id)
                    self.sessions.drop(member.id, "reaped")
                    self.dispatcher.forget(member.id)
                    log.info("reaped member %s (%s for %g s)", member.id, member.state.value, reap_after)
                    self._queue(MemberEvent("reaped", member))

    def stop_reaper(self) -> None:
        self._reaper.cancel()

    async def drain_lifecycle(self) -> None:
        """Wait (briefly) until queued lifecycle events have been handled."""
        await self.lifecycle.drain()


def set_frame_timeout(conn: Connection, seconds: float) -> None:
    """Set ``frame_timeout`` on ``conn`` and what it wraps (``inner``), where the transport offers it."""
    layer: Any = conn
    while layer is not None:
        if hasattr(layer, "frame_timeout"):
            layer.frame_timeout = seconds
        layer = getattr(layer, "inner", None)


async def close_quietly(conn: Connection) -> None:
    try:
        await conn.aclose()
    except Exception:
        pass
