"""Network conditions (delay, jitter, datagram loss) and partitions, between any two nodes."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = ["Fabric", "NetworkConditions"]


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    """How the network between two nodes behaves.

    ``delay``: one-way seconds for a frame or datagram; ``jitter``: up to this
    many more seconds, drawn for each one (frames of one link are never
    reordered by it: a link is FIFO, like TCP); ``datagram_loss``: the
    probability that a datagram is lost (links themselves lose nothing).
    """

    delay: float = 0.01
    jitter: float = 0.005
    datagram_loss: float = 0.0

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if not 0.0 <= self.datagram_loss <= 1.0:
            raise ValueError(f"datagram_loss must be a probability (0 to 1), got {self.datagram_loss!r}")


class Fabric:
    """The conditions in force: a default, overrides per pair, and the partition groups."""

    def __init__(self, default: NetworkConditions, rng: random.Random) -> None:
        self.default = default
        self.rng = rng
        self._pairs: dict[frozenset[str], NetworkConditions] = {}
        self._group: dict[str, int] = {}  # node id -> its side of the partition
        #: If set, only these pairs can dial each other (used as given: changes to it count).
        self.dialable: set[frozenset[str]] | None = None

    def set(
        self,
        between: tuple[str, str] | None,
        delay: float | None,
        jitter: float | None,
        datagram_loss: float | None,
    ) -> None:
        changes = {
            k: v
            for k, v in (("delay", delay), ("jitter", jitter), ("datagram_loss", datagram_loss))
            if v is not None
        }
        if between is None:
            self.default = replace(self.default, **changes)
        else:
            pair = frozenset(between)
            self._pairs[pair] = replace(self._pairs.get(pair, self.default), **changes)

    def of(self, a: str, b: str) -> NetworkConditions:
        if not self._pairs:
            return self.default
        return self._pairs.get(frozenset((a, b)), self.default)

    def latency(self, a: str, b: str) -> float:
        """One frame's (or datagram's) one-way time from ``a`` to ``b``: delay plus a draw of jitter."""
        c = self._pairs.get(frozenset((a, b)), self.default) if self._pairs else self.default
        return c.delay + self.rng.random() * c.jitter if c.jitter else c.delay

    def loses_datagram(self, a: str, b: str) -> bool:
        loss = self.of(a, b).datagram_loss
        return loss > 0.0 and self.rng.random() < loss

    # ------------------------------------------------------------ partitions

    @property
    def partitioned(self) -> bool:
        return bool(self._group)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every pair of nodes in different groups (nodes in no group keep every path)."""
        self._group = {}
        for index, group in enumerate(groups):
            for node_id in sorted(group):
                if node_id in self._group:
                    raise ValueError(f"node {node_id!r} is in two groups of the partition")
                self._group[node_id] = index

    def heal(self) -> None:
        self._group = {}

    def can_dial(self, a: str, b: str) -> bool:
        """Whether a dial from ``a`` can reach ``b`` (not across a partition, and allowed)."""
        if self.dialable is not None and frozenset((a, b)) not in self.dialable:
            return False
        return not self.cut(a, b)

    def cut(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` are on different sides of the partition."""
        if not self._group:
            return False
        ga, gb = self._group.get(a), self._group.get(b)
        return ga is not None and gb is not None and ga != gb
