"""The virtual clock: an event heap ordered by ``(time, seq)``, and nothing else.

Events at the same time run in the order they were scheduled (``seq`` counts
up), so a run depends only on what was scheduled, never on wall time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["Clock", "SimulationError"]


class SimulationError(RuntimeError):
    """The simulation cannot go on: a machine misbehaved, or the clock cannot advance."""


class Clock:
    """Virtual seconds (``now``) and the events due later."""

    __slots__ = ("heap", "now", "seq")

    def __init__(self) -> None:
        self.now = 0.0
        self.seq = 0
        #: ``(time, seq, fn, args)``, a heap (the run loop pops it directly).
        self.heap: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []

    def at(self, when: float, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` at ``when`` (or now, if that has passed)."""
        self.seq += 1
        heapq.heappush(self.heap, (when if when > self.now else self.now, self.seq, fn, args))

    def after(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def next_time(self) -> float | None:
        """When the next event is due; ``None`` if none is."""
        return self.heap[0][0] if self.heap else None

    def pop(self) -> tuple[Callable[..., object], tuple[Any, ...]]:
        """Take the next event and move ``now`` to its time."""
        when, _, fn, args = heapq.heappop(self.heap)
        self.now = when
        return fn, args

    def __len__(self) -> int:
        return len(self.heap)
