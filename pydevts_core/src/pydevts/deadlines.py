"""Running a sans-IO machine's timer at its deadlines, without polling.

A machine says when it is next due (``next_deadline() -> float | None``, on
anyio's clock); :class:`DeadlineClock` sleeps until then, runs it, and asks
again. An input that may have moved the deadline earlier calls
:meth:`DeadlineClock.moved`, which wakes the sleeper only if it must wake
sooner. Two runs are at least ``min_gap`` apart: after a stall (a paused
process, a busy loop), timers that fell due together still get that much
time between them (SWIM's indirect probe and the end of its round, say), and
a machine whose deadline does not move on cannot spin.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
import anyio.lowlevel

__all__ = ["MIN_GAP", "DeadlineClock"]

#: The least time between two runs, in seconds (see the module docs).
MIN_GAP = 0.05


class DeadlineClock:
    """Calls ``run(now)`` at ``next_deadline()``; see the module docs."""

    def __init__(
        self,
        next_deadline: Callable[[], float | None],
        run: Callable[[float], None],
        *,
        min_gap: float = MIN_GAP,
        max_sleep: float = math.inf,
    ) -> None:
        self._next_deadline = next_deadline
        self._run = run
        self.min_gap = min_gap
        self.max_sleep = max_sleep  # sleep at most this long before asking again
        self._wake: anyio.Event | None = None
        self._sleep_until = -math.inf  # when the sleeper wakes anyway (-inf: not asleep)
        self._earliest = -math.inf  # no run before this (min_gap after the last one)
        self._stopped = False
        self.runs = 0

    def moved(self) -> None:
        """An input may have moved the deadline earlier: wake the sleeper if it must wake sooner."""
        if self._wake is None or self._sleep_until == -math.inf:
            return  # running, or about to ask again
        deadline = self._next_deadline()
        if deadline is not None and max(deadline, self._earliest) < self._sleep_until:
            self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Run the machine's timer at each deadline until :meth:`stop`."""
        while not self._stopped:
            now = anyio.current_time()
            deadline = self._next_deadline()
            due = math.inf if deadline is None else max(deadline, self._earliest)
            if now >= due:
                self._earliest = now + self.min_gap
                self.runs += 1
                self._run(now)  # must not raise: a machine's bug is the caller's to contain
                await anyio.lowlevel.checkpoint()
                continue
            self._sleep_until = min(due, now + self.max_sleep)
            self._wake = wake = anyio.Event()
            try:
                with anyio.move_on_after(self._sleep_until - now):
                    await wake.wait()
            finally:
                self._sleep_until = -math.inf
