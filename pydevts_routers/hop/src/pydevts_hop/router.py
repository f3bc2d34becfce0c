"""The ``hop`` router: :class:`~pydevts_hop.state.HopState` as a :class:`pydevts.routing.RouterMachine`.

Core owns the links (adopting them, the duplicate-link rule, redialling one
that drops, sessions, backpressure and the relay timeout) and hands frames
to the node in one order per origin (``relays``). This class only feeds the
state machine and names its actions in core's terms:

- a link that drops while its session can resume is not news to the state
  (sends wait in the session; the neighbour is kept). If no new link comes
  within ``dead_interval``, the state gives up on it (``CloseLink``) and
  routes around it;
- a member restarted under its id (a new incarnation) is a new neighbour:
  the state forgets the old one first, so the new one gets the database;
- adverts and keepalives are small and must never wait: ``Control``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from pydevts.members import Member
from pydevts.routing import (
    Action,
    CloseLink,
    Control,
    RouterMachine,
    Send,
    UpdateMember,
    config_from_options,
)

from . import actions as hop
from .actions import HopConfig
from .state import HopState
from .wire import ADVERT, KEEPALIVE

__all__ = ["HopRouter"]

_SMALL = (ADVERT, KEEPALIVE)


class HopRouter(RouterMachine):
    """Multi-hop routing over the links each node can actually make (see the package README)."""

    name = "hop"
    relays = True
    hears = True

    def __init__(
        self,
        *,
        config: HopConfig | None = None,
        leave_timeout: float = 2.0,
        relay_timeout: float = 2.0,
        seed: int | None = None,
        **timings: Any,
    ) -> None:
        """``timings``: HopConfig fields by name (``Node(router_options=...)``, ``--router-option``)."""
        self.config = config_from_options(HopConfig, timings, base=config or HopConfig())
        if timings:
            raise TypeError(f"unknown option(s): {', '.join(sorted(timings))}")
        self.leave_timeout = float(leave_timeout)
        self.relay_timeout = float(relay_timeout)
        if not (self.leave_timeout > 0 and self.relay_timeout > 0):  # also refuses nan
            raise ValueError("leave_timeout and relay_timeout must be positive numbers of seconds")
        self.max_backoff = self.config.keepalive_interval
        self._rng = random.Random(seed)
        self._state: HopState | None = None
        self._incarnations: dict[str, int] = {}  # of each neighbour, to tell a restart
        self._next_tick = math.inf

    @property
    def state(self) -> HopState:
        assert self._state is not None, "the router has not started"
        return self._state

    def statistics(self) -> Mapping[str, int]:
        return self.state.statistics() if self._state is not None else {}

    # ----------------------------------------------------------- inputs

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self._state = HopState(local, self.config, now)
        self._next_tick = now + self._pause()
        return []

    def set_tags(self, now: float, tags: Mapping[str, str]) -> list[Action]:
        return self._core(self.state.set_tags(tags, now))

    def leave(self, now: float) -> list[Action]:
        self._next_tick = math.inf
        return self._core(self.state.leave(now))

    def link_up(self, now: float, peer: Member) -> list[Action]:
        actions: list[hop.Action] = []
        if self._incarnations.get(peer.id, peer.incarnation) != peer.incarnation:
            actions += self.state.link_down(peer.id, now)  # a new process: a new neighbour
        self._incarnations[peer.id] = peer.incarnation
        return self._core([*actions, *self.state.link_up(peer, now)])

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        if resumable:  # core redials; past dead_interval the state gives up on it (CloseLink)
            if peer_id in self.state.links:
                return []
            self._incarnations.pop(peer_id, None)
            return [CloseLink(peer_id, "not a neighbour any more")]
        self._incarnations.pop(peer_id, None)
        return self._core(self.state.link_down(peer_id, now))

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        return self._core(self.state.connect_failed(member_id, now))

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        return self._core(self.state.receive(peer_id, frame, now))

    def heard(self, now: float, peer_id: str) -> None:
        self.state.heard(peer_id, now)

    def direct(self, now: float, peer_id: str, frames: list[bytes]) -> list[bytes]:
        return self.state.unicast_from(peer_id, frames)

    def send(self, now: float, dest: str, frame: bytes) -> list[Action]:
        return self._core(self.state.send(dest, frame, now))

    def broadcast(self, now: float, frame: bytes) -> list[Action]:
        return self._core(self.state.broadcast(frame, now))

    def next_deadline(self) -> float | None:
        return None if self._next_tick == math.inf else self._next_tick

    def timer(self, now: float) -> list[Action]:
        self._next_tick = now + self._pause()
        return self._core(self.state.tick(now))

    def _pause(self) -> float:
        return self.config.tick_interval * self._rng.uniform(0.8, 1.2)

    # ----------------------------------------------------------- outputs

    def _core(self, actions: list[hop.Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, hop.Send):
                if action.frame[0] in _SMALL:
                    out.append(Control(action.neighbour, action.frame))
                else:
                    out.append(Send(action.neighbour, action.frame, action.origin, action.carried))
            elif isinstance(action, hop.MemberChange):
                out.append(UpdateMember(action.to_member()))
            elif isinstance(action, hop.CloseLink):
                self._incarnations.pop(action.neighbour, None)
                out.append(CloseLink(action.neighbour, action.reason))
            else:  # Deliver, Connect, Dropped: core's own actions already
                out.append(action)
        return out
