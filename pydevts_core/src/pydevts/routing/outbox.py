"""Ordered hand-over of core frames to the node, per origin (for routers that relay).

Frames of one origin reach this node over several links (its own link, and
relays through other neighbours), so several reader tasks may hand frames of
the same origin to ``RouterContext.deliver`` at once — and which of them gets
into the origin's inbox first is up to the scheduler (trio even shuffles
runnable tasks). The routing state already puts them in order; this keeps
that order: frames are queued per origin, synchronously, in the order the
state produced them, and one task at a time (the *pump*) hands them over.

The task that finds nobody pumping hands over what was queued when it came
(its own frames, typically), so the common case (one link, nothing queued)
costs nothing extra and a request's *tail* still comes back to the reader for
the leader/follower fast path; anything queued meanwhile is handed over by a
task of its own. Others only queue, and wait while more than :data:`BACKLOG`
bytes of that origin are queued: a slow handler still pushes back on every
link that feeds it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..wire.link import Tail

log = logging.getLogger("pydevts.routing")

__all__ = ["BACKLOG", "Outboxes"]

#: Bytes of one origin queued (beyond the batch being handed over) before its feeders wait.
BACKLOG = 1024 * 1024

Deliver = Callable[[str, list[bytes]], Coroutine[Any, Any, Tail | None]]
Spawn = Callable[..., Any]


@dataclass(slots=True)
class _Box:
    queue: deque[list[bytes]] = field(default_factory=deque)
    bytes: int = 0
    pumping: bool = False
    room: anyio.Event | None = None

    def busy(self) -> bool:
        """Whether a task is handing frames over (read afresh after an await)."""
        return self.pumping


def _size(frames: list[bytes]) -> int:
    return sum(map(len, frames)) + 8 * len(frames)


class Outboxes:
    """One ordered queue per origin in front of ``deliver``."""

    def __init__(self, deliver: Deliver, spawn: Spawn) -> None:
        self._deliver = deliver
        self._spawn = spawn
        self._boxes: dict[str, _Box] = {}
        self.failed = 0

    def enqueue(self, origin: str, frames: list[bytes]) -> None:
        """Queue ``frames`` behind what ``origin`` already has queued (never waits)."""
        box = self._boxes.setdefault(origin, _Box())
        box.queue.append(frames)
        box.bytes += _size(frames)

    async def deliver(self, origin: str, frames: list[bytes]) -> Tail | None:
        """:meth:`enqueue`, then :meth:`flush`."""
        self.enqueue(origin, frames)
        return await self.flush(origin)

    async def flush(self, origin: str) -> Tail | None:
        """Hand over what ``origin`` has queued if nobody is; else wait while too much is queued.

        The task that hands over takes only what was queued when it began (its
        own frames, typically); what others queue meanwhile goes to a task of
        its own, so no reader is kept from its own link by another origin's
        traffic. Returns the tail of the last batch this task handed over.
        """
        box = self._boxes.get(origin)
        if box is None:
            return None
        if box.busy():
            while box.busy() and box.bytes > BACKLOG:
                if box.room is None:
                    box.room = anyio.Event()
                await box.room.wait()
            if box.busy() or not box.queue:
                return None
        box.pumping = True
        return await self._pump(origin, box, len(box.queue))

    def deliver_soon(self, origin: str, frames: list[bytes]) -> None:
        """Queue ``frames`` now (in order) and hand them over from a task of their own."""
        self.enqueue(origin, frames)
        box = self._boxes[origin]
        if not box.pumping:
            box.pumping = True
            self._spawn(self._pump_all, origin, box)

    async def _pump_all(self, origin: str, box: _Box) -> None:
        tail = await self._pump(origin, box, None)
        if tail is not None:
            await tail()

    async def _pump(self, origin: str, box: _Box, limit: int | None) -> Tail | None:
        tail: Tail | None = None
        handed_on = False
        try:
            count = 0
            while box.queue and (limit is None or count < limit):
                if tail is not None:
                    self._spawn(tail)  # more follows: that request gets a task of its own
                batch = box.queue.popleft()
                box.bytes -= _size(batch)
                count += 1
                try:
                    tail = await self._deliver(origin, batch)
                except Exception:  # a bug below must not strand what is queued behind
                    self.failed += 1
                    log.exception("handing %d frames from %s to the node failed", len(batch), origin)
                    tail = None
                self._wake(box)
            if box.queue:  # queued by others meanwhile: a task of its own hands those over
                self._spawn(self._pump_all, origin, box)
                handed_on = True
            return tail
        finally:
            if not handed_on:
                box.pumping = False
                if not box.queue and self._boxes.get(origin) is box:
                    del self._boxes[origin]
            self._wake(box)

    @staticmethod
    def _wake(box: _Box) -> None:
        if box.room is not None:
            box.room.set()
            box.room = None
