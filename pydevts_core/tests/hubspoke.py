"""A deliberately bad router for the contract's own tests: hub and spokes (not shipped).

Written from the docs alone, on the public router API only: the node that
started the cluster is the *hub*; every other node (a *spoke*) links only to
the node it joined through and sends everything there; the hub relays. It
passes the easy rules (join through the hub, emit exactly once, send,
request, a graceful leave) but loses the cluster when the hub dies, and a
node that joins through a spoke is known to that spoke only.
:func:`pydevts.testing.check_router` must fail it.

Router frames: ``ROSTER`` + JSON (the hub's members, sent to every spoke),
``LEAVE``, and ``RELAY`` + dest + origin + a core frame (each name one
length byte then UTF-8; dest ``*`` is every node).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydevts.members import Member, MemberState
from pydevts.protocols import RouterContext
from pydevts.routing import Tail, send_on_link
from pydevts.wire.link import Link

ROSTER, LEAVE, RELAY = 0x48, 0x49, 0x4A
EVERYONE = "*"


def _name(text: str) -> bytes:
    raw = text.encode()
    return bytes((len(raw),)) + raw


def _relay(dest: str, origin: str, frame: bytes) -> bytes:
    return bytes((RELAY,)) + _name(dest) + _name(origin) + frame


def _unrelay(frame: bytes) -> tuple[str, str, bytes]:
    n = frame[1]
    dest = frame[2 : 2 + n].decode()
    m = frame[2 + n]
    origin = frame[3 + n : 3 + n + m].decode()
    return dest, origin, frame[3 + n + m :]


class HubSpokeRouter:
    name = "hubspoke"

    def __init__(self) -> None:
        self._ctx: RouterContext | None = None
        self._hub = ""  # the node we joined through; our own id if we started the cluster
        self._links: dict[str, Link] = {}
        self._left: set[str] = set()
        self._stopping = False

    @property
    def ctx(self) -> RouterContext:
        assert self._ctx is not None
        return self._ctx

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        self._hub = ctx.node_id if entry is None else entry.peer_id
        if entry is not None:
            self.add_link(entry)

    def add_link(self, link: Link) -> None:
        if self._stopping or link.peer.role != "member":
            self.ctx.spawn(link.aclose, "not served")
            return
        self._links[link.peer_id] = link
        self.ctx.update_member(Member(link.peer_id, link.peer.address, dict(link.peer.tags)))
        if self._hub == self.ctx.node_id:
            self._send_roster()
        self.ctx.spawn(self._run, link)

    def _send_roster(self) -> None:
        roster = [{"id": m.id, "address": m.address} for m in self.ctx.members if m.alive]
        frame = bytes((ROSTER,)) + json.dumps(roster).encode()
        for link in self._links.values():
            link.send_nowait(frame)

    async def _run(self, link: Link) -> None:
        try:
            await link.run(self._on_frames, spawn=self.ctx.spawn)
        finally:
            if self._links.get(link.peer_id) is link and not self._stopping:
                del self._links[link.peer_id]
                gone = link.peer_id
                state = MemberState.LEFT if gone in self._left else MemberState.FAILED
                self.ctx.set_member_state(gone, state)
                if gone == self._hub:  # lost the hub: nobody else is reachable now
                    for member_id in self.ctx.members.alive_ids():
                        if member_id != self.ctx.node_id:
                            self.ctx.set_member_state(member_id, MemberState.FAILED)
                elif self._hub == self.ctx.node_id:
                    self._send_roster()

    async def _on_frames(self, link: Link, frames: list[bytes]) -> Tail | None:
        tail: Tail | None = None
        for frame in frames:
            if tail is not None:
                self.ctx.spawn(tail)
                tail = None
            kind = frame[0]
            if kind == ROSTER:
                listed = {entry["id"]: entry for entry in json.loads(frame[1:])}
                for node_id, entry in listed.items():
                    if node_id != self.ctx.node_id:
                        self.ctx.update_member(Member(node_id, entry["address"], {}))
                for member_id in self.ctx.members.alive_ids():
                    if member_id not in listed and member_id not in (self.ctx.node_id, link.peer_id):
                        self.ctx.set_member_state(member_id, MemberState.LEFT)
            elif kind == LEAVE:
                self._left.add(link.peer_id)
            elif kind == RELAY:
                dest, origin, inner = _unrelay(frame)
                if self._hub == self.ctx.node_id:  # the hub passes it on
                    for peer, out in self._links.items():
                        if peer != origin and (dest in (EVERYONE, peer)):
                            out.send_nowait(frame)
                if dest in (EVERYONE, self.ctx.node_id):
                    tail = await self.ctx.deliver(origin, [inner])
            else:
                tail = await self.ctx.deliver(link.peer_id, [frame])
        return tail

    async def send(self, dest: str, frame: bytes) -> None:
        if dest in self._links or self._hub == self.ctx.node_id:
            await send_on_link(self._links.get(dest), dest, frame)
        else:
            member = self.ctx.members.get(dest)
            hub = self._links.get(self._hub) if member is not None and member.alive else None
            await send_on_link(hub, dest, _relay(dest, self.ctx.node_id, frame))

    async def broadcast(self, frame: bytes) -> None:
        if self._hub == self.ctx.node_id:
            for link in list(self._links.values()):
                link.send_nowait(frame)
        elif (hub := self._links.get(self._hub)) is not None:
            hub.send_nowait(_relay(EVERYONE, self.ctx.node_id, frame))

    def forget(self, node_id: str) -> bool:
        return True

    def statistics(self) -> Mapping[str, int]:
        return {}

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    async def stop(self) -> None:
        self._stopping = True
        for link in list(self._links.values()):
            link.send_nowait(bytes((LEAVE,)))
            await link.flush()
            await link.aclose("this node left")
