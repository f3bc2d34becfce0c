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

First-hand updates (this node's probe failed or its timer ran out, its
router's link dropped, its own refutation, leave or tags) and accusations
heard second-hand (``suspect``, ``failed``, ``left`` from a datagram) are
sent at once to every (confirmed) live member, so that every member starts
its suspicion timer together; every update is also piggybacked on the next
pings and acks (each about ``retransmit_mult * ceil(log10(N + 1))`` times),
so a lost datagram does not lose an update. Second-hand news that a member
is alive (from datagrams, or the router's link-up and leave hints) is only
piggybacked — whoever had it first-hand told everyone: a join wave of N
nodes costs O(N) datagrams, not N³/3.

Hostile input (see docs/membership.md): messages are validated into bounded
types first (:mod:`pydevts.swim_wire`); an accusation always reaches the
accused too; members heard of only through gossip stay *unconfirmed* (no
broadcasts, no piggyback, no indirect probes, every other probe turn; see
:meth:`SwimState.confirmed`) until they answer a probe or the router links to
them, and are learned at a bounded rate, up to ``max_members``.

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
from .swim_rules import Newcomers, Probe, Relay, SwimConfig, SwimStats, dead_targets, round_robin
from .swim_rules import tags_of as _tags
from .swim_rules import wins as _wins
from .swim_wire import U64_MAX, Action, Send, StateChange
from .swim_wire import check_update as _check
from .swim_wire import id_field as _id
from .swim_wire import parse_message as _parse

__all__ = ["Action", "Send", "StateChange", "SwimConfig", "SwimState", "SwimStats"]

Message = dict[str, Any]
MAX_QUEUED = 1024  # updates waiting to be piggybacked
MAX_RELAYS = 1024  # ping-reqs being relayed at once


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

    # ------------------------------------------------------------------ hints from the router

    def learn(self, member: Member, now: float) -> list[Action]:
        """The router reached ``member`` (a link came up): it is alive at that incarnation (unless
        it fails the wire's checks, counted: gossip about it would make others drop datagrams)."""
        update = ["alive", member.id, member.address, member.incarnation, dict(member.tags)]
        try:
            _check(update)
        except ValueError:
            self.stats.hints_refused += 1
            return []
        self._unconfirmed.since.pop(member.id, None)
        # The router that linked it tells its other members itself: no broadcast (in a full
        # mesh every node gets this hint about every other, N² broadcasts of N datagrams).
        return self._apply_update(update, now, spread=False)

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
            self._unconfirmed.since.pop(node_id, None)
            self._notices.pop(node_id, None)
            self._gossip = [item for item in self._gossip if item[0][1] != node_id]

    def member_left(self, node_id: str, now: float) -> list[Action]:
        """The member said it leaves (over the router's link)."""
        member = self.members.get(node_id)
        if member is None:
            return []
        # The leaver told every member itself (leave()): pass it on by piggyback only.
        update = ["left", node_id, member.address, member.incarnation, None]
        return self._apply_update(update, now, node_id, spread=False)

    def leave(self, now: float) -> list[Action]:
        """This node leaves: tell every live member."""
        self.leaving = True
        update = ["left", self.local.id, self.local.address, self.local.incarnation, None]
        return self._broadcast(update)

    def set_tags(self, tags: Mapping[str, str], now: float) -> list[Action]:
        """This node's tags changed: announce them with a new incarnation."""
        # Saturates at 2**64-1 (only reachable if datagrams pushed it there; see the docs).
        self.local = replace(
            self.local, tags=dict(tags), incarnation=min(self.local.incarnation + 1, U64_MAX)
        )
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
                self.stats.indirect_probes += 1
                actions += self._indirect(probe, target)
            elif now - probe.started >= cfg.probe_interval:
                self._probe = None
                if target.state == MemberState.ALIVE:
                    self.stats.probes_failed += 1
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
            for node_id in self._unconfirmed.expired(self.members, now):
                self.forget(node_id)
            actions += self._probe_the_dead(now)
        if self._probe is None and now >= self._next_probe and not self.leaving:
            self._next_probe = now + cfg.probe_interval
            actions += self._start_probe(now)
        if self._notices:
            # Accusations about members we no longer send to: the accused hears them too.
            if not self.leaving:
                actions += [Send(i, a, {"t": "gossip", "u": [u]}) for i, (a, u) in self._notices.items()]
            self._notices.clear()
        return actions

    def _start_probe(self, now: float) -> list[Action]:
        target = self._next_target()
        if target is None:
            return []
        self._probe = Probe(self._next_seq(), target.id, now)
        self.stats.probes += 1
        return [self._send(target, {"t": "ping", "seq": self._probe.seq})]

    def _next_target(self) -> Member | None:
        """Round-robin over a shuffled list; unconfirmed members get at most every other turn."""
        new = {m.id for m in self.members.values() if m.alive and m.id in self._unconfirmed}
        old = {m.id for m in self.members.values() if m.alive} - new
        self._probe_new = not self._probe_new
        pools = [(new, self._order_new), (old, self._order)]
        for candidates, order in pools if self._probe_new else reversed(pools):
            if (node_id := round_robin(candidates, order, self.rng)) is not None:
                return self.members[node_id]
        return None

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < U64_MAX else 1
        return self._seq

    def _probe_the_dead(self, now: float) -> list[Action]:
        """Ping failed members, with our own ``alive`` on board, so that after a
        partition heals both sides find each other again (memberlist's gossip
        to the dead): one failed within ``dead_probe_window`` per call, and one
        failed longer ago per ``reconnect_interval`` (Serf's reconnect) until
        the node reaps it."""
        dead = {n: since for n, since in self.failed_at.items() if n not in self._unconfirmed}
        targets, reconnect = dead_targets(dead, now, self.config, self.rng, now >= self._next_reconnect)
        if reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
        me = self.local
        actions: list[Action] = []
        for node_id in targets:
            target = self.members[node_id]
            alive = ["alive", me.id, me.address, me.incarnation, dict(me.tags)]
            ping = {"t": "ping", "seq": self._next_seq(), "addr": me.address, "u": [alive]}
            actions.append(Send(target.id, target.address, ping))
        return actions

    def _indirect(self, probe: Probe, target: Member) -> list[Action]:
        if target.id in self._unconfirmed:
            return []  # never proven reachable: nobody else is asked to send it anything
        helpers = [m for m in self.live() if m.id != target.id and m.id not in self._unconfirmed]
        self.rng.shuffle(helpers)
        msg = {"t": "ping-req", "seq": probe.seq, "target": target.id, "addr": target.address}
        return [self._send(h, dict(msg)) for h in helpers[: self.config.indirect_checks]]

    # ------------------------------------------------------------------ messages

    def receive(self, sender: str, message: Any, now: float) -> list[Action]:
        """A datagram from member ``sender``; raise ValueError if it (or ``sender``) is malformed."""
        # Validate everything before changing anything.
        _id(sender, "sender id")
        msg = _parse(message)
        actions: list[Action] = []
        for update in msg.updates:
            # Second-hand news that a member is alive (joins, refutations, tags: most of it)
            # rides on pings and acks: whoever had it first-hand sent it to every member already.
            # An accusation is passed on at once, so that every member starts its suspicion
            # timer together (the first to time out declares the member failed).
            spread = update[0] != "alive"
            actions += self._apply_update(update, now, sender, wire=True, spread=spread)
        member = self.members.get(sender)
        if member is not None and member.state != MemberState.ALIVE and msg.kind != "gossip":
            # It talks, so it runs: tell it what we think of it, so that it refutes.
            accusation = [member.state.value, member.id, member.address, member.incarnation, None]
            actions.append(Send(member.id, member.address, {"t": "gossip", "u": [accusation]}))
            if not member.alive:
                return actions
        if msg.kind == "ping":
            if member is not None and member.alive:
                actions.append(self._send(member, {"t": "ack", "seq": msg.seq}))
            elif msg.addr is not None:  # a relayed ping from someone we do not know yet
                # Nothing piggybacked: a stranger's small ping must not buy a large answer.
                actions.append(Send(sender, msg.addr, {"t": "ack", "seq": msg.seq}))
        elif msg.kind == "ack":
            actions += self._on_ack(sender, msg.seq, now)
        elif msg.kind == "ping-req":
            assert msg.target is not None and msg.addr is not None
            if member is None or sender in self._unconfirmed or len(self._relays) >= MAX_RELAYS:
                self.stats.ping_reqs_refused += 1  # only confirmed members may have us send pings
                return actions
            seq = self._next_seq()
            self._relays[seq] = Relay(sender, msg.seq, now + self.config.probe_interval)
            target = self.members.get(msg.target) or Member(msg.target, msg.addr)
            actions.append(self._send(target, {"t": "ping", "seq": seq, "addr": self.local.address}))
        return actions

    def _on_ack(self, sender: str, seq: int, now: float) -> list[Action]:
        probe = self._probe
        if probe is not None and probe.seq == seq and probe.target == sender:
            self._probe = None
            self.stats.probes_acked += 1
            self.stats.probe_rtt_us += int((now - probe.started) * 1e6)
            if self._unconfirmed.since.pop(sender, None) is not None:
                member = self.members.get(sender)
                if member is not None and member.alive:
                    return [StateChange(member)]  # confirmed: now the router may hear of it
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
        if not _wins(kind, inc, current):
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
            state=_STATES[kind],
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
        broadcast = [kind, node_id, new.address, inc, _tags(new, kind)]
        if kind != "alive" and sender != node_id and (not new.alive or node_id in self._unconfirmed):
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
