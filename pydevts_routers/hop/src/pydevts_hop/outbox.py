"""Ordered hand-over of core frames to the node, per origin (the hop router's IO shell).

Frames of one origin reach this node over several links (its own link, and
relays through other neighbours), so several reader tasks may hand frames of
the same origin to ``RouterContext.deliver`` at once — and which of them gets
into the origin's inbox first is up to the scheduler (trio even shuffles
runnable tasks). The routing state already puts them in order; this keeps
that order: frames are queued per origin, synchronously, in the order the
state produced them, and one task at a time (the *pump*) hands them over.

The task that finds nobody pumping becomes the pump, so the common case (one
link, nothing queued) costs nothing extra and a request's *tail* still comes
back to the reader for the leader/follower fast path. Others only queue, and
wait while more than :data:`BACKLOG` batches of that origin are queued: a
slow handler still pushes back on every link that feeds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydevts.link import Tail

__all__ = ["BACKLOG", "Outboxes"]

#: Batches of one origin queued (beyond the one being handed over) before readers wait.
BACKLOG = 64

Deliver = Callable[[str, list[bytes]], Coroutine[Any, Any, Tail | None]]
Spawn = Callable[..., Any]


@dataclass(slots=True)
class _Box:
    queue: deque[list[bytes]] = field(default_factory=deque)
    pumping: bool = False
    room: anyio.Event | None = None


class Outboxes:
    """One ordered queue per origin in front of ``deliver``."""

    def __init__(self, deliver: Deliver, spawn: Spawn) -> None:
        self._deliver = deliver
        self._spawn = spawn
        self._boxes: dict[str, _Box] = {}

    def enqueue(self, origin: str, frames: list[bytes]) -> None:
        """Queue ``frames`` behind what ``origin`` already has queued (never waits)."""
        self._boxes.setdefault(origin, _Box()).queue.append(frames)

    async def deliver(self, origin: str, frames: list[bytes]) -> Tail | None:
        """:meth:`enqueue`, then :meth:`flush`."""
        self.enqueue(origin, frames)
        return await self.flush(origin)

    async def flush(self, origin: str) -> Tail | None:
        """Hand ``origin``'s queued frames over if nobody is; else wait while too many are queued.

        Returns the tail of the last batch handed over by this task, if any.
        """
        box = self._boxes.get(origin)
        if box is None:
            return None
        if box.pumping:
            while box.pumping and len(box.queue) > BACKLOG:
                if box.room is None:
                    box.room = anyio.Event()
                await box.room.wait()
            return None
        box.pumping = True
        return await self._pump(origin, box)

    def deliver_soon(self, origin: str, frames: list[bytes]) -> None:
        """Queue ``frames`` now (in order) and hand them over from a task of their own."""
        box = self._boxes.setdefault(origin, _Box())
        box.queue.append(frames)
        if not box.pumping:
            box.pumping = True
            self._spawn(self._pump_all, origin, box)

    async def _pump_all(self, origin: str, box: _Box) -> None:
        tail = await self._pump(origin, box)
        if tail is not None:
            await tail()

    async def _pump(self, origin: str, box: _Box) -> Tail | None:
        tail: Tail | None = None
        try:
            while box.queue:
                if tail is not None:
                    self._spawn(tail)  # more follows: that request gets a task of its own
                tail = await self._deliver(origin, box.queue.popleft())
                self._wake(box)
            return tail
        finally:
            box.pumping = False
            self._wake(box)
            if not box.queue:
                self._boxes.pop(origin, None)

    @staticmethod
    def _wake(box: _Box) -> None:
        if box.room is not None:
            box.room.set()
            box.room = None
