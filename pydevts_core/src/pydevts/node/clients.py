"""Serving one-off clients (``role: client``, e.g. ``pydevts members``/``emit``, NodeClient).

A client's link never joins the router: :func:`serve_client` reads its
requests into the node's dispatcher and sends the replies back over the same
link, and closes it once it has been idle for ``Limits.client_idle_timeout``.
Admission (how many clients, from where) is
:class:`~pydevts.admission.ConnectionGuard`'s.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import anyio

from ..wire.link import Link, Tail

if TYPE_CHECKING:
    from .context import NodeContext

__all__ = ["CLIENT_PREFIX", "serve_client"]

log = logging.getLogger("pydevts.node")

CLIENT_PREFIX = "client:"  # what this node calls the clients it serves; no member may take such an id


async def serve_client(ctx: NodeContext, link: Link) -> None:
    """Serve a one-off client (``role: client``): requests in, replies out; never a member.

    A client is known by a name this node gives it (``client:`` and random
    hex), never by the id it claims: a client that claims a member's id
    gets neither that member's traffic nor its replies, and handlers see
    the client's own name as the sender.
    """
    key = f"{CLIENT_PREFIX}{os.urandom(6).hex()}"
    ctx.clients[key] = link
    log.debug("serving client %s (says %r) from %s", key, link.peer_id, link.conn.remote_address)

    last = ctx.client_active[key] = [anyio.current_time()]

    async def on_frames(link: Link, frames: list[bytes]) -> Tail | None:
        last[0] = anyio.current_time()
        return await ctx.dispatcher.deliver(key, frames)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_close_when_idle, ctx, link, key, last)
            await link.run(on_frames, spawn=ctx.spawn)
            tg.cancel_scope.cancel()
    finally:
        del ctx.clients[key], ctx.client_active[key]
        ctx.dispatcher.close_inbox(key)


async def _close_when_idle(ctx: NodeContext, link: Link, key: str, last: list[float]) -> None:
    """Close a client link once it has sent no request for ``client_idle_timeout`` (none in progress)."""
    idle = ctx.limits.client_idle_timeout
    while True:
        left = last[0] + idle - anyio.current_time()
        if left > 0:
            await anyio.sleep(left)
        elif ctx.dispatcher.requests_in_flight(key):
            last[0] = anyio.current_time()  # a request in progress counts as activity
        else:
            break
    ctx.guard.counters.idle_clients_closed += 1
    where = link.conn.remote_address
    ctx.ratelog.info("limits.idle_client", "closing client %s (%s): idle for %g s", key, where, idle)
    with anyio.CancelScope(shield=True):
        await link.aclose(f"idle: no request for {idle:g} s")
