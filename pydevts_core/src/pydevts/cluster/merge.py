"""Islands merge by themselves: every member probes the cluster port and its seeds (internal).

Nodes of one cluster (same name, same keyring) that started apart, or were
split long enough to forget each other, would otherwise stay two clusters.
Every ``merge_interval`` seconds (jittered by ±20 %), each member probes the
cluster port and each of its seeds (not its own address) with a *client*
connection (role ``client``: never handed to any router, so probing a node of
our own cluster costs one short connection and nothing else) and asks for
``pydevts.members``. If the node that answers is not a live member of this
node's view, it belongs to another island: this node connects to it as a
member and hands the link to the router exactly as an accepted connection is
handed (``Router.add_link``). The routers' own machinery (the peer router's
sync and intros, SWIM's gossip; the hop router's adverts) then forms one
cluster. Router-agnostic: only ``add_link`` and ``RouterContext.connect``.

The answer's down members that this node lacks are recorded as well
(:mod:`pydevts.cluster.views`). Bounds: one probe at a time, each within
``timeout`` (connect, handshake and answer; the handshake timeout), at most
:data:`~pydevts.cluster.views.MAX_ROWS` members taken from one answer, at most
``1 + MAX_SEEDS`` probes per round.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from ..errors import PydevtsError
from ..protocols import Address, Connection
from ..wire.handshake import open_link
from ..wire.messages import ERROR, REPLY, Hello, decode_message, encode_request, remote_error
from .views import MemberRow, import_rows, parse_rows, tell_down

if TYPE_CHECKING:
    from ..node.context import NodeContext

__all__ = ["merge_once", "probe", "run_merge"]

log = logging.getLogger("pydevts.merge")


async def run_merge(
    ctx: NodeContext, targets: Sequence[Address], interval: float, *, reap_after: float, timeout: float
) -> None:
    """Probe ``targets`` every ``interval`` seconds (±20 %) until cancelled (the node stops)."""
    while True:
        await anyio.sleep(interval * random.uniform(0.8, 1.2))
        try:
            await merge_once(ctx, targets, reap_after=reap_after, timeout=timeout)
        except Exception:  # a bug must cost this round, never the node
            log.exception("merge round failed")


async def merge_once(
    ctx: NodeContext, targets: Sequence[Address], *, reap_after: float, timeout: float
) -> list[str]:
    """One round: probe each target; connect to each answering node of another island; return their ids."""
    own = {ctx.hello.address, str(ctx.listen_address)}
    merged: list[str] = []
    for address in targets:
        if str(address) in own:
            continue
        try:
            with anyio.fail_after(timeout):
                peer, rows = await probe(ctx, address)
        except (PydevtsError, ValueError, TimeoutError, OSError) as exc:
            log.debug("merge probe of %s: %s", address, exc)
            continue
        import_rows(ctx.members, rows, reap_after)
        known = ctx.members.get(peer.node_id)
        if peer.node_id == ctx.node_id or (known is not None and known.alive):
            continue  # ourselves, or a node of our own island
        ours = set(ctx.members.alive_ids())
        strangers = [r.member.id for r in rows if r.member.alive and r.member.id not in ours]
        log.info(
            "found another island of cluster %r at %s (%s; %d live member(s) unknown here): merging",
            *(ctx.hello.cluster, address, peer.node_id, len(strangers)),
        )
        try:
            with anyio.fail_after(timeout):
                link = await ctx.connect(address)
        except (PydevtsError, TimeoutError, OSError) as exc:
            log.info("could not merge with %s at %s: %s", peer.node_id, address, exc)
            continue
        ctx.router.add_link(link)
        ctx.spawn(tell_down, ctx, link.peer_id, timeout, name="pydevts merge views")
        merged.append(link.peer_id)
    return merged


async def probe(ctx: NodeContext, address: Address) -> tuple[Hello, list[MemberRow]]:
    """Connect to ``address`` as a client; return its hello and its member list (checked).

    The caller bounds the time. Authenticates with the node's keyring.
    """
    conn = await ctx.transport.connect(address)
    hello = Hello(
        cluster=ctx.hello.cluster,
        node_id=f"merge-{os.urandom(4).hex()}",
        address="0.0.0.0:0",
        serializer=ctx.serializer.name,
        role="client",
    )
    link = await open_link(conn, hello, initiated=True, timeout=ctx.handshake_timeout, keyring=ctx.keyring)
    try:
        await link.conn.send_frames([encode_request(1, "pydevts.members", ctx.serializer.dumps(None))])
        answer = await _reply(link.conn, list(link._early), str(address))
        return link.peer, parse_rows(ctx.serializer.loads(answer))
    finally:
        with anyio.CancelScope(shield=True):
            await link.conn.aclose()


async def _reply(conn: Connection, buffered: list[bytes], where: str) -> bytes:
    while True:
        if not buffered:
            buffered = await conn.receive_frames()
            continue
        frame = buffered.pop(0)
        if not frame or frame[0] not in (REPLY, ERROR):
            continue
        msg = decode_message(frame)
        if msg.request_id != 1:
            continue
        if msg.kind == REPLY:
            return bytes(msg.payload)
        raise remote_error(where, "pydevts.members", msg)
