"""Starting a node: plugins, join or start, the node context, the router (internal).

Split from :mod:`pydevts.node` so that the public class stays readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from ..cluster.join import JoinResult, join_or_start
from ..cluster.merge import run_merge
from ..cluster.snapshot import run_snapshots
from ..cluster.views import agree_with
from ..errors import ConfigurationError
from ..members import Member, MemberEvent, MemberView
from ..observe.hooks import Observers
from ..protocols import Address, ConnectionPlugin, Router, Serializer, Transport
from ..routing.host import LinkHost
from ..routing.machine import RouterMachine
from ..settings import advertise_host_for
from ..wire.keyring import check_open_mode, warn_open_mode
from ..wire.messages import Hello
from .context import NodeContext
from .dispatch import Dispatcher

if TYPE_CHECKING:
    from .core import Node

__all__ = ["start_node"]

log = logging.getLogger("pydevts.node")


async def start_node(node: Node, tg: TaskGroup) -> None:
    """Resolve the plugins, join or start the cluster, start the router and the listener."""
    transport, chosen, serializer, plugins = node._choices.resolve(max_frame_size=node.max_frame_size)
    # A router that decides (a RouterMachine) runs on core's links; one with IO of its own as is.
    router: Router = LinkHost(chosen) if isinstance(chosen, RouterMachine) else chosen
    check_open_mode(node.keyring, serializer)
    advertise_host = await advertise_host_for(
        node.host, node._advertise_host_given, toward=node.cluster_address.host
    )

    # Incarnations start from the clock, so a restarted node always comes
    # back newer than the one the cluster remembers.
    incarnation = time.time_ns() // 1_000_000

    def make_hello(bound: Address) -> Hello:
        return Hello(
            cluster=node.cluster,
            node_id=node.id,
            address=str(Address(advertise_host or bound.host, node._advertise_port or bound.port)),
            serializer=serializer.name,
            tags=dict(node.tags),
            extensions={"incarnation": incarnation, "router": router.name},
        )

    joined = await join_or_start(
        transport,
        cluster_address=node.cluster_address,
        bind_host=node.host,
        port=node.port,
        make_hello=make_hello,
        join_only=node.join_only,
        plugins=plugins,
        handshake_timeout=node.handshake_timeout,
        join_timeout=node.join_timeout,
        keyring=node.keyring,
        seeds=node.seeds,
        remembered=node._remembered,
        retry_join=node.retry_join,
    )
    try:
        await _begin(node, tg, joined, make_hello, transport, router, serializer, plugins)
    except BaseException:
        with anyio.CancelScope(shield=True):
            if joined.entry is not None:
                await joined.entry.aclose("start failed")
            await joined.listener.aclose()
        raise


async def _begin(
    node: Node,
    tg: TaskGroup,
    joined: JoinResult,
    make_hello: Callable[[Address], Hello],
    transport: Transport,
    router: Router,
    serializer: Serializer,
    plugins: list[ConnectionPlugin],
) -> None:
    node.started_cluster = joined.entry is None
    hello = make_hello(joined.listener.address)
    members = MemberView(
        Member(node.id, hello.address, dict(node.tags), incarnation=hello.extensions["incarnation"]),
        clock=anyio.current_time,
    )
    node._ctx = ctx = NodeContext(
        hello=hello,
        members=members,
        transport=transport,
        router=router,
        serializer=serializer,
        plugins=plugins,
        listener=joined.listener,
        task_group=tg,
        callbacks=node._lifecycle,
        handshake_timeout=node.handshake_timeout,
        keyring=node.keyring,
        limits=node.limits,
    )
    ctx.dispatcher = Dispatcher(
        node.id,
        serializer,
        ctx.send_frame,
        tg,
        max_concurrent_requests=node.limits.max_requests,
        max_requests_per_origin=node.limits.max_requests_per_origin,
        observers=ctx.observers,
        traces=ctx.traces,
    )
    if joined.entry is not None:
        ctx.configure_link(joined.entry)
    ctx.dispatcher.handlers = node._handlers
    ctx.dispatcher.header_handlers = node._header_handlers
    node._plugins = {
        str(getattr(p, "name", type(p).__name__)): p
        for p in (transport, router.machine if isinstance(router, LinkHost) else router, serializer, *plugins)
    }
    ctx.dispatcher.fallback = node._unhandled
    tg.start_soon(node._run_lifecycle, ctx, name="pydevts lifecycle")
    tg.start_soon(ctx.run_reaper, node.reap_after, name="pydevts reaper")
    if node.snapshot:
        tg.start_soon(run_snapshots, node.snapshot, node.cluster, members, name="pydevts snapshots")
    if node.merge_interval > 0:
        probe_targets = [node.cluster_address, *node.seeds]
        tg.start_soon(
            partial(
                run_merge,
                ctx,
                probe_targets,
                node.merge_interval,
                reap_after=node.reap_after,
                timeout=node.handshake_timeout,
            ),
            name="pydevts merge",
        )
    where = joined.listener.address
    if joined.entry is None:
        log.info("node %s started a new cluster %r on cluster port %s", node.id, node.cluster, where)
    else:
        log.info(
            "node %s joined cluster %r through %s; listening on %s",
            *(node.id, node.cluster, joined.via, where),
        )
    warn_open_mode(node.id, node.keyring)
    # From here on handlers may run (the router and the listener deliver): a handler may
    # send, emit and request at once, so the node counts as running (a failed start undoes it).
    start_plugins(node, ctx.observers)
    node._plugins_started = True  # from here on, a failed start stops them again (Node.__aenter__)
    node._running = True
    await router.start(ctx, joined.entry)
    tg.start_soon(joined.listener.serve, ctx.accept, name="pydevts listener")
    if joined.entry is not None:  # the members that went down before we came: list them too
        await agree_with(ctx, joined.entry.peer_id, node.reap_after, node.handshake_timeout)
    await ctx.notify(MemberEvent("started", members.local))


def start_plugins(node: Node, observers: Observers) -> None:
    """Each plugin's ``on_start``; one that fails fails the start (those started are stopped again)."""
    started = []
    for hook in observers.start:
        try:
            hook(node)
        except Exception as exc:
            owner = getattr(hook, "__self__", hook)
            for stop in observers.stop:
                if getattr(stop, "__self__", None) in started:
                    try:
                        stop(node)
                    except Exception:
                        observers.failed(stop)
            name = getattr(owner, "name", type(owner).__name__)
            raise ConfigurationError(f"connection plugin {name!r} could not start: {exc}") from exc
        started.append(getattr(hook, "__self__", hook))
