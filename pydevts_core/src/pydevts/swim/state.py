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
types first (:mod:`pydevts.swim.wire`); an accusation always reaches the
accused too; members heard of only through gossip stay *unconfirmed* (no
broadcasts, no piggyback, no indirect probes, every other probe turn; see
:meth:`SwimState.confirmed`) until they answer a probe or the router links to
them, and are learned at a bounded rate, up to ``max_members``.

The machine takes inputs (a message, a tick with the current time, hints from
the router) and returns actions (send a message to a member, a member's new
state). It never touches a socket or a clock: :meth:`SwimState.next_deadline`
says when the next :meth:`~SwimState.tick` has something to do, so that a
driver sleeps until then instead of polling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..members import Member, MemberState
from .membership import Membership
from .rules import Probe, Relay, dead_targets, round_robin
from .wire import U64_MAX, Action, Send, StateChange
from .wire import check_update as _check
from .wire import id_field as _id
from .wire import parse_message as _parse

__all__ = ["MAX_RELAYS", "SwimState"]

MAX_RELAYS = 1024  # ping-reqs being relayed at once


@dataclass
class SwimState(Membership):
    """Failure detection for one node; see the module docstring."""

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

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` does something; None: nothing until an input.

        A tick before it returns no action and changes nothing; a tick at or after it does
        something (it may lie in the past: tick now). Each entry mirrors one test in :meth:`tick`:
        the probe's indirect stage and end (or clearing it, if its target is gone), suspicion
        timeouts (or clearing a stale entry), relayed pings expiring, the round of the dead,
        the next probe, accusations waiting to reach the accused. Any input may change it."""
        cfg = self.config
        due: list[float] = []
        probe = self._probe
        if probe is not None:
            target = self.members.get(probe.target)
            if target is None or not target.alive:
                due.append(probe.started)  # the next tick drops it (and may start the next one)
            elif not probe.indirect_sent:
                due.append(probe.started + cfg.probe_timeout)
            else:
                due.append(probe.started + cfg.probe_interval)
        if self.suspected_at:
            timeout = cfg.suspicion_timeout(self.size())
            for node_id, since in self.suspected_at.items():
                member = self.members.get(node_id)
                stale = member is None or member.state != MemberState.SUSPECT
                due.append(since if stale else since + timeout)
        due.extend(relay.expires for relay in self._relays.values())
        if not self.leaving:
            due.append(self._next_dead_probe)
            if self._probe is None:
                due.append(self._next_probe)
        if self._notices:
            due.append(self._notices_at)
        return min(due, default=None)

    def tick(self, now: float) -> list[Action]:
        """Time passed: probe stages, timeouts, the round of the dead (see :meth:`next_deadline`)."""
        actions: list[Action] = []
        cfg = self.config
        probe = self._probe
        if probe is not None:
            target = self.members.get(probe.target)
            if target is None or not target.alive:
                if now >= probe.started:
                    self._probe = None
            elif not probe.indirect_sent and now >= probe.started + cfg.probe_timeout:
                probe.indirect_sent = True
                self.stats.indirect_probes += 1
                actions += self._indirect(probe, target)
            elif probe.indirect_sent and now >= probe.started + cfg.probe_interval:
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
                if now >= since:
                    del self.suspected_at[node_id]
            elif now >= since + timeout:
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
        if self._notices and now >= self._notices_at:
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
