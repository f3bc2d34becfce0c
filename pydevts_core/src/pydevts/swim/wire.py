"""The SWIM wire vocabulary: what the machine takes (validated messages) and returns (actions).

Everything a SWIM datagram carries is checked against the limits below
before the machine looks at it: one datagram from anyone who can reach the
UDP port must not be able to crash a node, grow its memory, or make it send
what it cannot encode (see docs/membership.md, "Hostile input").

Message: ``{"t": "ping"|"ack"|"ping-req"|"gossip", "seq": u64, "u": [update, ...],
"target": id, "addr": "HOST:PORT"}``; update: ``[kind, id, address, incarnation, tags]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fields import (
    MAX_ID_BYTES,
    U64_MAX,
    _short,
    address_field,
    id_field,
    int_field,
    tags_field,
)
from ..members import Member

__all__ = [
    "MAX_ACCUSED_INCARNATION",
    "MAX_ID_BYTES",
    "MAX_UPDATES",
    "U64_MAX",
    "Action",
    "Parsed",
    "Send",
    "StateChange",
    "address_field",
    "check_update",
    "id_field",
    "int_field",
    "parse_message",
    "tags_field",
]

STATE_NAMES = ("alive", "suspect", "failed", "left")


@dataclass(frozen=True)
class Send:
    """Send ``message`` to member ``to`` at ``address``."""

    to: str
    address: str
    message: dict[str, Any]


@dataclass(frozen=True)
class StateChange:
    """A member's new record (state, incarnation, tags)."""

    member: Member


Action = Send | StateChange


#: An accusation (suspect/failed/left) is accepted up to this incarnation, so that
#: the accused can always refute one above it and still fit in u64.
MAX_ACCUSED_INCARNATION = U64_MAX - 1
#: Updates in one SWIM message (a node piggybacks ``max_piggyback``, 8 by default).
MAX_UPDATES = 64


def check_update(update: Any) -> list[Any]:
    """A validated ``[kind, node id, address, incarnation, tags]``; ValueError saying what is wrong."""
    if not isinstance(update, list) or len(update) != 5:
        raise ValueError(f"bad SWIM update {_short(update)}")
    kind, node_id, address, inc, tags = update
    if kind not in STATE_NAMES:
        raise ValueError(f"bad SWIM update kind {_short(kind)}")
    int_field(inc, "an incarnation")
    if kind != "alive" and inc > MAX_ACCUSED_INCARNATION:
        raise ValueError(f"{kind} at incarnation 2**64-1 could not be refuted")
    return [kind, id_field(node_id), address_field(address), inc, tags_field(tags)]


@dataclass(frozen=True)
class Parsed:
    """A validated SWIM message (see :func:`parse_message`)."""

    kind: str
    seq: int
    updates: list[list[Any]]
    target: str | None = None  # ping-req
    addr: str | None = None  # ping (a relayed ping: where to answer), ping-req (the target's)


def parse_message(message: Any) -> Parsed:
    """Check a SWIM message completely before anything is acted on; ValueError if it is malformed."""
    if not isinstance(message, dict):
        raise ValueError(f"SWIM message is not an object: {_short(message)}")
    raw_updates = message.get("u") or []
    if not isinstance(raw_updates, list):
        raise ValueError(f"SWIM updates are not a list: {_short(raw_updates)}")
    if len(raw_updates) > MAX_UPDATES:
        raise ValueError(f"{len(raw_updates)} updates in one SWIM message (at most {MAX_UPDATES})")
    updates = [check_update(u) for u in raw_updates]
    kind = message.get("t")
    if kind not in ("ping", "ack", "ping-req", "gossip"):
        raise ValueError(f"unknown SWIM message type {_short(kind)}")
    seq = int_field(message.get("seq"), "a sequence number") if kind != "gossip" else 0
    if kind == "ping-req":
        if not isinstance(message.get("target"), str) or not isinstance(message.get("addr"), str):
            raise ValueError(f"ping-req without target: {_short(message)}")
        return Parsed(kind, seq, updates, id_field(message["target"]), address_field(message["addr"]))
    addr = message.get("addr")
    if kind == "ping" and addr is not None:
        return Parsed(kind, seq, updates, None, address_field(addr))
    return Parsed(kind, seq, updates)
