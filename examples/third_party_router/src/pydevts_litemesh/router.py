"""The ``litemesh`` router: a full mesh with no failure detector of its own.

Every node keeps one link to every other member. Router frames carry the kind
byte :data:`CONTROL` followed by a JSON object (``t`` names the message):

- ``sync`` (on every new link, both ways): the sender and the members it is
  linked to. A receiver links to every member it did not know.
- ``intro``: a member that just linked to the sender without having been
  gossiped about first (a newcomer), sent to every other linked member.
- ``tags``: the sender's tags changed. ``leave``: the sender is stopping.
- ``retire``: the sender will send nothing more on this (duplicate) link.

Of a pair that learn of each other, the smaller id dials at once and the other
dials only if no link has appeared after ``connect_after`` seconds. If two
links to one peer still appear, both ends keep the one opened by the smaller
id (:func:`keeps`); the other is *retired*: each end sends ``retire`` on it
after its last frame and closes it once it has the peer's ``retire`` too, so
nothing sent on it is lost. A link that closes without a ``leave`` makes its
member *failed*; there is no reconnect and no probing (see README.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio
from pydevts.errors import PydevtsError, RemoteProtocolError
from pydevts.link import Link
from pydevts.members import Member, MemberState
from pydevts.protocols import Address, RouterContext
from pydevts.routing import Tail, close_later, keeps, send_on_link, send_on_links

__all__ = ["CONTROL", "LiteMeshRouter", "keeps"]

log = logging.getLogger("pydevts.litemesh")

ROUTER_KIND_MIN = 0x40  # kinds below are core messages (see pydevts.protocols.Router)
CONTROL = 0x4C  # "L": not the peer router's 0x40, so a mixed cluster fails loudly


class LiteMeshRouter:
    """Full mesh: one link per member, membership learned from links only."""

    name = "litemesh"

    def __init__(self, *, connect_after: float = 2.0, leave_timeout: float = 2.0) -> None:
        self.connect_after = connect_after
        self.leave_timeout = leave_timeout
        self._ctx: RouterContext | None = None
        self._links: dict[str, Link] = {}  # the one link per member that we send on
        self._members: dict[str, Member] = {}  # linked members, as reported to the node
        self._learned: dict[str, Member] = {}  # heard of, no link yet (a dial is pending)
        self._gone: set[str] = set()  # left: ignore stale gossip about them
        self._running: set[Link] = set()  # every link we read: current, duplicate, retiring
        self._retired: dict[Link, anyio.Event] = {}  # set when the peer sent `retire` on it
        self._draining: dict[str, tuple[Link, anyio.Event]] = {}  # peer -> link being retired
        self._stopping = False

    @property
    def links(self) -> Mapping[str, Link]:
        """The current link to each member (read-only use)."""
        return self._links

    def _context(self) -> RouterContext:
        assert self._ctx is not None, "the router has not been started"
        return self._ctx

    # ----------------------------------------------------------- lifecycle

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        if entry is not None:
            self.add_link(entry)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for link in self._links.values():
            _send_control(link, {"t": "tags", "tags": dict(tags)})

    async def stop(self) -> None:
        self._stopping = True
        links = list(self._links.values())
        for link in links:
            _send_control(link, {"t": "leave"})
        try:
            with anyio.move_on_after(self.leave_timeout):
                for link in links:
                    await link.flush()
        finally:
            with anyio.CancelScope(shield=True):
                for link in list(self._running):
                    await link.aclose("this node left")

    # ----------------------------------------------------------- links

    def add_link(self, link: Link) -> None:
        ctx = self._context()
        if self._stopping or link.peer.role != "member":
            why = "this node is leaving" if self._stopping else f"role {link.peer.role!r} not served"
            ctx.spawn(link.aclose, why)
            return
        peer = link.peer_id
        self._running.add(link)
        existing = self._links.get(peer)
        if existing is not None and not existing.closed:
            loser = link if keeps(existing, link) else existing
            log.debug("two links to %s: retiring %r", peer, loser)
            if loser is existing:
                self._links[peer] = link
            ctx.spawn(self._run, link, name=f"pydevts litemesh link {peer}")
            self._retire(loser)
            return
        self._links[peer] = link
        self._gone.discard(peer)
        was_gossiped = self._learned.pop(peer, None) is not None
        member = Member(peer, link.peer.address, dict(link.peer.tags))
        others = [other for pid, other in self._links.items() if pid != peer]
        self._members[peer] = member
        ctx.update_member(member)  # before any of its frames are delivered
        listed = [_to_wire(m) for m in self._members.values() if m.id != peer]
        local = {"id": ctx.node_id, "address": ctx.hello.address, "tags": dict(ctx.hello.tags)}
        _send_control(link, {"t": "sync", "members": [local, *listed]})
        if not was_gossiped:  # a newcomer: the others have not heard of it
            for other in others:
                _send_control(other, {"t": "intro", "member": _to_wire(member)})
        ctx.spawn(self._run, link, name=f"pydevts litemesh link {peer}")

    async def _run(self, link: Link) -> None:
        ctx = self._context()
        try:
            await link.run(self._on_frames, spawn=ctx.spawn)
        finally:
            self._running.discard(link)
            retired = self._retired.pop(link, None)
            if retired is not None:
                retired.set()  # nothing more can come on it
            if self._draining.get(link.peer_id, (None,))[0] is link:
                del self._draining[link.peer_id]
            if self._links.get(link.peer_id) is link:
                del self._links[link.peer_id]
                self._members.pop(link.peer_id, None)
                if not self._stopping:
                    log.info("link to %s closed without a leave: %s", link.peer_id, link.close_reason)
                    ctx.set_member_state(link.peer_id, MemberState.FAILED)

    def _retire(self, link: Link) -> None:
        self._draining[link.peer_id] = (link, self._retired.setdefault(link, anyio.Event()))
        _send_control(link, {"t": "retire"})  # after everything we sent on it
        self._context().spawn(self._close_retired, link)

    async def _close_retired(self, link: Link) -> None:
        # Close once our frames are out and the peer's `retire` (its last frame) is in.
        peer_done = self._retired.get(link)
        with anyio.move_on_after(self.leave_timeout):
            await link.flush()
            if peer_done is not None:
                await peer_done.wait()
        await link.aclose("duplicate link retired")

    async def _on_frames(self, link: Link, frames: list[bytes]) -> Tail | None:
        ctx = self._context()
        draining = self._draining.get(link.peer_id)
        if draining is not None and draining[0] is not link:
            await draining[1].wait()  # what the peer sent on the old link comes first
        start = 0
        for i, frame in enumerate(frames):
            if not frame or frame[0] >= ROUTER_KIND_MIN:
                if i > start:  # core frames before a control frame: deliver them first
                    tail = await ctx.deliver(link.peer_id, frames[start:i])
                    if tail is not None:
                        ctx.spawn(tail)
                start = i + 1
                self._on_control(link, frame)
        if start < len(frames):
            return await ctx.deliver(link.peer_id, frames[start:] if start else frames)
        return None

    def _on_control(self, link: Link, frame: bytes) -> None:
        peer = link.peer_id
        try:
            if not frame or frame[0] != CONTROL:
                what = f"kind 0x{frame[0]:02x}" if frame else "an empty frame"
                raise ValueError(f"unknown router frame: {what} (does {peer} run another router?)")
            message = json.loads(frame[1:])
            if not isinstance(message, dict):
                raise ValueError(f"control message is not an object: {message!r}")
            kind = message.get("t")
            if kind == "sync":
                members = message["members"]
                if not isinstance(members, list):
                    raise ValueError("sync without a member list")
                for entry in [_from_wire(m) for m in members]:
                    self._learn(entry, fresh=False)
            elif kind == "intro":
                self._learn(_from_wire(message["member"]), fresh=True)
            elif kind == "tags":
                self._retag(peer, _tags(message["tags"]))
            elif kind == "leave":
                self._left(peer)
            elif kind == "retire":
                self._retired.setdefault(link, anyio.Event()).set()
            else:
                raise ValueError(f"unknown control message type {kind!r}")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise RemoteProtocolError(f"bad litemesh control message from {peer}: {exc}") from exc

    # ----------------------------------------------------------- membership

    def _learn(self, member: Member, *, fresh: bool) -> None:
        """Heard of ``member``; ``fresh`` news comes from a node with a new link to it."""
        ctx = self._context()
        if member.id == ctx.node_id or member.id in self._links or member.id in self._learned:
            return
        if self._stopping or (member.id in self._gone and not fresh):
            return
        self._gone.discard(member.id)
        self._learned[member.id] = member
        ctx.spawn(self._dial, member, name=f"pydevts litemesh dial {member.id}")

    async def _dial(self, member: Member) -> None:
        ctx = self._context()
        if member.id < ctx.node_id:  # the smaller id dials; this is the safety net
            await anyio.sleep(self.connect_after)
        if self._stopping or member.id in self._links or self._learned.get(member.id) is not member:
            return
        try:
            link = await ctx.connect(Address.parse(member.address))
        except (PydevtsError, ValueError) as exc:
            log.info("could not link to member %s at %s: %s", member.id, member.address, exc)
            if self._learned.get(member.id) is member:
                del self._learned[member.id]  # a later sync may bring it back
            return
        if link.peer_id in self._gone:  # it left while we were dialling
            await link.aclose("member left")
            return
        if link.peer_id != member.id:
            log.warning("expected %s at %s but found %s", member.id, member.address, link.peer_id)
            self._learned.pop(member.id, None)
        self.add_link(link)

    def _retag(self, peer: str, tags: dict[str, str]) -> None:
        member = self._members.get(peer)
        if member is not None and member.tags != tags:
            self._members[peer] = member = replace(member, tags=tags)
            self._context().update_member(member)

    def _left(self, peer: str) -> None:
        ctx = self._context()
        self._gone.add(peer)
        self._members.pop(peer, None)
        self._learned.pop(peer, None)
        link = self._links.pop(peer, None)  # no more sends to it; it closes the link itself
        ctx.set_member_state(peer, MemberState.LEFT)
        if link is not None:
            ctx.spawn(close_later, link, 2 * self.leave_timeout, "member left")

    # ----------------------------------------------------------- delivery

    async def send(self, dest: str, frame: bytes) -> None:
        await send_on_link(self._links.get(dest), dest, frame)

    async def broadcast(self, frame: bytes) -> None:
        await send_on_links(self._links.values(), frame)


def _send_control(link: Link, message: dict[str, Any]) -> None:
    try:
        link.send_nowait(bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode())
    except PydevtsError as exc:
        log.debug("control message to %s not sent: %s", link.peer_id, exc)


def _to_wire(member: Member) -> dict[str, Any]:
    return {"id": member.id, "address": member.address, "tags": dict(member.tags)}


def _from_wire(data: Any) -> Member:
    if not isinstance(data, dict):
        raise ValueError(f"member entry is not an object: {data!r}")
    node_id, address = data.get("id"), data.get("address")
    if not isinstance(node_id, str) or not node_id or not isinstance(address, str):
        raise ValueError(f"member entry needs a string id and address: {data!r}")
    Address.parse(address)  # ValueError if it is not HOST:PORT
    return Member(node_id, address, _tags(data.get("tags", {})))


def _tags(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError(f"tags are not an object: {data!r}")
    return {str(k): str(v) for k, v in data.items()}
