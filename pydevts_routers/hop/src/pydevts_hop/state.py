"""The hop router's routing state machine (sans-IO): link state, trees, exactly-once.

Theory of operation
-------------------
*Topology: link state.* Every node floods an advert (:class:`~.wire.Advert`):
its id, address, tags, the neighbours it has links to and a ``left`` flag,
versioned by ``(incarnation, seq)`` — the incarnation is the node's start
time, ``seq`` grows with every change. A node re-floods an advert to all its
other neighbours the first time it sees that version, and sends its whole
advert database to a new neighbour, so each node holds every advert of its
part of the network. Link state rather than distance vector: a change reaches
every node in one network diameter with no counting to infinity, and every
node can compute any other node's tree, which broadcasts need.

*Routes.* The graph has an edge only where both ends' adverts list each
other; from it each node computes breadth-first trees with a deterministic
tie-break (:mod:`.topology`). Its own tree gives next hop and distance per
member; a member outside it is *failed*, one whose advert says ``left`` is
*left*. Failure detection is per link — a keepalive on every link idle for
``keepalive_interval``, a link silent for ``dead_interval`` is closed — and a
member's liveness is known through the routes that reach it.

*Unicast* follows the **origin's** tree: a relay sends to its child on the
tree path to the destination (falling back to its own shortest route when
its view disagrees), so all of one origin's traffic to one node, unicast and
broadcast alike, takes one path of FIFO links while views agree: per-sender
order holds. A unicast to a neighbour leaves as the raw core frame (no
header); relayed ones carry origin, destination and a hop limit of
``2 x distance + hop_slack``, so a unicast caught between inconsistent views
dies after that many links. A request that cannot be routed is answered
"unreachable" on the destination's behalf, so the requester fails at once.

*Broadcast* follows the origin's tree too: each node sends only to its
children, so a broadcast costs N-1 frames once views agree. While they may
not agree — for ``settle_time`` after this node's view changed, or when a
copy arrives from a neighbour that is not our parent in the origin's tree, or
flagged ``flood`` — a node *floods* it (to every neighbour but the sender)
and flags it, so everything downstream floods as well: a broadcast then
costs up to twice the number of links, but reaches every node still
connected, because the first node to see a cut floods (see the README). Every
node drops copies it has seen by ``(origin, incarnation, seq)`` in a bounded
per-origin window (:mod:`.dedup`), so no handler sees one twice, and the
origin never delivers its own.

Adverts of nodes that have been unreachable or left for ``purge_after`` are
forgotten, and so is the longest gone when ``max_nodes`` adverts fill the
table and a new node appears. Every input takes ``now`` (seconds, any
monotonic clock); the machine never reads a clock nor touches a socket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pydevts.errors import LocalProtocolError, UnknownNodeError
from pydevts.members import Member
from pydevts.wire import ROUTER_KIND_MIN, ErrorCode, encode_error, request_id_of

from .actions import Action, CloseLink, Deliver, Dropped, HopConfig, HopStatistics, MemberChange, Send
from .dedup import Dedup, Verdict
from .dialer import Dialer
from .reorder import Reorder
from .roster import Roster
from .topology import Routes
from .wire import (
    KEEPALIVE_FRAME,
    Advert,
    Broadcast,
    HopFrame,
    Keepalive,
    Unicast,
    decode,
    encode_advert,
    encode_broadcast,
    encode_unicast,
    relay,
)

__all__ = ["HopState"]


@dataclass(slots=True)
class _Link:
    heard: float  # last frame received
    sent: float  # last frame sent


class HopState:
    """Routing state of one node; every input returns the actions to carry out, in order."""

    def __init__(self, local: Member, config: HopConfig | None = None, now: float = 0.0) -> None:
        self.local_id = local.id
        self.config = config or HopConfig()
        self.links: dict[str, _Link] = {}
        self.adverts: dict[str, Advert] = {}
        self._frames: dict[str, bytes] = {}  # adverts as received, to relay and sync unchanged
        self._held: set[bytes] = set()  # the same frames, to skip exact copies without decoding
        self._own = Advert(local.id, local.incarnation, 0, local.address, dict(local.tags))
        self._left = False
        self._advertised_at = now
        self._install_own()
        self._routes = Routes(local.id, self.config.hop_slack)
        self._settle_until = -math.inf
        self._roster = Roster(local.id)
        self._dialer = Dialer(local.id, self.config)
        self._dedup = Dedup(self.config.dedup_window)
        self._reorder = Reorder(self.config.reorder_wait)
        self._learned: dict[str, float] = {}  # when each origin's (current run's) advert first came
        self._bseq = 0
        self.stats = HopStatistics()

    # ------------------------------------------------------------------ views

    @property
    def members(self) -> Mapping[str, MemberChange]:
        """Every member reported so far, as last reported."""
        return self._roster.reported

    def route(self, dest: str) -> tuple[str, int] | None:
        """``(next hop, distance)`` to ``dest``, or ``None`` if it is unreachable."""
        hop = self._routes.hops.get(dest)
        return None if hop is None else (hop, self._routes.tree.depth[dest])

    def flooding(self, now: float) -> bool:
        """Whether broadcasts are flooded now (the view changed less than ``settle_time`` ago)."""
        return now < self._settle_until

    def statistics(self) -> dict[str, int]:
        return self.stats.as_dict() | {
            "known_nodes": len(self.adverts),
            "dedup_origins": len(self._dedup),
            "broadcasts_held_for_order": self._reorder.held_total,
            "unicasts_held_for_order": self._reorder.unicasts_held,
            "order_gaps_skipped": self._reorder.gaps_skipped,
        }

    # ------------------------------------------------------------------ links

    def link_up(self, member: Member, now: float) -> list[Action]:
        """A link to ``member`` passed its handshake: advertise it, send our database."""
        if member.id == self.local_id:
            raise LocalProtocolError("a link to this node itself")
        if member.id in self.links:
            self.links[member.id].heard = now
            return []
        self.links[member.id] = _Link(now, now)
        self._dialer.forget(member.id)
        actions = self._originate(now)
        actions += [Send(member.id, f) for nid, f in self._frames.items() if nid != self.local_id]
        self.stats.adverts_sent += len(self._frames) - 1
        return self._stamp(actions + self._recompute(now, self.local_id), now)

    def link_down(self, neighbour: str, now: float) -> list[Action]:
        """The link to ``neighbour`` closed (a no-op if it is not linked)."""
        if self.links.pop(neighbour, None) is None:
            return []
        self._lost(neighbour, now)
        return self._stamp(self._originate(now) + self._recompute(now, self.local_id), now)

    def heard(self, neighbour: str, now: float) -> None:
        """Something arrived from ``neighbour`` that is not for :meth:`receive` (a raw core frame),
        or the link host is still busy with what did: the link is not silent."""
        link = self.links.get(neighbour)
        if link is not None:
            link.heard = now

    def unicast_from(self, origin: str, frames: list[bytes]) -> list[bytes]:
        """Core frames ``origin`` sent to this node: those to hand to the node now (all of them,
        unless some of ``origin``'s broadcasts are held for order: then they wait behind those and
        come out later as :class:`Deliver` actions of :meth:`receive` or :meth:`tick`, so a
        ``send`` never overtakes an earlier ``emit``). Raw frames pass through it (``direct``)."""
        return self._reorder.unicast(origin, frames)

    def connect_failed(self, member_id: str, now: float) -> list[Action]:
        """A :class:`Connect` did not produce a link: retry later, with backoff."""
        self._dialer.failed(member_id, now)
        return []

    # ------------------------------------------------------------------ frames

    def receive(self, neighbour: str, frame: bytes, now: float) -> list[Action]:
        """A router frame (kind ``0x40`` or above) arrived on the link to ``neighbour``.

        Raises :class:`~.wire.HopWireError` (a ValueError) for a malformed
        frame, before anything changes.
        """
        if frame in self._held:  # a copy of an advert we hold, byte for byte: well-formed, no news
            self.stats.adverts_ignored += 1
            msg: HopFrame = Keepalive()
        else:
            msg = decode(frame)
        link = self.links.get(neighbour)
        if link is None:
            self.stats.from_unlinked += 1
            return []
        link.heard = now
        if isinstance(msg, Keepalive):
            return []
        if isinstance(msg, Advert):
            actions = self._on_advert(neighbour, msg, frame, now)
        elif isinstance(msg, Broadcast):
            actions = self._on_broadcast(neighbour, msg, frame, now)
        else:
            actions = self._on_unicast(neighbour, msg, frame)
        return self._stamp(actions, now)

    def broadcast(self, frame: bytes, now: float) -> list[Action]:
        """Send the core frame ``frame`` to every other reachable node, once each."""
        self._check_origin()
        self._bseq += 1
        flood = self.flooding(now)
        targets = list(self.links) if flood else self._routes.children_of(self.local_id)
        hop_limit = min(255, 2 * self._routes.tree.height + self.config.hop_slack) or 1
        out = encode_broadcast(
            self.local_id, self._own.incarnation, self._bseq, hop_limit, frame, flood=flood
        )
        self.stats.broadcasts_sent += 1
        self.stats.broadcast_frames += len(targets)
        return self._stamp([Send(n, out) for n in targets], now)

    def send(self, dest: str, frame: bytes, now: float) -> list[Action]:
        """Send the core frame ``frame`` to ``dest``; raise UnknownNodeError if it is unreachable."""
        self._check_origin()
        if dest == self.local_id:
            raise LocalProtocolError("the hop router does not send to its own node")
        if not frame or frame[0] >= ROUTER_KIND_MIN:
            raise LocalProtocolError("the hop router carries core frames only (first byte below 0x40)")
        hop = self._routes.hops.get(dest)
        if hop is None:
            raise UnknownNodeError(dest, self._why_unreachable(dest))
        self.stats.unicasts_sent += 1
        self.stats.unicast_frames += 1
        if hop != dest:
            frame = encode_unicast(self.local_id, dest, self._routes.hop_limit(dest), frame)
        return self._stamp([Send(hop, frame)], now)

    # ------------------------------------------------------------------ time, tags, leave

    def tick(self, now: float) -> list[Action]:
        """Close silent links, send keepalives, refresh our advert, purge, connect."""
        cfg = self.config
        actions: list[Action] = []
        dead = [n for n, link in self.links.items() if now - link.heard >= cfg.dead_interval]
        for n in dead:
            del self.links[n]
            self._lost(n, now)
            self.stats.links_timed_out += 1
            actions.append(CloseLink(n, f"nothing heard from {n} for {cfg.dead_interval:g} s"))
        if dead or (not self._left and now - self._advertised_at >= cfg.refresh_interval):
            actions += self._originate(now) + self._recompute(now, self.local_id)
        self._stamp(actions, now)
        for n, link in self.links.items():
            if now - link.sent >= cfg.keepalive_interval:
                actions.append(Send(n, KEEPALIVE_FRAME))
                self.stats.keepalives_sent += 1
        actions += [Deliver(origin, f) for origin, f in self._reorder.due(now)]
        actions += self._purge(now)
        if not self._left:
            actions += self._dialer.due(now, self.adverts, self.links, self._routes.hops)
        return self._stamp(actions, now)

    def set_tags(self, tags: Mapping[str, str], now: float) -> list[Action]:
        """This node's tags changed: advertise them."""
        self._own = replace(self._own, tags=dict(tags))
        return self._stamp(self._originate(now) + self._recompute(now, self.local_id), now)

    def leave(self, now: float) -> list[Action]:
        """This node leaves: advertise it (members see *left*); it originates nothing more."""
        self._left = True
        return self._stamp(self._originate(now) + self._recompute(now, self.local_id), now)

    # ------------------------------------------------------------------ adverts

    def _install_own(self) -> None:
        self._own = replace(
            self._own, seq=self._own.seq + 1, neighbours=frozenset(self.links), left=self._left
        )
        self.adverts[self.local_id] = self._own
        self._hold(self.local_id, encode_advert(self._own))

    def _hold(self, origin: str, frame: bytes | None) -> None:
        old = self._frames.pop(origin, None)
        if old is not None:
            self._held.discard(old)
        if frame is not None:
            self._frames[origin] = frame
            self._held.add(frame)

    def _originate(self, now: float) -> list[Action]:
        self._install_own()
        self._advertised_at = now
        frame = self._frames[self.local_id]
        self.stats.adverts_sent += len(self.links)
        return [Send(n, frame) for n in self.links]

    def _on_advert(self, neighbour: str, adv: Advert, frame: bytes, now: float) -> list[Action]:
        if adv.origin == self.local_id:
            if adv.incarnation == self._own.incarnation and adv.seq > self._own.seq:
                self._own = replace(self._own, seq=adv.seq)  # ours from before a state reset: go past it
                return self._originate(now) + self._recompute(now, self.local_id)
            self.stats.adverts_ignored += 1
            return []
        old = self.adverts.get(adv.origin)
        room: list[Action] = []
        if old is None and len(self.adverts) >= self.config.max_nodes:
            gone = self._roster.longest_gone()  # a full table makes room: the longest gone goes
            if gone is not None:
                room = self._drop(gone, now)
        if (old is not None and adv.version <= old.version) or (
            old is None and len(self.adverts) >= self.config.max_nodes
        ):
            self.stats.adverts_ignored += 1
            return room
        self.stats.adverts_accepted += 1
        if old is None or adv.incarnation > old.incarnation:
            self._learned[adv.origin] = now  # its broadcasts may already be racing towards us
        self.adverts[adv.origin] = adv
        self._hold(adv.origin, frame)
        if adv.left:
            self._dialer.forget(adv.origin)
        actions: list[Action] = [Send(n, frame) for n in self.links if n != neighbour]
        self.stats.adverts_sent += len(actions)
        return room + actions + self._recompute(now, adv.origin)

    # ------------------------------------------------------------------ data

    def _on_broadcast(self, neighbour: str, msg: Broadcast, frame: bytes, now: float) -> list[Action]:
        origin = msg.origin
        if origin == self.local_id:
            self.stats.broadcast_duplicates += 1
            return []
        if origin not in self.adverts:
            self.stats.unknown_origin_drops += 1
            return []
        verdict = self._dedup.check(origin, msg.incarnation, msg.seq)
        if verdict is not Verdict.NEW:
            if verdict is Verdict.DUPLICATE:
                self.stats.broadcast_duplicates += 1
            else:
                self.stats.too_old += 1
            return []
        tree = self._routes.tree_of(origin)
        flood = msg.flood or self.flooding(now) or tree.parent.get(self.local_id) != neighbour
        if flood:
            targets = [n for n in self.links if n != neighbour and n != origin]
            self.stats.broadcasts_flooded += 1
        else:
            targets = self._routes.children_of(origin)
        actions: list[Action] = []
        if targets and msg.hop_limit <= 1:
            self.stats.hop_limit_drops += 1
            actions = [Dropped(origin, msg.frame, f"its hop limit ran out at {self.local_id}")]
        elif targets:
            out = relay(frame, flood=flood)
            actions = [Send(n, out, origin, msg.frame) for n in targets]
            self.stats.broadcast_frames += len(targets)
        self.stats.broadcasts_delivered += 1
        # Just learned of the origin (we joined, or it did), or this copy was flooded (routes are
        # changing): its first broadcasts may race each other here, so the first one heard waits
        # for earlier numbers (at most reorder_wait). Not a matter of time alone: under load a
        # copy on a slow path arrives long after settle_time (one node got 20 before 1-19).
        fresh = flood or now - self._learned.get(origin, -math.inf) < self.config.settle_time
        ready = self._reorder.arrive(origin, msg.incarnation, msg.seq, msg.frame, now, fresh=fresh)
        actions += [Deliver(origin, f) for f in ready]
        return actions

    def _on_unicast(self, neighbour: str, msg: Unicast, frame: bytes) -> list[Action]:
        if msg.dest == self.local_id:
            if msg.origin not in self.adverts:
                self.stats.unknown_origin_drops += 1
                return []
            self.stats.unicasts_delivered += 1
            return [Deliver(msg.origin, f) for f in self.unicast_from(msg.origin, [msg.frame])]
        if msg.hop_limit <= 1:
            self.stats.hop_limit_drops += 1
            return self._bounce(msg, f"its hop limit ran out at {self.local_id}")
        tree = self._routes.tree_of(msg.origin)
        hop = tree.next_hop(self.local_id, msg.dest) if self.local_id in tree.depth else None
        if hop is None or hop not in self.links:
            hop = self._routes.hops.get(msg.dest)
        if hop is None:
            self.stats.no_route_drops += 1
            return self._bounce(msg, f"no route to it from {self.local_id}")
        self.stats.unicast_frames += 1
        return [Send(hop, relay(frame), msg.origin, msg.frame)]

    def _bounce(self, msg: Unicast, why: str) -> list[Action]:
        """Answer an unroutable request with an UNREACHABLE error, as if from its destination."""
        request_id = request_id_of(msg.frame)
        if request_id is None:
            return [Dropped(msg.origin, msg.frame, why)]
        error = encode_error(request_id, ErrorCode.UNREACHABLE, f"{msg.dest} is unreachable: {why}")
        self.stats.unreachable_replies += 1
        if msg.origin == self.local_id:
            return [Deliver(msg.dest, error)]
        hop = self._routes.hops.get(msg.origin)
        if hop is None:
            return []
        self.stats.unicast_frames += 1
        return [Send(hop, encode_unicast(msg.dest, msg.origin, self._routes.hop_limit(msg.origin), error))]

    # ------------------------------------------------------------------ routes and members

    def _recompute(self, now: float, changed: str) -> list[Action]:
        """``changed``'s advert changed: update graph, routes and member records."""
        routes = self._routes
        graph_changed, reachable = routes.update(self.adverts, changed)
        if graph_changed:
            if reachable:
                self._settle_until = now + self.config.settle_time
            return [*self._roster.update(now, self.adverts, routes.hops, routes.tree.depth)]
        adv = self.adverts.get(changed)
        adverts = {changed: adv} if adv is not None else {}
        return [*self._roster.update(now, adverts, routes.hops, routes.tree.depth)]

    def _why_unreachable(self, dest: str) -> str:
        adv = self.adverts.get(dest)
        if adv is None:
            return "not a member of this cluster (no route)"
        if adv.left:
            return "it left the cluster"
        return f"unreachable: no route to it from {self.local_id} (it is reported failed)"

    def _check_origin(self) -> None:
        if self._left:
            raise LocalProtocolError("this node has left the cluster")

    # ------------------------------------------------------------------ housekeeping

    def _stamp(self, actions: list[Action], now: float) -> list[Action]:
        for action in actions:
            if isinstance(action, Send):
                link = self.links.get(action.neighbour)
                if link is not None:
                    link.sent = now
        return actions

    def _lost(self, neighbour: str, now: float) -> None:
        adv = self.adverts.get(neighbour)
        if adv is not None and not adv.left:
            self._dialer.lost(neighbour, now)

    def _purge(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for nid in self._roster.expired(now, self.config.purge_after):
            actions += self._drop(nid, now)
        return actions

    def _drop(self, nid: str, now: float) -> list[Action]:
        """Forget ``nid`` (gone for ``purge_after``, or the longest gone when the table is full)."""
        self.adverts.pop(nid, None)
        self._hold(nid, None)
        self._roster.forget(nid)
        self._dialer.forget(nid)
        self._dedup.forget(nid)
        self._learned.pop(nid, None)
        self.stats.purged += 1
        return [Deliver(nid, f) for f in self._reorder.forget(nid)] + self._recompute(now, nid)
