"""What :class:`~pydevts_hop.state.HopState` decides (its actions), and its settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pydevts.members import Member, MemberState
from pydevts.routing.actions import Connect, Deliver, Dropped  # the same as core's: used as they are

__all__ = [
    "Action",
    "CloseLink",
    "Connect",
    "Deliver",
    "Dropped",
    "HopConfig",
    "HopStatistics",
    "MemberChange",
    "Send",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``frame`` on the link to the neighbour ``neighbour``.

    A frame whose first byte is below ``0x40`` is a raw core frame sent by
    this node to that very neighbour: the receiving link host hands it to its
    node as coming from the link's peer, without calling ``receive``.
    """

    neighbour: str
    frame: bytes
    #: A relay of another node's message: its origin and the core frame it carries
    #: (the link host shows them to the node's plugins and traces; see RouterContext.relayed).
    origin: str = ""
    carried: bytes | None = None


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A member's record as this node now sees it (new, changed, unreachable, left).

    ``next_hop`` (the neighbour a message to it goes to first) and
    ``distance`` (links on the way) are ``None`` unless it is alive.
    """

    member_id: str
    address: str
    tags: Mapping[str, str]
    state: MemberState
    next_hop: str | None
    distance: int | None
    incarnation: int

    def to_member(self) -> Member:
        """The core record, next hop and distance included (for ``RouterContext.update_member``)."""
        return Member(
            self.member_id,
            self.address,
            dict(self.tags),
            self.state,
            self.incarnation,
            next_hop=self.next_hop,
            distance=self.distance,
        )


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close the link to ``neighbour``: nothing was heard from it for ``dead_interval``.

    The state has already treated the link as down; the link host need not (but
    may) call ``link_down`` for it afterwards.
    """

    neighbour: str
    reason: str


Action = Send | Deliver | MemberChange | CloseLink | Connect | Dropped


@dataclass(frozen=True)
class HopConfig:
    """Timings (seconds) and limits of the hop router; the defaults are documented in the README.

    The router machine asks for ``tick`` every ``tick_interval`` seconds (give
    or take 20 %); nothing here depends on ticks being regular.
    """

    tick_interval: float = 0.5
    keepalive_interval: float = 1.0  # send a keepalive on a link idle for this long
    dead_interval: float = 3.0  # a link silent for this long is closed
    refresh_interval: float = 30.0  # re-flood our own advert this often
    settle_time: float = 2.0  # flood broadcasts for this long after the topology changes
    reorder_wait: float = 1.0  # hold a broadcast that arrives ahead of a gap at most this long
    purge_after: float = 86_400.0  # forget a node unreachable or left this long (24 h, as reap_after)
    hop_slack: int = 8  # hop limit = 2 x distance + hop_slack (at most 255)
    dedup_window: int = 4096  # broadcasts remembered per origin
    max_nodes: int = 10_000  # adverts kept at most
    max_neighbours: int = 8  # links this node opens on its own (0: none); it accepts any
    connect_delay: float = 3.0  # the larger id of a pair waits this long before connecting
    connect_backoff: float = 1.0  # first retry delay after a failed connect; doubles
    max_connect_backoff: float = 60.0

    def __post_init__(self) -> None:
        for name in ("tick_interval", "keepalive_interval", "dead_interval", "refresh_interval",
                     "purge_after", "connect_backoff", "max_connect_backoff"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("settle_time", "reorder_wait", "connect_delay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds, 0 or more, got {value!r}")
        if not 0 < self.keepalive_interval < self.dead_interval:
            raise ValueError("keepalive_interval must be positive and shorter than dead_interval")
        if self.tick_interval <= 0 or self.tick_interval > self.keepalive_interval:
            raise ValueError("tick_interval must be positive and at most keepalive_interval")
        if not 0 <= self.hop_slack <= 255:
            raise ValueError("hop_slack must be 0 to 255")
        if self.dedup_window < 1 or self.max_nodes < 1 or self.max_neighbours < 0:
            raise ValueError("dedup_window and max_nodes must be positive, max_neighbours at least 0")

    @property
    def reconvergence_bound(self) -> float:
        """Worst case from a silent link cut to routes around it, before flooding time.

        The cut is noticed after ``dead_interval`` plus at most one tick
        (a closed connection is noticed at once); the new adverts then flood
        in one network diameter of link latency.
        """
        return self.dead_interval + self.tick_interval


@dataclass
class HopStatistics:
    """Counters of one node; ``statistics()`` returns them as a dict."""

    broadcasts_sent: int = 0  # broadcasts this node originated
    broadcast_frames: int = 0  # broadcast frames this node transmitted (originated or relayed)
    broadcasts_delivered: int = 0
    broadcast_duplicates: int = 0  # copies received and dropped as already seen
    broadcasts_flooded: int = 0  # broadcasts this node flooded instead of following the tree
    too_old: int = 0  # broadcasts dropped because they fell behind the de-duplication window
    unicasts_sent: int = 0
    unicast_frames: int = 0  # unicast frames transmitted (originated or relayed)
    unicasts_delivered: int = 0
    unreachable_replies: int = 0  # requests answered "unreachable" on the destination's behalf
    hop_limit_drops: int = 0
    no_route_drops: int = 0
    unknown_origin_drops: int = 0  # data from an origin with no advert here
    adverts_accepted: int = 0
    adverts_ignored: int = 0  # already held, older, or over max_nodes
    adverts_sent: int = 0
    keepalives_sent: int = 0
    links_timed_out: int = 0
    from_unlinked: int = 0  # frames from a neighbour with no link (a race in the link host)
    purged: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
