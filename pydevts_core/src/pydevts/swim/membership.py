"""What one SWIM node holds about the others, and how an update is applied and spread.

:class:`Membership` is the base of :class:`~pydevts.swim.SwimState` (which adds
probing, ticks and messages, see :mod:`pydevts.swim.state`): the member
records, the suspicion and failure times, the piggyback queue and the
ordering of updates (:func:`~pydevts.swim.rules.wins`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from ..members import Member, MemberState
from .rules import STATES, Newcomers, Probe, Relay, SwimConfig, SwimStats, tags_of, wins
from .wire import U64_MAX, Action, Send, StateChange

__all__ = ["MAX_QUEUED", "Membership", "Message"]

Message = dict[str, Any]
MAX_QUEUED = 1024  # updates waiting to be piggybacked


@dataclass
class Membership:
    """Member records and update rules of one node (the state :class:`~pydevts.swim.SwimState` runs on)."""

    local: Member
    config: SwimConfig = field(default_factory=SwimConfig)
    rng: random.Random = field(default_factory=random.Random)
    members: dict[str, Member] = field(default_factory=dict)
    suspected_at: dict[str, float] = field(default_factory=dict)
    leaving: bool = False
    _seq: int = 0
    _probe: Probe | None = None
    _next_probe: float = 0.0
    _next_dead_probe: float = 0.0
    _next_reconnect: float = 0.0
    failed_at: dict[str, float] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)
    _relays: dict[int, Relay] = field(default_factory=dict)
    _gossip: list[list[Any]] = field(default_factory=list)  # [update, sends left]
    stats: SwimStats = field(default_factory=SwimStats)
    _order_new: list[str] = field(default_factory=list)  # probe order of the unconfirmed
    _probe_new: bool = False  # whose turn: an unconfirmed member or a confirmed one
    _notices: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)  # id -> (address, update)
    _notices_at: float = 0.0  # when the first of the waiting notices was queued (the next tick sends them)
    _unconfirmed: Newcomers = field(init=False)

    def __post_init__(self) -> None:
        self._unconfirmed = Newcomers(self.config, self.stats)

    # ------------------------------------------------------------------ views

    @property
    def incarnation(self) -> int:
        return self.local.incarnation

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive]

    def confirmed(self, node_id: str) -> bool:
        """False for a member heard of only through gossip (it has not answered us yet)."""
        return node_id not in self._unconfirmed

    def size(self) -> int:
        """This node and the confirmed live members (gossip alone cannot stretch timeouts)."""
        return 1 + sum(1 for m in self.members.values() if m.alive and m.id not in self._unconfirmed)

    def forget(self, node_id: str) -> None:
        """Drop a member that left or failed (the node reaped it); a later ``alive`` is news again."""
        member = self.members.get(node_id)
        if member is not None and not member.alive:
            del self.members[node_id]
            self.failed_at.pop(node_id, None)
            self.suspected_at.pop(node_id, None)
            self._unconfirmed.since.pop(node_id, None)
            self._notices.pop(node_id, None)
            self._gossip = [item for item in self._gossip if item[0][1] != node_id]

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < U64_MAX else 1
        return self._seq

    # ------------------------------------------------------------------ updates

    def _apply_update(
        self,
        update: list[Any],
        now: float,
        sender: str | None = None,
        *,
        wire: bool = False,
        spread: bool = True,
    ) -> list[Action]:
        """Apply one update (``wire``: from a datagram of ``sender``, not a router hint).

        ``spread``: first-hand news (our probe failed, our timer ran out, our
        router's link dropped) goes to every member at once; other news only
        rides on the next datagrams (:meth:`_queue`)."""
        kind, node_id, address, inc, tags = update
        if node_id == self.local.id:
            return self._about_self(kind, inc)
        current = self.members.get(node_id)
        if not wins(kind, inc, current):
            return []
        if current is None:
            admitted, victim = self._unconfirmed.admit(self.members, self.failed_at, now, wire)
            if not admitted:
                return []
            if victim is not None:
                self.forget(victim)
        base = current or Member(node_id, address, dict(tags or {}))
        new = replace(
            base,
            address=address or base.address,
            tags=dict(tags) if tags is not None else base.tags,
            incarnation=inc,
            state=STATES[kind],
        )
        self.members[node_id] = new
        if (current is None and wire) or (node_id in self._unconfirmed and not new.alive):
            self._unconfirmed.since[node_id] = now  # learned, or down since
        if new.state == MemberState.SUSPECT:
            self.stats.suspicions += node_id not in self.suspected_at
            self.suspected_at.setdefault(node_id, now)
        else:
            self.suspected_at.pop(node_id, None)
        if new.state == MemberState.FAILED:
            self.stats.failures += node_id not in self.failed_at
            self.failed_at[node_id] = now
        else:
            self.failed_at.pop(node_id, None)
        broadcast = [kind, node_id, new.address, inc, tags_of(new, kind)]
        if kind != "alive" and sender != node_id and (not new.alive or node_id in self._unconfirmed):
            if not self._notices:
                self._notices_at = now
            self._notices[node_id] = (new.address, broadcast)  # not among the broadcast's recipients
        if not spread:
            self._queue(broadcast)
            if kind == "suspect" and sender != node_id and node_id not in self._unconfirmed:
                # The accused hears it at once from everyone who does, so that it refutes
                # even if the accuser's datagram to it was lost.
                return [StateChange(new), Send(node_id, new.address, {"t": "gossip", "u": [broadcast]})]
            return [StateChange(new)]
        return [StateChange(new), *self._broadcast(broadcast)]

    def _about_self(self, kind: str, inc: int) -> list[Action]:
        if kind not in ("suspect", "failed", "left") or self.leaving:
            return []
        if inc >= self.local.incarnation:  # refute (at most 2**64-1: accusations stop one below)
            self.local = replace(self.local, incarnation=min(inc + 1, U64_MAX))
        # An accusation about an older incarnation means our refutation was
        # lost somewhere: say it again.
        return self._announce_self()

    def _announce_self(self) -> list[Action]:
        me = self.local
        return self._broadcast(["alive", me.id, me.address, me.incarnation, dict(me.tags)])

    def _queue(self, update: list[Any]) -> None:
        """Queue ``update`` to ride on the next pings and acks (each a bounded number of times)."""
        n = self.size()
        # A newer update about a member replaces any queued one about it (memberlist's
        # invalidation); the queue never holds more than one item per member.
        self._gossip = [item for item in self._gossip if item[0][1] != update[1]]
        self._gossip.insert(0, [update, self.config.retransmit_mult * math.ceil(math.log10(n + 1))])
        del self._gossip[MAX_QUEUED:]

    def _broadcast(self, update: list[Any]) -> list[Action]:
        """Send ``update`` to every confirmed live member now (a suspect too: it may need to
        refute), and queue it to ride on the next pings and acks."""
        self._queue(update)
        return [
            Send(m.id, m.address, {"t": "gossip", "u": [update]})
            for m in self.members.values()
            if m.alive and m.id not in self._unconfirmed
        ]

    def _send(self, member: Member, message: Message) -> Send:
        """``message`` with queued updates piggybacked (each sent a bounded number of times;
        none to an unconfirmed member)."""
        if self._gossip and member.id not in self._unconfirmed:
            batch = self._gossip[: self.config.max_piggyback]
            message["u"] = [item[0] for item in batch]
            for item in batch:
                item[1] -= 1
            self._gossip = [item for item in self._gossip if item[1] > 0]
        return Send(member.id, member.address, message)
