"""The queue of lifecycle events (member changes, start and stop) and the task that runs their callbacks.

A :class:`~pydevts.node.context.NodeContext` puts events in without waiting
(:meth:`LifecycleQueue.put`); one task (:meth:`LifecycleQueue.run`) hands each
to every ``Node.on_lifecycle`` callback in turn, so a slow callback delays
later events but never the router or a link reader.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from ..members import MemberEvent

__all__ = ["LIFECYCLE_QUEUE", "LifecycleQueue"]

log = logging.getLogger("pydevts.node")

LIFECYCLE_QUEUE = 10_000


class LifecycleQueue:
    """Lifecycle events waiting for their callbacks; at most ``LIFECYCLE_QUEUE`` of them."""

    def __init__(self, callbacks: list[Callable[[MemberEvent], Awaitable[None]]]) -> None:
        self._callbacks = callbacks
        self._events_in, self._events_out = anyio.create_memory_object_stream[MemberEvent](LIFECYCLE_QUEUE)
        self.dropped = 0
        self._events_idle = anyio.Event()
        self._events_idle.set()
        self._events_queued = 0

    def put(self, event: MemberEvent) -> None:
        # One event per member change: the queue only fills if a callback
        # blocks for a long time. Then events are dropped, counted and logged.
        try:
            self._events_in.send_nowait(event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the node is shutting down: nobody is listening any more
        except anyio.WouldBlock:
            self.dropped += 1
            log.error(
                "lifecycle queue full (%d events; is a callback stuck?): dropped %s of %s",
                LIFECYCLE_QUEUE,
                event.kind,
                event.member.id,
            )
            return
        if self._events_queued == 0:
            self._events_idle = anyio.Event()
        self._events_queued += 1

    async def run(self) -> None:
        async with self._events_out:
            async for event in self._events_out:
                for callback in list(self._callbacks):
                    try:
                        await callback(event)
                    except Exception:
                        log.exception("lifecycle callback %r raised on %s", callback, event.kind)
                self._events_queued -= 1
                if self._events_queued == 0:
                    self._events_idle.set()

    async def drain(self) -> None:
        """Wait (briefly) until queued lifecycle events have been handled."""
        with anyio.move_on_after(1.0):
            await self._events_idle.wait()
