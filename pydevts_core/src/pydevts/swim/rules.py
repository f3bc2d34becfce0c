"""SWIM timings (:class:`SwimConfig`), update ordering rules and validation (see :mod:`pydevts.swim`)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..members import Member, MemberState
from .wire import MAX_UPDATES

__all__ = [
    "STATES",
    "Newcomers",
    "Probe",
    "Relay",
    "SwimConfig",
    "SwimStats",
    "TokenBucket",
    "dead_targets",
    "round_robin",
    "tags_of",
    "wins",
]


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


@dataclass
class SwimStats:
    """What the machine did and refused (counters; the shell reports them as ``swim_*``)."""

    probes: int = 0  # direct probes (pings) started
    probes_acked: int = 0  # of those, answered directly in time
    probe_rtt_us: int = 0  # their round trips, summed (mean: probe_rtt_us / probes_acked)
    indirect_probes: int = 0  # probes that asked others (ping-req)
    probes_failed: int = 0  # probes that ended with the target suspect
    suspicions: int = 0  # members this node came to list as suspect
    failures: int = 0  # members this node came to list as failed
    new_members_rate_limited: int = 0
    new_members_over_limit: int = 0
    ping_reqs_refused: int = 0
    hints_refused: int = 0  # a link to a member whose id, address or tags SWIM could not carry


def dead_targets(
    dead: Mapping[str, float], now: float, cfg: SwimConfig, rng: random.Random, reconnect_due: bool
) -> tuple[list[str], bool]:
    """Failed members to ping (``dead``: since when): one failed within ``dead_probe_window``,
    plus one failed longer ago if ``reconnect_due``; and whether that one was taken."""
    recent = sorted(n for n, since in dead.items() if now - since <= cfg.dead_probe_window)
    targets = [rng.choice(recent)] if recent else []
    older = sorted(set(dead) - set(recent))
    if older and reconnect_due:
        return [*targets, rng.choice(older)], True
    return targets, False


def round_robin(candidates: set[str], order: list[str], rng: random.Random) -> str | None:
    """The next of ``candidates`` in ``order``, a shuffled list refilled once used up."""
    order[:] = [i for i in order if i in candidates]
    if not order:
        order.extend(sorted(candidates))
        rng.shuffle(order)
    return order.pop() if order else None


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


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
    #: Members tracked at most (alive or down); a new one past this is refused unless
    #: a member that is down can be dropped to make room.
    max_members: int = 10_000
    #: New members (ids never seen) learned from datagrams: a token bucket of this
    #: many per second, saving up at most ``new_members_burst``. Router hints (a link
    #: that came up) are not limited.
    new_members_per_second: float = 50.0
    new_members_burst: int = 200

    def __post_init__(self) -> None:
        for name in (
            "probe_interval",
            "probe_timeout",
            "suspicion_mult",
            "dead_probe_interval",
            "reconnect_interval",
            "new_members_per_second",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("probe_timeout must be shorter than probe_interval")
        if self.indirect_checks < 0 or self.retransmit_mult < 1 or self.max_piggyback < 0:
            raise ValueError("indirect_checks >= 0, retransmit_mult >= 1 and max_piggyback >= 0 are needed")
        if self.max_piggyback > MAX_UPDATES:
            raise ValueError(f"max_piggyback must be at most {MAX_UPDATES} (the most a node accepts)")
        if self.max_members < 1 or self.new_members_burst < 1:
            raise ValueError("max_members >= 1 and new_members_burst >= 1 are needed")

    def suspicion_timeout(self, n: int) -> float:
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval


@dataclass
class Probe:
    seq: int
    target: str
    started: float
    indirect_sent: bool = False


@dataclass
class Relay:
    requester: str
    requester_seq: int
    expires: float


@dataclass
class Newcomers:
    """Members heard of only through gossip (*unconfirmed*: not yet answered a probe of ours,
    no link from the router), and the limits on taking in new members."""

    config: SwimConfig
    stats: SwimStats
    since: dict[str, float] = field(default_factory=dict)  # id -> learned, or down since
    bucket: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.config.new_members_per_second, self.config.new_members_burst)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.since

    def admit(
        self, members: Mapping[str, Member], failed_at: Mapping[str, float], now: float, wire: bool
    ) -> tuple[bool, str | None]:
        """May a new member be added (``wire``: learned from a datagram)? And which member
        that is down to drop first to make room, if any."""
        victim = None
        if len(members) >= self.config.max_members:
            victim = self._victim(members, failed_at)
            if victim is None:
                self.stats.new_members_over_limit += 1
                return False, None
        if wire and not self.bucket.take(now):
            self.stats.new_members_rate_limited += 1
            return False, None
        return True, victim

    def _victim(self, members: Mapping[str, Member], failed_at: Mapping[str, float]) -> str | None:
        """One never confirmed first, then the longest failed, then any that is down."""
        down = [(since, i) for i, since in self.since.items() if not members[i].alive]
        if down:
            return min(down)[1]
        if failed_at:
            return min(failed_at, key=failed_at.__getitem__)
        return next((i for i, m in members.items() if not m.alive), None)

    def expired(self, members: Mapping[str, Member], now: float) -> list[str]:
        """Unconfirmed members down for ``dead_probe_window``: time to forget them."""
        for node_id in [i for i in self.since if i not in members]:
            del self.since[node_id]
        window = self.config.dead_probe_window
        return [i for i, since in self.since.items() if not members[i].alive and now - since >= window]
