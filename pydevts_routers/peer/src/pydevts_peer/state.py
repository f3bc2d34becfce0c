"""The full-mesh ("everyone knows everyone") routing state machine (sans-IO).

Theory of operation
-------------------
Every node keeps one link to every other node. A newcomer connects to the
node at the cluster port (its *entry*). When a link comes up:

- both sides send each other a ``sync``: the sender and every member it has
  a link to;
- if the peer was unknown until now, we ``intro``-duce it to every other
  member we have a link to, and the members its first sync lists that we
  did not know too (an island merging: neither side's other members know
  the other island's);
- for ``NEWCOMER_WINDOW`` (10 s) after a node linked to us unknown (it got
  our full sync), each member we learn of is introduced to it too: it may
  have joined elsewhere at the same moment, after our sync left.

On learning of a member it has no link to, a node connects to it if its own
id is smaller (so each pair opens one link, not two); if no link has appeared
after ``connect_after`` seconds, either side connects (a safety net for races
between concurrent joins). A ``leave`` message before a link closes makes the
member *left*; a link that drops without one makes it *failed*.

The machine takes inputs (link up/down, control message, tick) with the
current time and returns actions; it never touches a socket or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydevts.members import Member, MemberState
from pydevts.swim.wire import address_field, id_field, tags_field

NEWCOMER_WINDOW = 10.0  # seconds a node that joined through us hears of members we learn of
MAX_KNOWN = 10_000  # members waiting for a link, and members in one sync message

__all__ = [
    "Connect",
    "MemberDown",
    "MemberUp",
    "PeerState",
    "SendControl",
]


@dataclass(frozen=True)
class SendControl:
    peer_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Connect:
    member: Member


@dataclass(frozen=True)
class MemberUp:
    member: Member


@dataclass(frozen=True)
class MemberDown:
    peer_id: str
    state: MemberState


Action = SendControl | Connect | MemberUp | MemberDown


@dataclass
class _Known:
    member: Member
    since: float
    attempts: int = 0
    connecting: bool = False


def member_to_wire(member: Member) -> dict[str, Any]:
    return {"id": member.id, "address": member.address, "tags": dict(member.tags)}


def member_from_wire(data: Any) -> Member:
    """Parse a member entry into bounded fields; raise ValueError saying what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError(f"member entry is not an object: {data!r:.80}")
    node_id = id_field(data.get("id"), "member id")
    address = address_field(data.get("address"))
    tags = tags_field(data.get("tags", {})) or {}
    return Member(node_id, address, tags)


@dataclass
class PeerState:
    """Membership and link bookkeeping of one node in a full mesh."""

    local: Member
    connect_after: float = 3.0
    max_attempts: int = 3
    linked: dict[str, Member] = field(default_factory=dict)
    known: dict[str, _Known] = field(default_factory=dict)
    leaving: set[str] = field(default_factory=set)
    known_refused: int = 0  # members not learned because the table was full (MAX_KNOWN)
    strangers: set[str] = field(default_factory=set)  # linked before we knew of them, first sync not in
    newcomers: dict[str, float] = field(default_factory=dict)  # given our full sync, and when

    # ---------------------------------------------------------------- inputs

    def link_up(self, member: Member, now: float) -> list[Action]:
        """A link to ``member`` completed its handshake."""
        was_known = member.id in self.known or member.id in self.linked
        self.known.pop(member.id, None)
        self.leaving.discard(member.id)
        actions: list[Action] = [MemberUp(member)]
        others = [pid for pid in self.linked if pid != member.id]
        self.linked[member.id] = member
        # A member we knew of learned of us from the same introduction: it knows the others
        # too (whoever introduced us told it), so it gets only us; a stranger (a node joining
        # through us, an island merging) gets every member we are linked to. Full syncs on
        # every link cost N entries x N links x N joins = N³ in a wave.
        actions.append(SendControl(member.id, self._sync_message(full=not was_known)))
        if not was_known:
            self.strangers.add(member.id)
            self.newcomers[member.id] = now
            intro = {"t": "intro", "member": member_to_wire(member)}
            actions.extend(SendControl(pid, intro) for pid in others)
        return actions

    def link_down(self, peer_id: str, now: float) -> list[Action]:
        """The link to ``peer_id`` closed."""
        self.strangers.discard(peer_id)
        if self.linked.pop(peer_id, None) is None:
            return []
        state = MemberState.LEFT if peer_id in self.leaving else MemberState.FAILED
        self.leaving.discard(peer_id)
        return [MemberDown(peer_id, state)]

    def control(self, peer_id: str, message: Any, now: float) -> list[Action]:
        """A control message arrived from ``peer_id``; raise ValueError if malformed."""
        if not isinstance(message, dict):
            raise ValueError(f"control message is not an object: {message!r}")
        kind = message.get("t")
        if kind == "sync":
            members = message.get("members")
            if not isinstance(members, list):
                raise ValueError("sync without a member list")
            if len(members) > MAX_KNOWN:
                raise ValueError(f"sync lists {len(members)} members; at most {MAX_KNOWN} are accepted")
            learned = [member_from_wire(m) for m in members]
            if peer_id not in self.strangers:
                return self._learn(learned, now, peer_id)
            # The first sync of a stranger (an island merging with ours): the members it lists
            # that we did not know are news to our other members too, whom the stranger does
            # not know either (it synced only with us): introduce them, so every pair links.
            self.strangers.discard(peer_id)
            others = [pid for pid in self.linked if pid != peer_id]
            return self._learn(learned, now, peer_id, tell=others)
        if kind == "intro":
            return self._learn([member_from_wire(message.get("member"))], now, peer_id)
        if kind == "leave":
            self.leaving.add(peer_id)
            return []
        raise ValueError(f"unknown control message type {kind!r}")

    def learn(self, member: Member, now: float) -> list[Action]:
        """Another source (the failure detector) says ``member`` is alive: link to it."""
        return self._learn([member], now)

    def connect_failed(self, peer_id: str, now: float) -> list[Action]:
        """An attempt to connect to a known member failed."""
        entry = self.known.get(peer_id)
        if entry is not None:
            entry.connecting = False
            entry.since = now
            if entry.attempts >= self.max_attempts:
                del self.known[peer_id]
        return []

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has a member to connect to (``None``: none is waiting)."""
        waiting = [entry.since for entry in self.known.values() if not entry.connecting]
        return min(waiting) + self.connect_after if waiting else None

    def tick(self, now: float) -> list[Action]:
        """Connect to members that have waited too long for a link."""
        actions: list[Action] = []
        for entry in self.known.values():
            if not entry.connecting and now - entry.since >= self.connect_after:
                actions.append(self._connect(entry))
        return actions

    def forget(self, peer_id: str) -> None:
        """The node reaped ``peer_id`` (down for long, no link): stop trying to link to it."""
        self.known.pop(peer_id, None)
        self.leaving.discard(peer_id)

    def leave(self) -> list[Action]:
        """This node is leaving: tell every linked member."""
        return [SendControl(pid, {"t": "leave"}) for pid in self.linked]

    # ---------------------------------------------------------------- helpers

    def _sync_message(self, *, full: bool = True) -> dict[str, Any]:
        members = [member_to_wire(self.local)]
        if full:
            members += [member_to_wire(m) for m in self.linked.values()]
        return {"t": "sync", "members": members}

    def _learn(
        self, members: list[Member], now: float, source: str | None = None, tell: list[str] | None = None
    ) -> list[Action]:
        """Note new members (dial those with a larger id); introduce each to ``tell`` and to recent
        newcomers (but ``source``, which told us)."""
        actions: list[Action] = []
        newcomers = sorted(set(self._recent_newcomers(now)) | set(tell or ()))
        for member in members:
            if member.id == self.local.id or member.id in self.linked or member.id in self.known:
                continue
            if len(self.known) >= MAX_KNOWN:
                self.known_refused += 1  # the table is full: forget the newcomer, not a member we know
                continue
            entry = _Known(member, now)
            self.known[member.id] = entry
            if self.local.id < member.id:
                actions.append(self._connect(entry))
            # A node that joined through us a moment ago got our full sync before we knew of
            # this member, which may have joined elsewhere at the same time: tell it.
            intro = {"t": "intro", "member": member_to_wire(member)}
            actions.extend(SendControl(pid, intro) for pid in newcomers if pid not in (source, member.id))
        return actions

    def _recent_newcomers(self, now: float) -> list[str]:
        """Members we gave a full sync within NEWCOMER_WINDOW seconds (and still linked)."""
        for pid, since in list(self.newcomers.items()):
            if now - since > NEWCOMER_WINDOW or pid not in self.linked:
                del self.newcomers[pid]
        return list(self.newcomers)

    def _connect(self, entry: _Known) -> Connect:
        entry.connecting = True
        entry.attempts += 1
        return Connect(entry.member)
