"""The Node: the public face of pydevts.

A node joins a cluster through a cluster port (or starts one there), then
sends and receives named events::

    node = Node(7000)

    @node.on("greet")
    async def greet(sender: str, payload: object) -> str:
        return f"hello {sender}"

    async with node:                       # joins; leaves on exit
        await node.emit("greet", {"n": 1})          # every other member
        await node.send(other_id, "greet", None)    # one member
        reply = await node.request(other_id, "greet", None, timeout=2)

``async with node`` runs the node in a task group of its own, inside whatever
task group the caller is in; :meth:`Node.serve` is the same for
``task_group.start(node.serve)``. Subclasses add handlers with
:func:`pydevts.handler` on methods (custom node types).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..cluster.snapshot import load_snapshot, snapshot_of
from ..cluster.snapshot import save as save_snapshot
from ..errors import ConfigurationError, LocalProtocolError
from ..headers import EMPTY
from ..limits import Limits
from ..members import Member, MemberEvent
from ..plugins.choices import Choices
from ..plugins.registry import Registry
from ..protocols import Address, ClosesLast, ConnectionPlugin, Router, Serializer, Transport
from ..routing.machine import RouterMachine
from ..settings import (
    checked_interval,
    checked_node_id,
    checked_seeds,
    checked_tags,
    default_cluster_host,
    parse_advertise,
)
from ..wire.framing import DEFAULT_MAX_FRAME_SIZE
from ..wire.keyring import Keyring
from ..wire.secure import require_cryptography
from .context import NodeContext
from .dispatch import Fallback, Handler
from .handlers import F, check_event_name, check_handler, class_handlers, handler, takes_headers
from .messaging import Messaging
from .start import start_node
from .system import system_handlers

__all__ = ["Node", "handler"]

log = logging.getLogger("pydevts.node")

LifecycleCallback = Callable[[MemberEvent], Awaitable[None]]


class Node(Messaging):
    """A member of a pydevts cluster.

    :param cluster_port: the port to join through; if nothing answers there
        (on ``cluster_host``) this node starts a new cluster and serves it.
    :param host: bind address of this node's listener.
    :param port: this node's own port when it joins (0: any free port).
    :param advertise: ``HOST`` or ``HOST:PORT`` other nodes should use to
        reach this one, when it differs from the bound address (NAT, containers).
    :param cluster: cluster name; nodes of another cluster are refused.
    :param join_only: never start a new cluster; fail if nobody answers.
    :param seeds: more ways in (``HOST:PORT`` or :class:`Address`, at most 64):
        joining tries the cluster port, then each seed, and starts a new
        cluster only if none answers; every member probes them (and the
        cluster port) every ``merge_interval`` to merge islands.
    :param retry_join: keep trying the cluster port and the seeds, with
        backoff, until one answers (no ``join_timeout``; join-only does not fail).
    :param merge_interval: seconds (±20 %) between a member's probes of the
        cluster port and seeds for another island of its cluster; 0 disables.
    :param snapshot: a file where the node keeps its id and the members it
        knows, so that a restarted node rejoins through them when every seed
        is gone (see ``docs/architecture.md``, "Seeds, merging and snapshots");
        the node takes the snapshot's id unless ``node_id`` is given.
    :param max_frame_size: largest frame sent or accepted, in bytes.
    :param reap_after: seconds a member that left or failed stays in the
        member view before it is dropped (a ``reaped`` lifecycle event).
    :param transport_options: settings for a transport chosen by name (e.g.
        the quic transport's ``certfile``/``cafile``); ``router_options`` and
        ``serializer_options`` likewise (e.g. the hop router's ``dead_interval``).
    :param keyring: the cluster's keys (a :class:`~pydevts.wire.keyring.Keyring`,
        the path of a keyring file, or a list of keys): peers must prove they
        hold one before anything else, and links and probes are encrypted.
        Without one the cluster is open (see ``docs/security.md``).
    :param limits: what peers may cost this node (connections, handshakes,
        idle and slow clients, requests in flight); :class:`~pydevts.limits.Limits`
        holds every default, ``docs/architecture.md`` ("Limits") says why.
    """

    def __init__(
        self,
        cluster_port: int = 7000,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cluster_host: str | None = None,
        advertise: str | None = None,
        cluster: str = "default",
        node_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        transport: str | Transport = "tcp",
        transport_options: Mapping[str, Any] | None = None,
        router: str | RouterMachine | Router = "peer",
        router_options: Mapping[str, Any] | None = None,
        serializer: str | Serializer = "msgpack",
        serializer_options: Mapping[str, Any] | None = None,
        connection_plugins: Sequence[str | ConnectionPlugin] = (),
        plugin_options: Mapping[str, Mapping[str, Any]] | None = None,
        keyring: Keyring | str | os.PathLike[str] | Sequence[bytes | str] | None = None,
        limits: Limits | None = None,
        join_only: bool = False,
        seeds: Sequence[str | Address] = (),
        retry_join: bool = False,
        merge_interval: float = 30.0,
        snapshot: str | os.PathLike[str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        request_timeout: float = 10.0,
        handshake_timeout: float = 5.0,
        join_timeout: float = 10.0,
        reap_after: float = 24 * 3600.0,
        registry: Registry | None = None,
    ) -> None:
        if max_frame_size < 1024:
            raise ConfigurationError(f"max_frame_size must be at least 1024 bytes, got {max_frame_size}")
        if not (math.isfinite(reap_after) and reap_after > 0):
            raise ConfigurationError(f"reap_after must be a positive number of seconds, got {reap_after!r}")
        self.reap_after = reap_after
        self.seeds = checked_seeds(seeds)
        self.retry_join = retry_join
        self.merge_interval = checked_interval("merge_interval", merge_interval, zero=True)
        self.limits = (limits if limits is not None else Limits()).resolve()
        self.keyring = Keyring.coerce(keyring)
        if self.keyring is not None:
            require_cryptography()  # fail now, not at the first connection
        self.cluster = cluster
        self.snapshot = snapshot
        remembered = load_snapshot(snapshot, cluster=cluster, max_age=reap_after) if snapshot else None
        self._remembered = remembered.addresses if remembered is not None else []
        if node_id is not None:  # an id given wins over the snapshot's
            self.id = checked_node_id(node_id)
        else:
            self.id = remembered.node_id if remembered is not None else os.urandom(6).hex()
        self.cluster_address = Address(cluster_host or default_cluster_host(host), cluster_port)
        self.host = host
        self.port = port
        self.advertise = advertise
        self._advertise_host_given, self._advertise_port = parse_advertise(advertise)
        self.tags: dict[str, str] = checked_tags(tags or {})
        self.join_only = join_only
        self.max_frame_size = max_frame_size
        self.request_timeout = request_timeout
        self.handshake_timeout = handshake_timeout
        self.join_timeout = join_timeout
        self._choices = Choices(
            transport,
            router,
            serializer,
            list(connection_plugins),
            {
                "transport": dict(transport_options or {}),
                "router": dict(router_options or {}),
                "serializer": dict(serializer_options or {}),
            },
            registry,
            dict(plugin_options or {}),
        )
        self._plugins: dict[str, object] = {}  # set at start: every plugin made, by name
        self._plugins_started = False  # their on_start ran: on_stop runs at stop or a failed start
        self._handlers: dict[str, Handler] = {}
        self._header_handlers: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._unhandled: Fallback | None = None
        self._lifecycle: list[LifecycleCallback] = []
        self._tg: TaskGroup | None = None
        self._ctx: NodeContext  # set by start_node (node_start.py)
        self._running = False
        #: True when this node found nothing at the cluster port and started a new cluster.
        self.started_cluster = False
        self._stopped = anyio.Event()
        for name, func in class_handlers(self).items():
            self._register(name, func)
        self._handlers.update(system_handlers(self))

    # ----------------------------------------------------------- handlers

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator: register ``async def handler(sender, payload)`` for event ``name``.

        For a request, the handler's return value is the reply (a
        :class:`~pydevts.Reply` to send headers with it). A handler that
        declares a ``headers`` parameter (``async def handler(sender,
        payload, *, headers)``) gets the message's headers (a read-only
        mapping, empty when it has none). One handler per name; registering
        again replaces it.
        """

        def register(func: F) -> F:
            self.add_handler(name, func)
            return func

        return register

    def add_handler(self, name: str, func: Handler) -> None:
        """Register ``func`` for event ``name`` (see :meth:`on`); TypeError if it is not
        ``async def handler(sender, payload)``."""
        check_handler(name, func)
        self._register(check_event_name(name), func)

    def _register(self, name: str, func: Callable[..., Awaitable[Any]]) -> None:
        self._handlers[name] = func
        self._header_handlers.pop(name, None)
        if takes_headers(func):  # async def handler(sender, payload, *, headers)
            self._header_handlers[name] = func
            self._handlers[name] = partial(func, headers=EMPTY)

    def on_unhandled(self, func: Fallback) -> Fallback:
        """Decorator: ``async def callback(name, sender, payload)`` for each event no handler takes
        (``pydevts node --print-events``). Requests without a handler still get NoHandlerError."""
        self._unhandled = func
        if (ctx := getattr(self, "_ctx", None)) is not None:  # started (or starting)
            ctx.dispatcher.fallback = func
        return func

    def on_lifecycle(self, func: LifecycleCallback) -> LifecycleCallback:
        """Decorator: ``async def callback(event: MemberEvent)`` for every lifecycle event.

        Kinds: ``started``, ``stopping`` (this node), ``joined``, ``left``,
        ``failed``, ``updated``, ``reaped`` (other members). Callbacks run one
        at a time, in order, in a task of their own, a moment after the change.
        """
        self._lifecycle.append(func)
        return func

    # ----------------------------------------------------------- members

    @property
    def members(self) -> list[Member]:
        """Every member this node knows, itself included, with its state."""
        return sorted(self._ctx.members, key=lambda m: m.id) if self._running else []

    def find(self, **tags: str) -> list[Member]:
        """Live members (other than this one) whose tags include all of ``tags``."""
        return [
            m
            for m in self.members
            if m.alive and m.id != self.id and all(m.tags.get(k) == v for k, v in tags.items())
        ]

    def set_tags(self, **tags: str) -> None:
        """Replace this node's tags; the other members learn of it (an ``updated`` event)."""
        self.tags = checked_tags(tags)
        if self._running:
            ctx = self._ctx
            ctx.hello = replace(ctx.hello, tags=dict(self.tags))
            ctx.members.set_local(replace(ctx.members.local, tags=dict(self.tags)))
            ctx.router.set_tags(self.tags)

    @property
    def address(self) -> str:
        """The advertised address other nodes use to reach this one."""
        return self._require_running().hello.address

    def _require_running(self) -> NodeContext:
        if not self._running:
            raise LocalProtocolError(
                "the node is not running: use `async with node:` or `await node.serve()`"
            )
        return self._ctx

    # ----------------------------------------------------------- running

    async def __aenter__(self) -> Node:
        if self._running or self._tg is not None:
            raise LocalProtocolError("this node is already running")
        self._stopped = anyio.Event()
        self._lifecycle_scope = anyio.CancelScope(shield=True)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await start_node(self, tg)
        except BaseException:
            # Report the start failure itself, not a task-group wrapper around it.
            self._running = False
            self._stop_plugins()
            self._tg = None
            self._lifecycle_scope.cancel()
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(None, None, None)
            except Exception:
                log.debug("error while cleaning up a failed start", exc_info=True)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        with anyio.CancelScope(shield=True):
            await self.stop()
        self._lifecycle_scope.cancel()
        tg.cancel_scope.cancel()
        if isinstance(exc_info[1], Exception):
            # The body's own error (UnknownNodeError, ValueError, ...): let it out as it is,
            # not wrapped in an exception group by the node's task group.
            await tg.__aexit__(None, None, None)
            return False
        return await tg.__aexit__(*exc_info)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[Node] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or :meth:`stop`; for ``await task_group.start(node.serve)``."""
        async with self:
            task_status.started(self)
            await self._stopped.wait()

    async def stop(self) -> None:
        """Leave the cluster gracefully: tell the others, flush, close. Idempotent."""
        if not self._running:
            return
        self._running = False
        ctx = self._ctx
        ctx.stop_reaper()
        await ctx.notify(MemberEvent("stopping", ctx.members.local))
        self._stop_plugins()
        ctx.dispatcher.fail_pending(None, "this node stopped")
        if self.snapshot:  # the members as they are now, for the next start
            last = snapshot_of(self.cluster, ctx.members)
            if await anyio.to_thread.run_sync(save_snapshot, self.snapshot, last):
                self._remembered = last.addresses
        with anyio.move_on_after(self.handshake_timeout):
            await ctx.router.stop()
        await ctx.listener.aclose()
        if isinstance(ctx.transport, ClosesLast):  # e.g. QUIC: let closed connections deliver
            await ctx.transport.aclose()
        await ctx.drain_lifecycle()
        log.info("node %s stopped", self.id)
        self._stopped.set()

    def _stop_plugins(self) -> None:
        """Each plugin's ``on_stop``, once, if their ``on_start`` ran (at stop, or a failed start)."""
        if self._plugins_started:
            self._plugins_started = False
            self._ctx.observers.call(self._ctx.observers.stop, self)

    async def _run_lifecycle(self, ctx: NodeContext) -> None:
        # Shielded until __aexit__ ends it: when a cancellation (Ctrl-C) stops the node,
        # the runner is not cancelled with the rest, so "stopping" still reaches the
        # callbacks and stop() does not wait its 1 s for a runner that is gone.
        with self._lifecycle_scope:
            await ctx.run_lifecycle()
