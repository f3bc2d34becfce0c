"""Per-origin ordering of broadcasts for local delivery (sans-IO).

While routes settle, flooded copies of one origin's broadcasts take paths of
different lengths, so broadcast 7 may arrive before broadcast 6. Relaying is
never held up; only *delivery to this node* waits: a broadcast that arrives
ahead of a gap is held until the gap fills, or until it has waited
``max_wait`` seconds (the missing one may never come: lost beyond a cut, or
sent before this node could hear of it), or until ``max_held`` are waiting;
then it is delivered, in order, skipping the gap. The first broadcast heard
from an origin (per incarnation) is delivered at once and sets where the
origin's sequence stands here — unless this node only just learned of the
origin (a join), when its first broadcasts may race each other: then the
first one heard waits for earlier numbers, from 1, at most ``max_wait``.
:meth:`release` hands out what an origin has held (skipping its gap) before
a unicast from that origin is delivered, so a ``send`` never overtakes an
earlier ``emit``.

Nothing is ever delivered twice: :mod:`.dedup` decides what is new before
this module sees it; a copy that arrives after its gap was skipped is
delivered late rather than lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Reorder"]


@dataclass(slots=True)
class _Origin:
    incarnation: int
    delivered: int  # highest sequence number delivered (or skipped) in order
    held: dict[int, tuple[bytes, float]] = field(default_factory=dict)  # seq -> (frame, since)


class Reorder:
    """Holds broadcasts that arrive ahead of a gap; hands them out in order."""

    def __init__(self, max_wait: float = 1.0, max_held: int = 1024) -> None:
        self.max_wait = max_wait
        self.max_held = max_held
        self._origins: dict[str, _Origin] = {}
        self.held_total = 0
        self.gaps_skipped = 0

    def __len__(self) -> int:
        return len(self._origins)

    def arrive(
        self, origin: str, incarnation: int, seq: int, frame: bytes, now: float, *, fresh: bool = False
    ) -> list[bytes]:
        """A new broadcast (never seen before): the frames to deliver now, in order.

        ``fresh``: this node has only just learned of the origin, so earlier
        broadcasts of it may be racing behind this one: if this is the first
        heard, it waits for them from number 1 (at most ``max_wait``).
        """
        o = self._origins.get(origin)
        if o is None or incarnation > o.incarnation:
            # The first broadcast heard from an origin (or from its new run) is delivered at
            # once and sets where its sequence stands here: earlier numbers were most likely
            # sent before this node could hear of it (waiting for them would delay every
            # joiner's first broadcast from every busy origin).
            earlier = [o.held[s][0] for s in sorted(o.held)] if o is not None else []
            if fresh and seq > 1:
                self._origins[origin] = _Origin(incarnation, 0, {seq: (frame, now)})
                self.held_total += 1
                return earlier
            self._origins[origin] = _Origin(incarnation, seq)
            return [*earlier, frame]
        if incarnation < o.incarnation or seq <= o.delivered:
            return [frame]  # late: its place has passed; deliver it rather than lose it
        if seq == o.delivered + 1:
            o.delivered = seq
            return [frame, *self._drain(o)]
        o.held[seq] = (frame, now)
        self.held_total += 1
        if len(o.held) > self.max_held:
            return self._skip(o)
        return []

    def release(self, origin: str) -> list[bytes]:
        """Everything ``origin`` has held, in order, skipping its gap (before one of its unicasts)."""
        o = self._origins.get(origin)
        if o is None or not o.held:
            return []
        return self._skip(o)

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """Broadcasts whose gap has waited ``max_wait``: deliver them (and what follows them)."""
        out: list[tuple[str, bytes]] = []
        for origin, o in self._origins.items():
            if o.held and min(since for _, since in o.held.values()) + self.max_wait <= now:
                out += [(origin, f) for f in self._skip(o)]
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` will next have something (None: nothing held)."""
        times = [since for o in self._origins.values() for _, since in o.held.values()]
        return min(times) + self.max_wait if times else None

    def forget(self, origin: str) -> list[bytes]:
        """Drop an origin's state; what it had held is delivered now, in order."""
        o = self._origins.pop(origin, None)
        if o is None:
            return []
        return [o.held[s][0] for s in sorted(o.held)]

    def _skip(self, o: _Origin) -> list[bytes]:
        """Give up on the first gap: move past it and deliver what follows in order."""
        self.gaps_skipped += 1
        o.delivered = min(o.held) - 1
        return self._drain(o)

    @staticmethod
    def _drain(o: _Origin) -> list[bytes]:
        out = []
        while (nxt := o.delivered + 1) in o.held:
            out.append(o.held.pop(nxt)[0])
            o.delivered = nxt
        return out
