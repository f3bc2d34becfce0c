"""SWIM timings (:class:`SwimConfig`), update ordering rules and validation (see :mod:`pydevts.swim`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .members import Member, MemberState

__all__ = ["STATES", "SwimConfig", "check_update", "int_field", "tags_of", "wins"]


STATES = {
    "alive": MemberState.ALIVE,
    "suspect": MemberState.SUSPECT,
    "failed": MemberState.FAILED,
    "left": MemberState.LEFT,
}


def wins(kind: str, inc: int, current: Member | None) -> bool:
    """Does an update of ``kind`` at incarnation ``inc`` override ``current``?"""
    if current is None:
        return kind == "alive"  # we only learn members from evidence that they live
    cur_inc, state = current.incarnation, current.state
    if kind == "alive":
        return inc > cur_inc
    if kind == "suspect":
        if state == MemberState.ALIVE:
            return inc >= cur_inc
        return state == MemberState.SUSPECT and inc > cur_inc
    if kind == "failed":
        return state in (MemberState.ALIVE, MemberState.SUSPECT) and inc >= cur_inc
    if kind == "left":
        return inc > cur_inc if state == MemberState.LEFT else inc >= cur_inc
    return False


def tags_of(member: Member, kind: str) -> dict[str, str] | None:
    return dict(member.tags) if kind == "alive" else None


def int_field(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def check_update(update: Any) -> list[Any]:
    if not isinstance(update, list) or len(update) != 5:
        raise ValueError(f"bad SWIM update {update!r}")
    kind, node_id, address, inc, tags = update
    if kind not in STATES or not isinstance(node_id, str) or not isinstance(address, str):
        raise ValueError(f"bad SWIM update {update!r}")
    int_field(inc)
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise ValueError(f"bad tags in SWIM update {update!r}")
    return [kind, node_id, address, inc, tags]


@dataclass(frozen=True)
class SwimConfig:
    """Timings (seconds). Shaped like memberlist's LAN profile, with faster probing.

    memberlist's LAN profile probes every 1 s (timeout 0.5 s) with a suspicion
    multiplier of 4; pydevts probes every 0.5 s (timeout 0.25 s, still far above
    a LAN round trip) with the same multiplier, so a silent failure is found in
    about half the time for the same tolerance, counted in probe rounds.
    """

    probe_interval: float = 0.5
    probe_timeout: float = 0.25
    indirect_checks: int = 3
    suspicion_mult: float = 4.0
    dead_probe_interval: float = 1.0
    dead_probe_window: float = 60.0
    reconnect_interval: float = 30.0
    retransmit_mult: int = 3
    max_piggyback: int = 8

    def __post_init__(self) -> None:
        for name in (
            "probe_interval",
            "probe_timeout",
            "suspicion_mult",
            "dead_probe_interval",
            "reconnect_interval",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("probe_timeout must be shorter than probe_interval")
        if self.indirect_checks < 0 or self.retransmit_mult < 1 or self.max_piggyback < 0:
            raise ValueError("indirect_checks >= 0, retransmit_mult >= 1 and max_piggyback >= 0 are needed")

    def suspicion_timeout(self, n: int) -> float:
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval
