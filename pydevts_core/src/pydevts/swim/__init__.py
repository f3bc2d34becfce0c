"""Failure detection (SWIM) for any router: a sans-IO machine, a detector, and a driver.

A router that wants to know which members are alive without a heartbeat of
its own composes this package, at the level it needs:

- :class:`SwimState` (:mod:`pydevts.swim.state`): the SWIM protocol itself,
  sans-IO — messages and hints in, :class:`Send`/:class:`StateChange` out,
  and :meth:`~SwimState.next_deadline` to say when :meth:`~SwimState.tick`
  has work. Timings are a :class:`SwimConfig` (:mod:`pydevts.swim.rules`);
  every field of a message is bounded first (:mod:`pydevts.swim.wire`).
- :class:`FailureDetector` (:mod:`pydevts.swim.detector`): still sans-IO, it
  speaks datagrams — the ``{"c": cluster, "f": sender, "m": message}``
  envelope, validation, counters (``swim_*`` statistics), rate-limited logs,
  and the rule that members heard of only through gossip are not reported
  alive — and returns :class:`SendDatagram`/:class:`MemberChanged`.
- :class:`Liveness` (:mod:`pydevts.swim.liveness`): the IO driver over the
  router context's datagram channel, which sleeps until the next deadline
  instead of polling, for a router that brings its own IO. A
  :class:`~pydevts.routing.RouterMachine` (the peer router) composes the
  :class:`FailureDetector` instead, and core's link host carries its
  datagrams and timers.

Layer: imports the top-level vocabulary and :mod:`pydevts.wire` (the UDP
endpoint); routing, the cluster views and the node build on it.
"""

from __future__ import annotations

from ..members import Member, MemberState
from .detector import DetectorAction, FailureDetector, MemberChanged, SendDatagram
from .liveness import Liveness
from .membership import MAX_QUEUED, Message
from .rules import Newcomers, Probe, Relay, SwimConfig, SwimStats, dead_targets, round_robin
from .state import MAX_RELAYS, SwimState
from .wire import U64_MAX, Action, Send, StateChange

__all__ = [
    "MAX_QUEUED",
    "MAX_RELAYS",
    "Action",
    "DetectorAction",
    "FailureDetector",
    "Liveness",
    "MemberChanged",
    "Message",
    "Send",
    "SendDatagram",
    "StateChange",
    "SwimConfig",
    "SwimState",
    "SwimStats",
    # also importable here, as from the single module this package replaced
    "U64_MAX",
    "Member",
    "MemberState",
    "Newcomers",
    "Probe",
    "Relay",
    "dead_targets",
    "round_robin",
]
