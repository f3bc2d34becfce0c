"""The member view: who is in the cluster, and in what state (sans-IO).

Routers feed the view (``upsert`` when a member is learned or changes,
``set_state`` when it leaves or fails); the view answers what changed, and the
node turns each change into a lifecycle event for user callbacks. The view is
the same whatever router is used.

A member that left or failed stays in the view (so ``members`` can show it)
until a later ``upsert`` brings it back (e.g. a restarted process rejoining)
or until the node *reaps* it: :meth:`MemberView.due` lists the members down
for a given time (Serf's reconnect/tombstone timeouts) and
:meth:`MemberView.drop` removes one, so the view of a long-lived cluster with
churning node ids stays bounded.

:meth:`MemberView.import_down` is the one way to record a down member the
view never had: a member another node lists as left or failed (a node that
joined late, or merged, learns what the older members saw). It raises no
lifecycle event (nothing changed for this node) and keeps how long the
member has been down, so every node reaps it at about the same time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["MAX_IMPORTED_VIEW", "Member", "MemberEvent", "MemberState", "MemberView"]

MAX_IMPORTED_VIEW = 10_000  # import_down records nothing once the view holds this many members


class MemberState(enum.StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    FAILED = "failed"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Member:
    """One node of the cluster as this node sees it.

    ``next_hop`` and ``distance`` are set by routers that reach members over
    several hops (the neighbour a frame to this member goes to, and how many
    links it crosses); ``None`` where the router does not say (full mesh:
    every member is one hop away, directly).
    """

    id: str
    address: str
    tags: Mapping[str, str] = field(default_factory=dict)
    state: MemberState = MemberState.ALIVE
    incarnation: int = 0
    next_hop: str | None = None
    distance: int | None = None

    @property
    def alive(self) -> bool:
        return self.state in (MemberState.ALIVE, MemberState.SUSPECT)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "address": self.address,
            "tags": dict(self.tags),
            "state": self.state.value,
            "incarnation": self.incarnation,
            "next_hop": self.next_hop,
            "distance": self.distance,
        }


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A lifecycle event.

    ``kind`` is one of ``started``, ``stopping`` (this node; ``member`` is
    this node) or ``joined``, ``left``, ``failed``, ``updated``, ``reaped``
    (another member; ``reaped``: a member down for ``reap_after`` seconds was
    dropped from the view).
    """

    kind: str
    member: Member


class MemberView:
    """The members this node knows of, itself included."""

    def __init__(self, local: Member, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.local_id = local.id
        self._members: dict[str, Member] = {local.id: local}
        self._clock = clock
        self._down_since: dict[str, float] = {}  # members that left or failed, and since when

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def get(self, node_id: str) -> Member | None:
        return self._members.get(node_id)

    @property
    def local(self) -> Member:
        return self._members[self.local_id]

    def set_local(self, member: Member) -> None:
        """Replace this node's own record (its tags changed)."""
        assert member.id == self.local_id
        self._members[member.id] = member

    def alive_ids(self) -> list[str]:
        """Ids of live members other than this node."""
        return [m.id for m in self._members.values() if m.alive and m.id != self.local_id]

    def upsert(self, member: Member) -> MemberEvent | None:
        """Record ``member`` as given; return the event this makes, if any.

        A member that is down and not in the view (never reported alive, or
        reaped) is not recorded: there is nothing to tell about it.
        """
        old = self._members.get(member.id)
        if old is None and not member.alive:
            return None
        self._members[member.id] = member
        if member.alive:
            self._down_since.pop(member.id, None)
        else:
            self._down_since.setdefault(member.id, self._clock())
        if old is None or not old.alive:
            return MemberEvent("joined", member) if member.alive else None
        if not member.alive:
            return MemberEvent(member.state.value, member)
        if old.tags != member.tags or old.address != member.address:
            return MemberEvent("updated", member)
        return None

    def set_state(self, node_id: str, state: MemberState) -> MemberEvent | None:
        """Move a known member to ``state``; return the event, if it changed."""
        old = self._members.get(node_id)
        if old is None or old.state == state or node_id == self.local_id:
            return None
        return self.upsert(replace(old, state=state))

    def due(self, older_than: float) -> list[Member]:
        """The members that have been down (left or failed) for ``older_than`` seconds."""
        deadline = self._clock() - older_than
        return [self._members[nid] for nid, since in self._down_since.items() if since <= deadline]

    def drop(self, node_id: str) -> Member | None:
        """Forget a member that is down (reaped); return it, or None if it is not down."""
        if node_id not in self._down_since:
            return None
        del self._down_since[node_id]
        return self._members.pop(node_id)

    def down_for(self, node_id: str) -> float | None:
        """Seconds ``node_id`` has been down (left or failed); None if it is not down."""
        since = self._down_since.get(node_id)
        return None if since is None else max(0.0, self._clock() - since)

    def import_down(self, member: Member, down_for: float = 0.0) -> bool:
        """Record a member another node lists as left or failed, if this view lacks it; no event.

        Refused (False) for a live member, this node, a member already in the
        view, or once the view holds :data:`MAX_IMPORTED_VIEW` members.
        ``down_for`` (seconds) sets when it went down, for reaping.
        """
        if member.alive or member.id in self._members or len(self._members) >= MAX_IMPORTED_VIEW:
            return False
        self._members[member.id] = replace(member, next_hop=None, distance=None)
        self._down_since[member.id] = self._clock() - max(0.0, down_for)
        return True
