"""A failure detector that speaks datagrams, still sans-IO: :class:`FailureDetector`.

It wraps :class:`~pydevts.swim.SwimState` with everything a router's failure
detection needs besides a socket and a clock:

- the datagram: ``{"c": cluster, "f": sender id, "m": SWIM message}`` as
  compact JSON, at most :data:`~pydevts.wire.datagrams.MAX_DATAGRAM` bytes (a larger
  one is not sent: logged, rate-limited);
- validation: a datagram of another cluster, or one that does not parse or
  validate (see :mod:`pydevts.swim.wire`), is dropped: counted
  (``bad_datagrams``) and logged at WARNING, rate-limited. Any other exception
  while one datagram is handled is a bug; it costs only that datagram: counted
  (``datagram_errors``) and logged rate-limited with its traceback. The same
  holds for a tick;
- members SWIM holds *unconfirmed* (heard of only through gossip) are not
  reported alive (:class:`MemberChanged`) until they answer a probe, so gossip
  alone never makes a router open connections;
- :meth:`FailureDetector.statistics`: the ``swim_*`` counters.

Every input takes the current time ``now`` and returns actions:
:class:`SendDatagram` (bytes for an address) and :class:`MemberChanged`;
:meth:`FailureDetector.next_deadline` says when to call
:meth:`~FailureDetector.tick` next.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass

from ..members import Member
from ..protocols import Address
from ..ratelog import RateLimitedLog
from ..wire.datagrams import MAX_DATAGRAM
from .rules import SwimConfig
from .state import SwimState
from .wire import Action, Send, StateChange, id_field

__all__ = ["MAX_ADDRESSES", "DetectorAction", "FailureDetector", "MemberChanged", "SendDatagram"]

log = logging.getLogger("pydevts.swim")

#: Member addresses kept parsed (the cache is emptied when it reaches this size).
MAX_ADDRESSES = 4096


@dataclass(frozen=True)
class SendDatagram:
    """Send ``data`` (one whole datagram) to ``address``; ``to``: the member it is meant for."""

    address: Address
    data: bytes
    to: str = ""


@dataclass(frozen=True)
class MemberChanged:
    """A member's new record (state, incarnation, tags), for the router's view."""

    member: Member


DetectorAction = SendDatagram | MemberChanged


class FailureDetector:
    """SWIM over datagrams for one node of ``cluster``, sans-IO (see the module docstring)."""

    def __init__(
        self,
        local: Member,
        cluster: str,
        config: SwimConfig | None = None,
        *,
        rng: random.Random | None = None,
        ratelog: RateLimitedLog | None = None,
    ) -> None:
        self.swim = SwimState(local, config or SwimConfig(), rng or random.Random())
        self.cluster = cluster
        self.bad_datagrams = 0  # malformed, or of another cluster
        self.datagram_errors = 0  # an internal error while handling one (a bug)
        self.ratelog = ratelog or RateLimitedLog(log)
        self._addresses: dict[str, Address] = {}  # parsed once per member address (bounded)

    # ------------------------------------------------------------------ inputs

    def handle_datagram(self, data: bytes, now: float) -> list[DetectorAction]:
        """One datagram in: validate, feed SWIM; never raises (a bad one is counted and logged)."""
        stats = self.swim.stats
        refused = stats.new_members_rate_limited + stats.new_members_over_limit
        try:
            body = json.loads(data)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            if body.get("c") != self.cluster:
                raise ValueError(f"datagram of cluster {str(body.get('c'))[:80]!r}")
            sender = id_field(body.get("f"), "sender id")
            actions = self.swim.receive(sender, body.get("m"), now)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSON errors included
            self.bad_datagrams += 1
            self.ratelog.warning("bad_datagram", "dropping a SWIM datagram: %s", str(exc)[:200])
            return []
        except Exception:  # a bug: one datagram costs only itself, never the node
            self.count_error("internal", "error handling a SWIM datagram")
            return []
        if stats.new_members_rate_limited + stats.new_members_over_limit > refused:
            self.ratelog.warning(
                "new_members",
                "not taking in new members from gossip: %d over the rate limit, %d over max_members so far",
                stats.new_members_rate_limited,
                stats.new_members_over_limit,
            )
        return self._actions(actions)

    def tick(self, now: float) -> list[DetectorAction]:
        """Time passed (call it at :meth:`next_deadline`); a bug is counted and logged, not raised."""
        try:
            actions = self.swim.tick(now)
        except Exception:  # a bug must not stop the node; the next tick tries again
            self.count_error("tick", "SWIM tick failed")
            return []
        return self._actions(actions)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (see :meth:`SwimState.next_deadline`)."""
        return self.swim.next_deadline()

    # ------------------------------------------------------------------ hints from the router

    def learn(self, member: Member, now: float) -> list[DetectorAction]:
        """A link to ``member`` came up: it is alive."""
        return self._actions(self.swim.learn(member, now))

    def link_down(self, node_id: str, now: float) -> list[DetectorAction]:
        """The link to ``node_id`` dropped without a leave: suspect it now."""
        return self._actions(self.swim.link_down(node_id, now))

    def confirm_failed(self, node_id: str, now: float) -> list[DetectorAction]:
        """Proof that the member is gone (its address refuses connections): fail it now."""
        return self._actions(self.swim.confirm_failed(node_id, now))

    def member_left(self, node_id: str, now: float) -> list[DetectorAction]:
        """The member said it leaves."""
        return self._actions(self.swim.member_left(node_id, now))

    def leave(self, now: float) -> list[DetectorAction]:
        """This node leaves: tell every live member."""
        return self._actions(self.swim.leave(now))

    def set_tags(self, tags: Mapping[str, str], now: float) -> list[DetectorAction]:
        """This node's tags changed: announce them."""
        return self._actions(self.swim.set_tags(tags, now))

    def forget(self, node_id: str) -> None:
        """Drop a member that left or failed (see :meth:`SwimState.forget`)."""
        self.swim.forget(node_id)

    # ------------------------------------------------------------------ counters

    def count_error(self, key: str, what: str) -> None:
        """An internal error (a bug, e.g. in a transport): counted, logged rate-limited with its
        traceback (call it from an ``except`` block)."""
        self.datagram_errors += 1
        self.ratelog.log(logging.ERROR, key, what, exc_info=True)

    def statistics(self) -> dict[str, int]:
        """Counters for a router's ``statistics()``: datagrams dropped, what SWIM refused."""
        return {
            "swim_bad_datagrams": self.bad_datagrams,
            "swim_datagram_errors": self.datagram_errors,
            "swim_log_lines_suppressed": self.ratelog.suppressed,
            **{f"swim_{k}": v for k, v in vars(self.swim.stats).items()},
        }

    # ------------------------------------------------------------------ outputs

    def _actions(self, actions: list[Action]) -> list[DetectorAction]:
        out: list[DetectorAction] = []
        for action in actions:
            if isinstance(action, Send):
                datagram = self._encode(action)
                if datagram is not None:
                    out.append(datagram)
            elif isinstance(action, StateChange):
                member = action.member
                if member.alive and not self.swim.confirmed(member.id):
                    continue  # heard of only through gossip: the router hears of it once it answers
                out.append(MemberChanged(member))
        return out

    def _encode(self, action: Send) -> SendDatagram | None:
        """The datagram for ``action``, or None if it cannot be sent (too large, bad address)."""
        try:
            message = {"c": self.cluster, "f": self.swim.local.id, "m": action.message}
            data = json.dumps(message, separators=(",", ":")).encode()
            if len(data) > MAX_DATAGRAM:
                self.ratelog.warning(
                    "too_large", "SWIM message to %s too large (%d bytes): not sent", action.to, len(data)
                )
                return None
            address = self._addresses.get(action.address)
            if address is None:
                if len(self._addresses) >= MAX_ADDRESSES:
                    self._addresses.clear()
                address = self._addresses[action.address] = Address.parse(action.address)
        except ValueError as exc:
            log.debug("SWIM datagram to %s not sent: %s", action.to, exc)
            return None
        except Exception:  # a bug: lose this datagram, not the node
            self.count_error("send", "encoding a SWIM datagram failed")
            return None
        return SendDatagram(address, data, action.to)
