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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .dispatch import Dispatcher, Fallback, Handler
from .errors import ConfigurationError, LocalProtocolError
from .framing import DEFAULT_MAX_FRAME_SIZE
from .handlers import SYSTEM_PREFIX, F, check_event_name, class_handlers, handler
from .join import JoinResult, join_or_start
from .members import Member, MemberEvent, MemberView
from .node_context import NodeContext
from .plugins import Choices, Registry
from .protocols import Address, ConnectionPlugin, Router, Serializer, Transport
from .settings import (
    advertise_host_for,
    checked_tags,
    default_cluster_host,
    parse_advertise,
)
from .wire import Hello, encode_event

__all__ = ["Node", "handler"]

log = logging.getLogger("pydevts.node")

LifecycleCallback = Callable[[MemberEvent], Awaitable[None]]


class Node:
    """A member of a pydevts cluster.

    :param cluster_port: the port to join through; if nothing answers there
        (on ``cluster_host``) this node starts a new cluster and serves it.
    :param host: bind address of this node's listener.
    :param port: this node's own port when it joins (0: any free port).
    :param advertise: ``HOST`` or ``HOST:PORT`` other nodes should use to
        reach this one, when it differs from the bound address (NAT, containers).
    :param cluster: cluster name; nodes of another cluster are refused.
    :param join_only: never start a new cluster; fail if nobody answers.
    :param max_frame_size: largest frame sent or accepted, in bytes.
    :param reap_after: seconds a member that left or failed stays in the
        member view before it is dropped (a ``reaped`` lifecycle event).
    :param transport_options: settings for a transport chosen by name (e.g.
        the quic transport's ``certfile``/``cafile``); ``router_options`` and
        ``serializer_options`` likewise (e.g. the hop router's ``dead_interval``).
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
        router: str | Router = "peer",
        router_options: Mapping[str, Any] | None = None,
        serializer: str | Serializer = "msgpack",
        serializer_options: Mapping[str, Any] | None = None,
        connection_plugins: Sequence[str | ConnectionPlugin] = (),
        join_only: bool = False,
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
        self.id = node_id or os.urandom(6).hex()
        self.cluster = cluster
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
        )
        self._handlers: dict[str, Handler] = {}
        self._unhandled: Fallback | None = None
        self._lifecycle: list[LifecycleCallback] = []
        self._tg: TaskGroup | None = None
        self._running = False
        #: True when this node found nothing at the cluster port and started a new cluster.
        self.started_cluster = False
        self._stopped = anyio.Event()
        self._handlers.update(class_handlers(self))
        self._handlers[f"{SYSTEM_PREFIX}members"] = self._system_members
        self._handlers[f"{SYSTEM_PREFIX}emit"] = self._system_emit

    # ----------------------------------------------------------- handlers

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator: register ``async def handler(sender, payload)`` for event ``name``.

        For a request, the handler's return value is the reply. One handler
        per name; registering again replaces it.
        """

        def register(func: F) -> F:
            self.add_handler(name, func)
            return func

        return register

    def add_handler(self, name: str, func: Handler) -> None:
        """Register ``func`` for event ``name`` (see :meth:`on`)."""
        self._handlers[check_event_name(name)] = func

    def on_unhandled(self, func: Fallback) -> Fallback:
        """Decorator: ``async def callback(name, sender, payload)`` for each event no handler takes
        (``pydevts node --print-events``). Requests without a handler still get NoHandlerError."""
        self._unhandled = func
        if (ctx := getattr(self, "_ctx", None)) is not None:  # started (or starting)
            ctx.dispatcher.fallback = func
        return func

    # System requests, answered by every node (``pydevts members``/``emit`` use them).

    async def _system_members(self, sender: str, payload: Any) -> list[dict[str, object]]:
        return [m.to_dict() for m in self.members]

    async def _system_emit(self, sender: str, payload: Any) -> dict[str, Any]:
        # PermissionError: the dispatcher answers it as a refusal (counted, logged rate-limited).
        ctx = self._require_running()
        if sender != self.id and sender not in ctx.clients:
            raise PermissionError(f"{SYSTEM_PREFIX}emit is for clients of this node, not for {sender!r}")
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise ValueError("expected {'name': str, 'payload': ...}")
        if (name := payload["name"]).startswith(SYSTEM_PREFIX):  # never re-enters system handling
            raise PermissionError(f"event names starting with {SYSTEM_PREFIX!r} are reserved: {name!r}")
        return {"sent_to": await ctx.emit_here_and_to_all(payload)}

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

    def statistics(self) -> dict[str, int]:
        """Counters: events received/unhandled, handler errors, requests served, bad frames;
        plus the router's own counters (prefixed ``router.``) when it keeps any."""
        ctx = self._require_running()
        counters = dict(vars(ctx.dispatcher.stats))
        router_stats = getattr(ctx.router, "statistics", None)
        if router_stats is not None:
            counters.update({f"router.{k}": v for k, v in router_stats().items()})
        return counters

    # ----------------------------------------------------------- messaging

    async def emit(self, name: str, payload: Any = None) -> None:
        """Send event ``name`` to every other live member (not to this node).

        Members that join after the call do not get it; a member that fails
        while it is being sent may or may not. Waits only for queue space.
        """
        ctx = self._require_running()
        await ctx.router.broadcast(encode_event(name, ctx.serializer.dumps(payload)))

    async def send(self, node_id: str, name: str, payload: Any = None) -> None:
        """Send event ``name`` to one member; raise UnknownNodeError if it is not one."""
        ctx = self._require_running()
        await ctx.send_frame(node_id, encode_event(name, ctx.serializer.dumps(payload)))

    async def request(
        self, node_id: str, name: str, payload: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Send a request and return the reply of the remote handler.

        Raises RequestTimeoutError (no reply within ``timeout``, default
        ``request_timeout``), UnknownNodeError (no such member, or it left
        before replying), NoHandlerError, or RemoteHandlerError.
        """
        ctx = self._require_running()
        deadline = self.request_timeout if timeout is None else timeout
        return await ctx.dispatcher.request(node_id, name, payload, deadline)

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
            await self._start(tg)
        except BaseException:
            # Report the start failure itself, not a task-group wrapper around it.
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
        ctx.dispatcher.fail_pending(None, "this node stopped")
        with anyio.move_on_after(self.handshake_timeout):
            await ctx.router.stop()
        await ctx.listener.aclose()
        closer = getattr(ctx.transport, "aclose", None)
        if closer is not None:  # e.g. QUIC: let closed connections deliver what they were given
            await closer()
        await ctx.drain_lifecycle()
        log.info("node %s stopped", self.id)
        self._stopped.set()

    async def _run_lifecycle(self, ctx: NodeContext) -> None:
        # Shielded until __aexit__ ends it: when a cancellation (Ctrl-C) stops the node,
        # the runner is not cancelled with the rest, so "stopping" still reaches the
        # callbacks and stop() does not wait its 1 s for a runner that is gone.
        with self._lifecycle_scope:
            await ctx.run_lifecycle()

    async def _start(self, tg: TaskGroup) -> None:
        transport, router, serializer, plugins = self._choices.resolve(max_frame_size=self.max_frame_size)
        advertise_host = await advertise_host_for(
            self.host, self._advertise_host_given, toward=self.cluster_address.host
        )

        # Incarnations start from the clock, so a restarted node always comes
        # back newer than the one the cluster remembers.
        incarnation = time.time_ns() // 1_000_000

        def make_hello(bound: Address) -> Hello:
            return Hello(
                cluster=self.cluster,
                node_id=self.id,
                address=str(Address(advertise_host or bound.host, self._advertise_port or bound.port)),
                serializer=serializer.name,
                tags=dict(self.tags),
                extensions={"incarnation": incarnation, "router": router.name},
            )

        joined = await join_or_start(
            transport,
            cluster_address=self.cluster_address,
            bind_host=self.host,
            port=self.port,
            make_hello=make_hello,
            join_only=self.join_only,
            plugins=plugins,
            handshake_timeout=self.handshake_timeout,
            join_timeout=self.join_timeout,
        )
        try:
            await self._begin(tg, joined, make_hello, transport, router, serializer, plugins)
        except BaseException:
            with anyio.CancelScope(shield=True):
                if joined.entry is not None:
                    await joined.entry.aclose("start failed")
                await joined.listener.aclose()
            raise

    async def _begin(
        self,
        tg: TaskGroup,
        joined: JoinResult,
        make_hello: Callable[[Address], Hello],
        transport: Transport,
        router: Router,
        serializer: Serializer,
        plugins: list[ConnectionPlugin],
    ) -> None:
        self.started_cluster = joined.entry is None
        hello = make_hello(joined.listener.address)
        members = MemberView(
            Member(self.id, hello.address, dict(self.tags), incarnation=hello.extensions["incarnation"]),
            clock=anyio.current_time,
        )
        self._ctx = ctx = NodeContext(
            hello=hello,
            members=members,
            transport=transport,
            router=router,
            serializer=serializer,
            plugins=plugins,
            listener=joined.listener,
            task_group=tg,
            callbacks=self._lifecycle,
            handshake_timeout=self.handshake_timeout,
        )
        ctx.dispatcher = Dispatcher(self.id, serializer, ctx.send_frame, tg)
        ctx.dispatcher.handlers = self._handlers
        ctx.dispatcher.fallback = self._unhandled
        tg.start_soon(self._run_lifecycle, ctx, name="pydevts lifecycle")
        tg.start_soon(ctx.run_reaper, self.reap_after, name="pydevts reaper")
        where = joined.listener.address
        if joined.entry is None:
            log.info("node %s started a new cluster %r on cluster port %s", self.id, self.cluster, where)
        else:
            via = self.cluster_address
            log.info(
                "node %s joined cluster %r through cluster port %s; listening on %s",
                *(self.id, self.cluster, via, where),
            )
        await router.start(ctx, joined.entry)
        tg.start_soon(joined.listener.serve, ctx.accept, name="pydevts listener")
        self._running = True
        await ctx.notify(MemberEvent("started", members.local))
