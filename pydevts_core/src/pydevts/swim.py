"""SWIM-style failure detection and membership dissemination (sans-IO).

Theory of operation
-------------------
Each node probes one member per ``probe_interval`` (round-robin over a
shuffled list): it sends ``ping``; if no ``ack`` comes within
``probe_timeout`` it asks ``indirect_checks`` other members to ``ping-req``
the target for it; if no ack (direct or relayed) comes by the end of the
round, the target becomes **suspect**. A suspect that does not refute within
the suspicion timeout becomes **failed**::

    suspicion timeout = suspicion_mult * max(1, log10(N)) * probe_interval

A router may also report a strong hint — its link to a member dropped —
which makes the member suspect at once (then the same timeout applies).

Every member has an *incarnation* number that only it may raise. Updates
(``alive``, ``suspect``, ``failed``, ``left``) carry the incarnation they are
about and are ordered by these rules:

- ``alive(i)`` wins over anything with a lower incarnation (a refutation, a
  tag change, or a restarted node coming back);
- ``suspect(i)`` wins over ``alive(j)`` with ``j <= i`` and ``suspect(j)`` with ``j < i``;
- ``failed(i)`` wins over ``alive``/``suspect`` with ``j <= i``;
- ``left(i)`` wins over everything with ``j <= i``, ``failed`` included (leave beats failed);
- updates about older incarnations are ignored.

A node that hears itself suspected or declared failed refutes: it raises its
incarnation above the one in the update and announces ``alive``. That is
what keeps a node that is merely slow (a blocked event loop, CPU contention)
from being declared failed, as long as it answers within the suspicion
window.

Updates are sent at once to every live member, and also piggybacked on the
next pings and acks (each about ``retransmit_mult * ceil(log10(N + 1))``
times), so a lost datagram does not lose an update.

The machine takes inputs (a message, a tick with the current time, hints from
the router) and returns actions (send a message to a member, a member's new
state). It never touches a socket or a clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .members import Member, MemberState
from .swim_rules import STATES as _STATES
from .swim_rules import SwimConfig
from .swim_rules import check_update as _check_update
from .swim_rules import int_field as _int
from .swim_rules import tags_of as _tags
from .swim_rules import wins as _wins

__all__ = ["Send", "StateChange", "SwimConfig", "SwimState"]

Message = dict[str, Any]
MAX_QUEUED = 1024  # updates waiting to be piggybacked


@dataclass(frozen=True)
class Send:
    """Send ``message`` to member ``to`` at ``address``."""

    to: str
    address: str
    message: Message


@dataclass(frozen=True)
class StateChange:
    """A member's new record (state, incarnation, tags)."""

    member: Member


Action = Send | StateChange


@dataclass
class _Probe:
    seq: int
    target: str
    started: float
    indirect_sent: bool = False


@dataclass
class _Relay:
    requester: str
    requester_seq: int
    expires: float


@dataclass
class SwimState:
    """Failure detection for one node; see the module docstring."""

    local: Member
    config: SwimConfig = field(default_factory=SwimConfig)
    rng: random.Random = field(default_factory=random.Random)
    members: dict[str, Member] = field(default_factory=dict)
    suspected_at: dict[str, float] = field(default_factory=dict)
    leaving: bool = False
    _seq: int = 0
    _probe: _Probe | None = None
    _next_probe: float = 0.0
    _next_dead_probe: float = 0.0
    _next_reconnect: float = 0.0
    failed_at: dict[str, float] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)
    _relays: dict[int, _Relay] = field(default_factory=dict)
    _gossip: list[list[Any]] = field(default_factory=list)  # [update, sends left]

    # ------------------------------------------------------------------ views

    @property
    def incarnation(self) -> int:
        return self.local.incarnation

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive]

    def size(self) -> int:
        return 1 + len(self.live())

    # ------------------------------------------------------------------ hints from the router

    def learn(self, member: Member, now: float) -> list[Action]:
        """The router reached ``member`` (a link came up): it is alive at that incarnation."""
        update = ["alive", member.id, member.address, member.incarnation, dict(member.tags)]
        return self._apply_update(update, now)

    def link_down(self, node_id: str, now: float) -> list[Action]:
        """The router's link to ``node_id`` dropped without a leave: suspect it now."""
        member = self.members.get(node_id)
        if member is None or member.state != MemberState.ALIVE:
            return []
        return self._apply_update(["suspect", node_id, member.address, member.incarnation, None], now)

    def confirm_failed(self, node_id: str, now: float) -> list[Action]:
        """The router has proof the member is gone (its address refuses connections): fail it now."""
        member = self.members.get(node_id)
        if member is None or not member.alive:
            return []
        return self._apply_update(["failed", node_id, member.address, member.incarnation, None], now)

    def forget(self, node_id: str) -> None:
        """Drop a member that left or failed (the node reaped it); a later ``alive`` is news again."""
        member = self.members.get(node_id)
        if member is not None and not member.alive:
            del self.members[node_id]
            self.failed_at.pop(node_id, None)
            self.suspected_at.pop(node_id, None)
            self._gossip = [item for item in self._gossip if item[0][1] != node_id]

    def member_left(self, node_id: str, now: float) -> list[Action]:
        """The member said it leaves (over the router's link)."""
        member = self.members.get(node_id)
        if member is None:
            return []
        return self._apply_update(["left", node_id, member.address, member.incarnation, None], now)

    def leave(self, now: float) -> list[Action]:
        """This node leaves: tell every live member."""
        self.leaving = True
        update = ["left", self.local.id, self.local.address, self.local.incarnation, None]
        return self._broadcast(update)

    def set_tags(self, tags: Mapping[str, str], now: float) -> list[Action]:
        """This node's tags changed: announce them with a new incarnation."""
        self.local = replace(self.local, tags=dict(tags), incarnation=self.local.incarnation + 1)
        return self._announce_self()

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        cfg = self.config
        probe = self._probe
        if probe is not None:
            target = self.members.get(probe.target)
            if target is None or not target.alive:
                self._probe = None
            elif not probe.indirect_sent and now - probe.started >= cfg.probe_timeout:
                probe.indirect_sent = True
                actions += self._indirect(probe, target)
            elif now - probe.started >= cfg.probe_interval:
                self._probe = None
                if target.state == MemberState.ALIVE:
                    actions += self._apply_update(
                        ["suspect", target.id, target.address, target.incarnation, None], now
                    )
        timeout = cfg.suspicion_timeout(self.size())
        for node_id, since in list(self.suspected_at.items()):
            member = self.members.get(node_id)
            if member is None or member.state != MemberState.SUSPECT:
                del self.suspected_at[node_id]
            elif now - since >= timeout:
                actions += self._apply_update(
                    ["failed", node_id, member.address, member.incarnation, None], now
                )
        for seq, relay in list(self._relays.items()):
            if now >= relay.expires:
                del self._relays[seq]
        if now >= self._next_dead_probe and not self.leaving:
            self._next_dead_probe = now + cfg.dead_probe_interval
            actions += self._probe_the_dead(now)
        if self._probe is None and now >= self._next_probe and not self.leaving:
            self._next_probe = now + cfg.probe_interval
            actions += self._start_probe(now)
        return actions

    def _start_probe(self, now: float) -> list[Action]:
        candidates = {m.id for m in self.live()}
        self._order = [i for i in self._order if i in candidates]
        if not self._order:
            self._order = sorted(candidates)
            self.rng.shuffle(self._order)
        if not self._order:
            return []
        target = self.members[self._order.pop()]
        self._seq += 1
        self._probe = _Probe(self._seq, target.id, now)
        return [self._send(target, {"t": "ping", "seq": self._seq})]

    def _probe_the_dead(self, now: float) -> list[Action]:
        """Ping failed members, with our own ``alive`` on board, so that after a
        partition heals both sides find each other again (memberlist's gossip
        to the dead): one failed within ``dead_probe_window`` per call, and one
        failed longer ago per ``reconnect_interval`` (Serf's reconnect) until
        the node reaps it."""
        cfg = self.config
        recent = sorted(n for n, since in self.failed_at.items() if now - since <= cfg.dead_probe_window)
        targets = [self.rng.choice(recent)] if recent else []
        older = sorted(set(self.failed_at) - set(recent))
        if older and now >= self._next_reconnect:
            self._next_reconnect = now + cfg.reconnect_interval
            targets.append(self.rng.choice(older))
        me = self.local
        actions: list[Action] = []
        for node_id in targets:
            target = self.members[node_id]
            self._seq += 1
            alive = ["alive", me.id, me.address, me.incarnation, dict(me.tags)]
            ping = {"t": "ping", "seq": self._seq, "addr": me.address, "u": [alive]}
            actions.append(Send(target.id, target.address, ping))
        return actions

    def _indirect(self, probe: _Probe, target: Member) -> list[Action]:
        helpers = [m for m in self.live() if m.id != target.id]
        self.rng.shuffle(helpers)
        msg = {"t": "ping-req", "seq": probe.seq, "target": target.id, "addr": target.address}
        return [self._send(h, dict(msg)) for h in helpers[: self.config.indirect_checks]]

    # ------------------------------------------------------------------ messages

    def receive(self, sender: str, message: Message, now: float) -> list[Action]:
        """A datagram from member ``sender``; raise ValueError if it is malformed."""
        # Validate everything before changing anything.
        if not isinstance(message, dict):
            raise ValueError(f"SWIM message is not an object: {message!r}")
        raw_updates = message.get("u") or []
        if not isinstance(raw_updates, list):
            raise ValueError(f"SWIM updates are not a list: {raw_updates!r}")
        updates = [_check_update(u) for u in raw_updates]
        kind = message.get("t")
        if kind not in ("ping", "ack", "ping-req", "gossip"):
            raise ValueError(f"unknown SWIM message type {kind!r}")
        seq = _int(message.get("seq")) if kind != "gossip" else 0
        if kind == "ping-req" and not (
            isinstance(message.get("target"), str) and isinstance(message.get("addr"), str)
        ):
            raise ValueError(f"ping-req without target: {message!r}")

        actions: list[Action] = []
        for update in updates:
            actions += self._apply_update(update, now)
        member = self.members.get(sender)
        if (
            member is not None
            and member.state in (MemberState.FAILED, MemberState.SUSPECT)
            and kind != "gossip"
        ):
            # It talks, so it runs: tell it what we think of it, so that it refutes.
            accusation = [member.state.value, member.id, member.address, member.incarnation, None]
            actions.append(Send(member.id, member.address, {"t": "gossip", "u": [accusation]}))
            if member.state == MemberState.FAILED:
                return actions
        if kind == "ping":
            if member is not None and member.alive:
                actions.append(self._send(member, {"t": "ack", "seq": seq}))
            elif isinstance(message.get("addr"), str):  # a relayed ping from someone we do not know yet
                stranger = Member(sender, message["addr"])
                actions.append(self._send(stranger, {"t": "ack", "seq": seq}))
        elif kind == "ack":
            actions += self._on_ack(sender, seq)
        elif kind == "ping-req":
            target_id, addr = message["target"], message["addr"]
            self._seq += 1
            self._relays[self._seq] = _Relay(sender, seq, now + self.config.probe_interval)
            target = self.members.get(target_id) or Member(target_id, addr)
            actions.append(self._send(target, {"t": "ping", "seq": self._seq, "addr": self.local.address}))
        return actions

    def _on_ack(self, sender: str, seq: int) -> list[Action]:
        probe = self._probe
        if probe is not None and probe.seq == seq and probe.target == sender:
            self._probe = None
            return []
        relay = self._relays.pop(seq, None)
        if relay is not None:
            requester = self.members.get(relay.requester)
            if requester is not None:
                return [self._send(requester, {"t": "ack", "seq": relay.requester_seq, "via": self.local.id})]
            return []
        if probe is not None and probe.seq == seq:  # relayed ack for our own probe
            self._probe = None
        return []

    # ------------------------------------------------------------------ updates

    def _apply_update(self, update: list[Any], now: float) -> list[Action]:
        kind, node_id, address, inc, tags = update
        if node_id == self.local.id:
            return self._about_self(kind, inc)
        current = self.members.get(node_id)
        if not _wins(kind, inc, current):
            return []
        base = current or Member(node_id, address, dict(tags or {}))
        new = replace(
            base,
            address=address or base.address,
            tags=dict(tags) if tags is not None else base.tags,
            incarnation=inc,
            state=_STATES[kind],
        )
        self.members[node_id] = new
        if new.state == MemberState.SUSPECT:
            self.suspected_at.setdefault(node_id, now)
        else:
            self.suspected_at.pop(node_id, None)
        if new.state == MemberState.FAILED:
            self.failed_at[node_id] = now
        else:
            self.failed_at.pop(node_id, None)
        return [StateChange(new), *self._broadcast([kind, node_id, new.address, inc, _tags(new, kind)])]

    def _about_self(self, kind: str, inc: int) -> list[Action]:
        if kind not in ("suspect", "failed", "left") or self.leaving:
            return []
        if inc >= self.local.incarnation:
            self.local = replace(self.local, incarnation=inc + 1)  # refute
        # An accusation about an older incarnation means our refutation was
        # lost somewhere: say it again.
        return self._announce_self()

    def _announce_self(self) -> list[Action]:
        me = self.local
        return self._broadcast(["alive", me.id, me.address, me.incarnation, dict(me.tags)])

    def _broadcast(self, update: list[Any]) -> list[Action]:
        """Send ``update`` to every live member now (the subject too: it may need to refute),
        and queue it to ride on the next pings and acks."""
        n = self.size()
        # A newer update about a member replaces any queued one about it (memberlist's
        # invalidation); the queue never holds more than one item per member.
        self._gossip = [item for item in self._gossip if item[0][1] != update[1]]
        self._gossip.insert(0, [update, self.config.retransmit_mult * math.ceil(math.log10(n + 1))])
        del self._gossip[MAX_QUEUED:]
        return [Send(m.id, m.address, {"t": "gossip", "u": [update]}) for m in self.live()]

    def _send(self, member: Member, message: Message) -> Send:
        """``message`` with queued updates piggybacked (each sent a bounded number of times)."""
        if self._gossip:
            batch = self._gossip[: self.config.max_piggyback]
            message["u"] = [item[0] for item in batch]
            for item in batch:
                item[1] -= 1
            self._gossip = [item for item in self._gossip if item[1] > 0]
        return Send(member.id, member.address, message)
