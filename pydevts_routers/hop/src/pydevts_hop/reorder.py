"""Per-origin ordering of broadcasts for local delivery (sans-IO).

While routes settle, flooded copies of one origin's broadcasts take paths of
different lengths, so broadcast 7 may arrive before broadcast 6. Relaying is
never held up; only *delivery to this node* waits: a broadcast that arrives
ahead of a gap is held until the gap fills, or until it has waited
``max_wait`` seconds (the missing one may never come: lost beyond a cut, or
sent before this node could hear of it) — counted from the last time the
gap shrank, if later: missing ones still arriving, over a path slower by
more than ``max_wait`` (a loaded node), are not given up on — or until
``max_held`` are waiting; then it is delivered, in order, skipping the gap. The first broadcast heard
from an origin (per incarnation) is delivered at once and sets where the
origin's sequence stands here — unless this node only just learned of the
origin (a join), or the copy may have raced others (a flooded copy, while
routes change), when its first broadcasts may race each other: then the
first one heard waits for earlier numbers, from 1, at most ``max_wait``.

A unicast from an origin that has broadcasts held (:meth:`unicast`) waits
behind them, for the same gap (at most as long): a ``send`` never overtakes
an earlier ``emit``, and the emits stay in order. (Handing the held
broadcasts out at once instead, skipping their gap, delivered the gap's
broadcasts late, out of order, when the gap was only a slower path.)

Nothing is ever delivered twice: :mod:`.dedup` decides what is new before
this module sees it; a copy that arrives after its gap was skipped is
delivered late rather than lost.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Reorder"]


@dataclass(slots=True)
class _Origin:
    incarnation: int
    delivered: int  # highest sequence number delivered (or skipped) in order
    held: dict[int, tuple[bytes, float]] = field(default_factory=dict)  # seq -> (frame, since)
    progress: float = -math.inf  # when ``delivered`` last moved up by an arrival (the gap shrank)
    # Unicasts waiting behind held broadcasts, in arrival order: (the highest number held when
    # it came, its frames), handed out once that number is delivered (or skipped). Empty
    # whenever nothing is held.
    waiting: deque[tuple[int, list[bytes]]] = field(default_factory=deque)


class Reorder:
    """Holds broadcasts that arrive ahead of a gap; hands them out in order."""

    def __init__(self, max_wait: float = 1.0, max_held: int = 1024) -> None:
        self.max_wait = max_wait
        self.max_held = max_held
        self._origins: dict[str, _Origin] = {}
        self.held_total = 0
        self.unicasts_held = 0
        self.gaps_skipped = 0

    def __len__(self) -> int:
        return len(self._origins)

    def arrive(
        self, origin: str, incarnation: int, seq: int, frame: bytes, now: float, *, fresh: bool = False
    ) -> list[bytes]:
        """A new broadcast (never seen before): the frames to deliver now, in order.

        ``fresh``: earlier broadcasts of the origin may be racing behind this
        one (this node has only just learned of the origin, or this copy was
        flooded while routes change): if this is the first heard, it waits for
        them from number 1 (at most ``max_wait``).
        """
        o = self._origins.get(origin)
        if o is None or incarnation > o.incarnation:
            # The first broadcast heard from an origin (or from its new run) is delivered at
            # once and sets where its sequence stands here: earlier numbers were most likely
            # sent before this node could hear of it (waiting for them would delay every
            # joiner's first broadcast from every busy origin).
            earlier = self._drain_all(o) if o is not None else []
            if fresh and seq > 1:
                self._origins[origin] = _Origin(incarnation, 0, {seq: (frame, now)}, now)
                self.held_total += 1
                return earlier
            self._origins[origin] = _Origin(incarnation, seq)
            return [*earlier, frame]
        if incarnation < o.incarnation or seq <= o.delivered:
            return [frame]  # late: its place has passed; deliver it rather than lose it
        if seq == o.delivered + 1:
            o.delivered = seq
            o.progress = now
            return [frame, *self._drain(o)]
        o.held[seq] = (frame, now)
        self.held_total += 1
        if len(o.held) > self.max_held:
            return self._skip(o)
        return []

    def unicast(self, origin: str, frames: list[bytes]) -> list[bytes]:
        """Core frames of a unicast from ``origin``: deliver them now (returned) unless some of its
        broadcasts are held for order; then they wait behind those (returned later, in order,
        by :meth:`arrive` or :meth:`due`), so a ``send`` never overtakes an earlier ``emit``."""
        o = self._origins.get(origin)
        if o is None or not o.held:
            return frames
        o.waiting.append((max(o.held), frames))
        self.unicasts_held += 1
        if len(o.held) + len(o.waiting) > self.max_held:
            return self._skip(o)
        return []

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """Broadcasts whose gap has waited ``max_wait``: deliver them (and what follows them).

        The wait counts from the later of when the first held broadcast came and when the gap
        last shrank (an earlier broadcast arrived in order): while the missing ones still trickle
        in, over a slower path (a loaded node, a long queue), they are not given up on.
        """
        out: list[tuple[str, bytes]] = []
        for origin, o in self._origins.items():
            while o.held and self._expires(o) <= now:
                out += [(origin, f) for f in self._skip(o)]
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` will next have something (None: nothing held)."""
        times = [self._expires(o) for o in self._origins.values() if o.held]
        return min(times) if times else None

    def _expires(self, o: _Origin) -> float:
        return max(min(since for _, since in o.held.values()), o.progress) + self.max_wait

    def forget(self, origin: str) -> list[bytes]:
        """Drop an origin's state; what it had held is delivered now, in order."""
        o = self._origins.pop(origin, None)
        if o is None:
            return []
        return self._drain_all(o)

    def _skip(self, o: _Origin) -> list[bytes]:
        """Give up on the first gap: move past it and deliver what follows in order."""
        self.gaps_skipped += 1
        o.delivered = min(o.held) - 1
        return self._drain(o)

    @staticmethod
    def _drain(o: _Origin) -> list[bytes]:
        """What is no longer behind a gap, in order: held broadcasts and the unicasts after them."""
        out: list[bytes] = []
        while True:
            while o.waiting and (o.waiting[0][0] <= o.delivered or not o.held):
                out += o.waiting.popleft()[1]
            if (nxt := o.delivered + 1) not in o.held:
                return out
            out.append(o.held.pop(nxt)[0])
            o.delivered = nxt

    @staticmethod
    def _drain_all(o: _Origin) -> list[bytes]:
        """Everything ``o`` holds, in order, skipping every gap (its state is about to go)."""
        out: list[bytes] = []
        for seq in sorted(o.held):
            while o.waiting and o.waiting[0][0] < seq:
                out += o.waiting.popleft()[1]
            out.append(o.held[seq][0])
        o.held.clear()
        for _, frames in o.waiting:
            out += frames
        o.waiting.clear()
        return out
