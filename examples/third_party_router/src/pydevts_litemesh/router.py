"""The ``litemesh`` router: a full mesh with no failure detector of its own.

A decision machine (:class:`pydevts.routing.RouterMachine`): core owns the
links, dials, reconnects a link that drops, keeps one link per member and
hands core messages to the node; this router only decides whom to link to and
who is a member. Router frames carry the kind byte :data:`CONTROL` followed by
a JSON object (``t`` names the message):

- ``sync`` (on every new link, both ways): the sender and the members it is
  linked to. A receiver links to every member it did not know.
- ``intro``: a member that just linked to the sender without having been
  gossiped about first (a newcomer), sent to every other linked member.
- ``tags``: the sender's tags changed. ``leave``: the sender is stopping.

Of a pair that learn of each other, the smaller id dials at once and the other
only if no link has appeared after ``connect_after`` seconds. A link that is
gone for good without a ``leave`` (closed, or redialling it was refused) makes
its member *failed*; there is no probing (see README.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydevts.address import Address
from pydevts.members import Member, MemberState
from pydevts.routing import Action, CloseLink, Connect, Control, RouterMachine, SetMemberState, UpdateMember

__all__ = ["CONTROL", "LiteMeshRouter"]

CONTROL = 0x4C  # "L": not the peer router's 0x40, so a mixed cluster fails loudly
MAX_GONE = 10_000  # members remembered as left (stale gossip about them is ignored)
MAX_LEARNED = 10_000  # members heard of and waiting for a link (more are ignored until some link)


class LiteMeshRouter(RouterMachine):
    """Full mesh: one link per member, membership learned from links only."""

    name = "litemesh"

    def __init__(
        self, *, connect_after: float = 2.0, leave_timeout: float = 2.0, redial_for: float = 3.0
    ) -> None:
        for name, value in (("connect_after", connect_after), ("redial_for", redial_for)):
            if not value >= 0:  # refuses nan too
                raise ValueError(f"{name} must be 0 or more seconds, got {value!r}")
        self.connect_after = connect_after
        self.leave_timeout = leave_timeout
        self.redial_for = redial_for
        self.local = Member("", "")
        self.linked: dict[str, Member] = {}  # members with a link, as reported to the node
        self.learned: dict[str, tuple[Member, float | None]] = {}  # heard of, no link: dial when due
        self.gone: dict[str, None] = {}  # left: ignore stale gossip about them
        self.dropped: dict[str, float] = {}  # link dropped, core redials: failed if not back by then

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self.local = local
        return []

    def set_tags(self, now: float, tags: Mapping[str, str]) -> list[Action]:
        self.local = replace(self.local, tags=dict(tags))
        return self._to_all({"t": "tags", "tags": dict(tags)})

    def leave(self, now: float) -> list[Action]:
        return self._to_all({"t": "leave"})

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.gone.pop(peer.id, None)
        self.dropped.pop(peer.id, None)
        was_gossiped = self.learned.pop(peer.id, None) is not None
        others = list(self.linked)
        self.linked[peer.id] = peer
        listed = [_to_wire(m) for m in (self.local, *self.linked.values()) if m.id != peer.id]
        actions: list[Action] = [UpdateMember(peer), _control(peer.id, {"t": "sync", "members": listed})]
        if not was_gossiped:  # a newcomer: the others have not heard of it
            actions += [_control(other, {"t": "intro", "member": _to_wire(peer)}) for other in others]
        return actions

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        if resumable:  # core redials: a member stays for redial_for
            if peer_id not in self.linked:
                return [CloseLink(peer_id, "not a member")]
            self.dropped[peer_id] = now + self.redial_for
            return []
        self.dropped.pop(peer_id, None)
        if self.linked.pop(peer_id, None) is None:
            return []
        return [SetMemberState(peer_id, MemberState.FAILED)]

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        if frame[:1] != bytes((CONTROL,)):
            what = f"kind 0x{frame[0]:02x}" if frame else "an empty frame"
            raise ValueError(f"unknown router frame: {what} (does {peer_id} run another router?)")
        message = json.loads(frame[1:])
        kind = message.get("t") if isinstance(message, dict) else None
        if kind == "sync" and isinstance(message["members"], list):
            return [a for m in message["members"] for a in self._learn(_from_wire(m), now, fresh=False)]
        if kind == "intro":
            return self._learn(_from_wire(message["member"]), now, fresh=True)
        if kind == "tags" and peer_id in self.linked:
            self.linked[peer_id] = member = replace(self.linked[peer_id], tags=_tags(message["tags"]))
            return [UpdateMember(member)]
        if kind == "leave":
            self.gone[peer_id] = None
            if len(self.gone) > MAX_GONE:
                del self.gone[next(iter(self.gone))]
            self.linked.pop(peer_id, None)
            self.learned.pop(peer_id, None)
            return [SetMemberState(peer_id, MemberState.LEFT), CloseLink(peer_id, "member left", linger=True)]
        if kind == "tags":
            return []
        raise ValueError(f"unknown or malformed control message {str(message)[:80]!r}")

    def _learn(self, member: Member, now: float, *, fresh: bool) -> list[Action]:
        """Heard of ``member``; ``fresh`` news comes from a node with a new link to it."""
        known = member.id == self.local.id or member.id in self.linked or member.id in self.learned
        if known or (member.id in self.gone and not fresh) or len(self.learned) >= MAX_LEARNED:
            return []
        self.gone.pop(member.id, None)
        if member.id < self.local.id:  # the smaller id dials; this is the safety net
            self.learned[member.id] = (member, now + self.connect_after)
            return []
        self.learned[member.id] = (member, None)
        return [Connect(member.id, member.address)]

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        self.learned.pop(member_id, None)  # a later sync may bring it back
        return []

    def next_deadline(self) -> float | None:
        dials = (due for _, due in self.learned.values() if due is not None)
        return min((*dials, *self.dropped.values()), default=None)

    def timer(self, now: float) -> list[Action]:
        due = [m for m, at in self.learned.values() if at is not None and at <= now]
        for member in due:
            self.learned[member.id] = (member, None)  # dialled: link_up or connect_failed follows
        actions: list[Action] = [Connect(m.id, m.address) for m in due]
        for peer in [p for p, at in self.dropped.items() if at <= now]:
            del self.dropped[peer]
            self.linked.pop(peer, None)
            actions += [CloseLink(peer, "no new link"), SetMemberState(peer, MemberState.FAILED)]
        return actions

    def forget(self, member_id: str) -> bool:
        self.gone.pop(member_id, None)
        return True

    def _to_all(self, message: dict[str, Any]) -> list[Action]:
        return [_control(peer, message) for peer in self.linked]


def _control(peer: str, message: dict[str, Any]) -> Control:
    return Control(peer, bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode())


def _to_wire(member: Member) -> dict[str, Any]:
    return {"id": member.id, "address": member.address, "tags": dict(member.tags)}


def _from_wire(data: Any) -> Member:
    node_id, address = (data.get("id"), data.get("address")) if isinstance(data, dict) else (0, 0)
    if not isinstance(node_id, str) or not node_id or not isinstance(address, str):
        raise ValueError(f"member entry needs a string id and address: {str(data)[:80]!r}")
    Address.parse(address)  # ValueError if it is not HOST:PORT
    return Member(node_id, address, _tags(data.get("tags", {})))


def _tags(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError(f"tags are not an object: {str(data)[:80]!r}")
    return {str(k): str(v) for k, v in data.items()}
