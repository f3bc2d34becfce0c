"""The ``peer`` router: a full mesh, decided by :class:`~pydevts_peer.state.PeerState` and SWIM.

A :class:`pydevts.routing.RouterMachine`: core owns the links (adopting them,
the duplicate-link rule, redialling a link that drops, sessions) and sends
core messages straight on the link to their destination. This machine
decides who is a member and whom to link to, from two sources:

- :class:`~pydevts_peer.state.PeerState`: the links themselves and the
  ``sync``/``intro``/``leave`` control messages on them (kind ``0x40``, JSON);
- SWIM (:class:`pydevts.swim.FailureDetector`) over the node's datagram
  channel: probes decide who is alive, suspect or failed, not the links.

Arbitration between the two (the policy the old IO shell held):

- a member is reported to the node once it has a link (so a member the node
  lists alive can be sent to) and SWIM holds it alive;
- a link that drops without a ``leave`` is a *hint*: SWIM suspects the member
  at once and core redials; SWIM's verdict (alive again, or failed) decides;
- a redial the member's address refuses proves it gone: SWIM fails it now;
- a member SWIM fails or sees leave loses its link (``CloseLink``), and
  ``forget`` is refused while SWIM still holds a member alive.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydevts.members import Member, MemberState
from pydevts.routing import (
    ROUTER_KIND_MIN,
    Action,
    CloseLink,
    Connect,
    Control,
    RouterMachine,
    SendDatagram,
    UpdateMember,
    config_from_options,
)
from pydevts.swim import DetectorAction, FailureDetector, MemberChanged, SwimConfig
from pydevts.swim import SendDatagram as SwimDatagram

from . import state as st
from .state import PeerState

__all__ = ["CONTROL", "PeerRouter", "encode_control"]

log = logging.getLogger("pydevts.peer")

CONTROL = ROUTER_KIND_MIN  # 0x40: JSON control message


def encode_control(message: dict[str, object]) -> bytes:
    return bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode()


class PeerRouter(RouterMachine):
    """Full mesh: every node links to every other node; SWIM judges who is alive."""

    name = "peer"
    uses_datagrams = True

    def __init__(
        self,
        *,
        leave_timeout: float = 2.0,
        swim: SwimConfig | None = None,
        max_backoff: float = 2.0,
        seed: int | None = None,
        **swim_options: Any,
    ) -> None:
        """``swim_options``: SwimConfig fields by name (``Node(router_options=...)``, ``--router-option``)."""
        self.leave_timeout = float(leave_timeout)
        self.swim_config = config_from_options(SwimConfig, swim_options, base=swim or SwimConfig())
        if swim_options:
            raise TypeError(f"unknown option(s): {', '.join(sorted(swim_options))}")
        self.max_backoff = float(max_backoff)
        for name, value in (
            ("leave_timeout", self.leave_timeout),
            ("max_backoff", self.max_backoff),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._rng = random.Random(seed)
        self._state: PeerState | None = None
        self._detector: FailureDetector | None = None
        self.up: set[str] = set()  # members with a link now
        self.redialing: set[str] = set()  # link dropped, core redials it
        self.reported: dict[str, Member] = {}  # what the node was told, by member
        self._leaving = False

    @property
    def state(self) -> PeerState:
        assert self._state is not None, "the router has not started"
        return self._state

    @property
    def detector(self) -> FailureDetector:
        assert self._detector is not None, "the router has not started"
        return self._detector

    # ----------------------------------------------------------- lifecycle

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self._state = PeerState(local)
        self._detector = FailureDetector(local, cluster, self.swim_config, rng=self._rng)
        return []

    def set_tags(self, now: float, tags: Mapping[str, str]) -> list[Action]:
        self.state.local = replace(self.state.local, tags=dict(tags))
        return self._swim(self.detector.set_tags(tags, now), now)

    def leave(self, now: float) -> list[Action]:
        self._leaving = True
        return [*self._swim(self.detector.leave(now), now), *self._peer(self.state.leave(), now)]

    # ----------------------------------------------------------- links

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.up.add(peer.id)
        self.redialing.discard(peer.id)
        actions = self._peer(self.state.link_up(peer, now), now)
        member = self.detector.swim.members.get(peer.id)
        if member is not None and member.alive:
            actions.append(self._report(member))  # now it can be sent to
        return actions

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        self.up.discard(peer_id)
        if not resumable and peer_id in self.redialing:  # core's redial was refused: it is gone
            self.redialing.discard(peer_id)
            log.info("member %s is gone: its address refuses connections", peer_id)
            return self._swim(self.detector.confirm_failed(peer_id, now), now)
        if resumable:
            self.redialing.add(peer_id)
        return self._peer(self.state.link_down(peer_id, now), now, resumable=resumable)

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        return self._peer(self.state.connect_failed(member_id, now), now)

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        if not frame or frame[0] != CONTROL:
            raise ValueError(f"unknown router frame kind 0x{frame[0]:02x}" if frame else "empty frame")
        return self._peer(self.state.control(peer_id, json.loads(frame[1:]), now), now)

    def datagram(self, now: float, data: bytes) -> list[Action]:
        return self._swim(self.detector.handle_datagram(data, now), now)

    # ----------------------------------------------------------- time

    def next_deadline(self) -> float | None:
        if self._state is None or self._detector is None or self._leaving:
            return None
        deadlines = [d for d in (self.detector.next_deadline(), self.state.next_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        mesh = self.state.next_deadline()
        if mesh is not None and mesh <= now:
            actions += self._peer(self.state.tick(now), now)
        swim = self.detector.next_deadline()
        if swim is not None and swim <= now:
            actions += self._swim(self.detector.tick(now), now)
        return actions

    # ----------------------------------------------------------- bookkeeping

    def forget(self, member_id: str) -> bool:
        """Refused while the member has a link or SWIM holds it alive (it is coming back)."""
        member = self.detector.swim.members.get(member_id)
        if member_id in self.up or (member is not None and member.alive):
            return False
        self.state.forget(member_id)
        self.detector.forget(member_id)
        self.reported.pop(member_id, None)
        self.redialing.discard(member_id)
        return True

    def statistics(self) -> Mapping[str, int]:
        """The failure detector's counters (``swim_*``: probes, round trips, suspicions, refusals, ...)."""
        return self.detector.statistics() if self._detector is not None else {}

    # ----------------------------------------------------------- decisions

    def _peer(self, actions: list[st.Action], now: float, *, resumable: bool = False) -> list[Action]:
        """What the mesh state decided, as host actions (and hints for SWIM)."""
        out: list[Action] = []
        for action in actions:
            if isinstance(action, st.SendControl):
                out.append(Control(action.peer_id, encode_control(action.message)))
            elif isinstance(action, st.Connect):
                out.append(Connect(action.member.id, action.member.address))
            elif isinstance(action, st.MemberUp):
                out += self._swim(self.detector.learn(action.member, now), now)
            elif action.state == MemberState.LEFT:  # MemberDown
                out += self._swim(self.detector.member_left(action.peer_id, now), now)
            else:  # a link lost without a leave: a hint for SWIM, whose verdict decides
                out += self._swim(self.detector.link_down(action.peer_id, now), now)
                member = self.detector.swim.members.get(action.peer_id)
                if not resumable and member is not None and member.alive:
                    out.append(Connect(member.id, member.address))  # core does not redial this one
        return out

    def _swim(self, actions: list[DetectorAction], now: float) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, SwimDatagram):
                out.append(SendDatagram(action.address, action.data))
            elif isinstance(action, MemberChanged):
                out += self._member_changed(action.member, now)
        return out

    def _member_changed(self, member: Member, now: float) -> list[Action]:
        """SWIM decided a member's state: tell the node, and act on links.

        A member first heard of through gossip is not reported until its link
        is up: a member the node lists as alive can be sent to.
        """
        known = self.reported.get(member.id)
        linked = member.id in self.up
        if member.alive and not linked and (known is None or not known.alive):
            if member.id in self.redialing:
                return []
            return self._peer(self.state.learn(member, now), now)
        actions: list[Action] = [self._report(member)]
        if not member.alive:
            self.state.linked.pop(member.id, None)  # newcomers must not be sent to it
            self.state.known.pop(member.id, None)
            self.up.discard(member.id)
            self.redialing.discard(member.id)
            # A member that left closes its link itself once it has flushed (news of the
            # leave may come first, over UDP): keep reading until then.
            left = member.state == MemberState.LEFT
            actions.append(CloseLink(member.id, f"member {member.state.value}", linger=left))
        elif not linked and member.id not in self.redialing:  # core is redialling that one already
            actions += self._peer(self.state.learn(member, now), now)
        return actions

    def _report(self, member: Member) -> UpdateMember:
        self.reported[member.id] = member
        return UpdateMember(member)
