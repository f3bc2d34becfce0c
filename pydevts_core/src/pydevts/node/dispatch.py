"""Running handlers for incoming events and requests; routing replies to the requests they answer.

Theory of operation
-------------------
Link readers call :meth:`Dispatcher.deliver` with every batch of core frames
from one origin node. Replies and errors are matched to waiting requests at
once, in the reader (:class:`~pydevts.node.requests.PendingRequests`), so a
handler that awaits a request never blocks the reply it waits for. Events and
requests go to the origin's *inbox*, a bounded queue drained by one task per
origin:

- events run their handler inline, in arrival order (per-origin order holds);
- requests run their handler in a task of their own (at most
  ``max_concurrent_requests`` at once, ``max_requests_per_origin`` per origin
  until the reply is queued), so that a request handler that itself
  makes requests — even back to its caller — cannot deadlock an inbox.

When an inbox is full the reader waits, the transport stops reading, and the
sender's queue fills until its ``send``/``emit`` waits: a slow handler pushes
back on its senders and memory stays bounded. Nothing is dropped silently.

Names starting with ``pydevts.`` are reserved: an EVENT so named is refused on
receipt; a REQUEST reaches only the node's system handlers, which refuse what
they must by raising ``PermissionError`` (an ERROR reply). Both are counted
(``reserved_refused``); warnings caused by peers are rate-limited (ratelog).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ..errors import RemoteProtocolError
from ..headers import EMPTY, Headers
from ..limits import RequestSlots
from ..observe.hooks import NONE, Observers
from ..observe.tracing import TraceLog
from ..protocols import Serializer
from ..ratelog import RateLimitedLog
from ..wire.link import SEND_DEADLINE
from ..wire.messages import ERROR, EVENT, REPLY, REPLY_H, REQUEST, REQUEST_H, Message, decode_message
from .handlers import SYSTEM_PREFIX
from .handling import Handling, Reply
from .requests import PendingRequests, remote_error

__all__ = ["Dispatcher", "Handler", "remote_error"]

log = logging.getLogger("pydevts.dispatch")

Handler = Callable[[str, Any], Awaitable[Any]]
Fallback = Callable[[str, str, Any], Awaitable[Any]]  # (name, sender, payload): events with no handler
Tail = Callable[[], Coroutine[Any, Any, None]]
_DROPPED = Message(0, "", 0, b"")  # a malformed request, already logged
NAME_CACHE = 1024
SendFrame = Callable[[str, bytes], Awaitable[None]]


@dataclass
class _Inbox:
    stream: MemoryObjectSendStream[list[bytes]]
    queued: int = 0  # batches sent to the stream and not yet fully handled


@dataclass
class Statistics:
    events_received: int = 0
    events_unhandled: int = 0
    handler_errors: int = 0
    requests_served: int = 0
    system_requests_served: int = 0  # pydevts.* (clients, joins, merge probes): not the application's
    bad_frames: int = 0
    dropped_after_leave: int = 0
    reserved_refused: int = 0


class Dispatcher(Handling):
    """Handlers, inboxes and pending requests of one node."""

    def __init__(
        self,
        node_id: str,
        serializer: Serializer,
        send_frame: SendFrame,
        task_group: TaskGroup,
        *,
        inbox_batches: int = 16,
        max_concurrent_requests: int = 256,
        max_requests_per_origin: int = 64,
        observers: Observers = NONE,
        traces: TraceLog | None = None,
    ) -> None:
        self.node_id = node_id
        self.serializer = serializer
        self.handlers: dict[str, Handler] = {}
        #: Handlers that take ``headers=`` (also in ``handlers``, with no headers bound).
        self.header_handlers: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.fallback: Fallback | None = None  # Node.on_unhandled
        self.stats = Statistics()
        self.observers = observers
        self.traces = traces
        self._ratelog = RateLimitedLog(log)
        self._send_frame = send_frame
        self._tg = task_group
        self._inbox_batches = inbox_batches
        self._inboxes: dict[str, _Inbox] = {}
        self._requests = PendingRequests(serializer, send_frame, task_group, observers, traces)
        self._pending = self._requests.pending  # requests in flight, by id
        self._slots = RequestSlots(max_concurrent_requests, max_requests_per_origin)
        self._names: dict[bytes, str] = {}  # raw event name -> name
        self._departed: set[str] = set()  # origins whose inbox retires once idle

    # ------------------------------------------------------------- incoming

    async def deliver(self, origin: str, frames: list[bytes]) -> Tail | None:
        """Take core frames from ``origin``; may wait while its inbox is full.

        A request with nothing of its origin queued before it starts at once.
        If it is the last frame, it is returned as a *tail* for the caller to
        run in its own task (see :meth:`pydevts.wire.link.Link.run`); otherwise it
        gets a task of its own.
        """
        batch: list[bytes] = []
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            kind = frame[0]
            if kind == REPLY or kind == ERROR or kind == REPLY_H:
                self._resolve(origin, frame)
            elif (kind == REQUEST or kind == REQUEST_H) and not batch and self._idle(origin):
                msg = self._claim_request(origin, frame)
                if msg is None:
                    batch.append(frame)  # no request slot free: the inbox waits for one
                elif msg is not _DROPPED:
                    if i == last:
                        return partial(self._serve_request, origin, msg, len(frame))
                    self._tg.start_soon(self._serve_request, origin, msg, len(frame))
            else:
                batch.append(frame)
        if batch:
            inbox = self._inboxes.get(origin)
            if inbox is None:
                inbox = self._open_inbox(origin)
            inbox.queued += 1
            try:
                await inbox.stream.send(batch)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                # The node is shutting down (an inbox is only retired once nobody waits on it).
                inbox.queued -= 1
                self.stats.dropped_after_leave += len(batch)
                self._ratelog.info(
                    "after_leave", "dropped %d frames from %s: it is no longer a member", len(batch), origin
                )
        return None

    def _idle(self, origin: str) -> bool:
        inbox = self._inboxes.get(origin)
        return inbox is None or inbox.queued == 0

    def _claim_request(self, origin: str, frame: bytes) -> Message | None:
        """Take a request slot (the origin's and the node's) and decode; ``None`` if none is free."""
        if not self._slots.try_acquire(origin):
            return None
        try:
            return decode_message(frame)
        except RemoteProtocolError as exc:
            self._slots.handler_done()
            self._slots.release(origin)
            self.stats.bad_frames += 1
            self._ratelog.warning("bad_frame", "dropping a frame from %s: %s", origin, exc)
            return _DROPPED

    def _open_inbox(self, origin: str) -> _Inbox:
        send, receive = anyio.create_memory_object_stream[list[bytes]](self._inbox_batches)
        inbox = self._inboxes[origin] = _Inbox(send)
        self._tg.start_soon(self._drain_inbox, origin, inbox, receive, name=f"pydevts inbox {origin}")
        return inbox

    def close_inbox(self, origin: str) -> None:
        """``origin`` left or failed: retire its inbox task once it has nothing left.

        Nothing already received is dropped and order is kept: the inbox stays
        the one and only inbox of ``origin`` until every batch queued — or
        that a reader is still waiting to queue (news of a leave may overtake
        the data, e.g. over UDP) — has been handled; then it ends. Frames that
        arrive after that get a new inbox, which retires the same way.
        """
        self._departed.add(origin)
        self._retire_if_idle(origin)

    def forget(self, origin: str) -> None:
        """``origin`` was reaped: keep nothing about it once its inbox is gone."""
        if origin not in self._inboxes:
            self._departed.discard(origin)

    def revive(self, origin: str) -> None:
        """``origin`` is a member again (it came back)."""
        self._departed.discard(origin)

    def _retire_if_idle(self, origin: str) -> None:
        inbox = self._inboxes.get(origin)
        if inbox is not None and inbox.queued == 0 and origin in self._departed:
            del self._inboxes[origin]
            inbox.stream.close()  # empty, and nobody waits to send: the drain task ends

    async def _drain_inbox(self, origin: str, inbox: _Inbox, receive: Any) -> None:
        SEND_DEADLINE.set(None)  # this task's own context: not a requester's deadline
        handlers = self.handlers
        loads = self.serializer.loads
        stats = self.stats
        names = self._names
        watched = self.observers.messages
        async with receive:
            async for batch in receive:
                for frame in batch:
                    # Events are the hot path: decoded inline, names cached.
                    if frame[0] == EVENT and len(frame) >= 2 and (end := 2 + frame[1]) <= len(frame):
                        raw = frame[2:end]
                        name = names.get(raw)
                        if name is None:
                            name = self._name(raw, origin)
                            if name is None:
                                continue
                        stats.events_received += 1
                        if watched:
                            await self.run_event(origin, name, frame[end:], EMPTY, len(frame))
                            continue
                        handler = handlers.get(name)
                        if handler is None:
                            stats.events_unhandled += 1
                            if self.fallback is None:
                                log.debug("no handler for event %r from %s", name, origin)
                                continue
                            handler = partial(self.fallback, name)
                        try:
                            await handler(origin, loads(frame[end:]))
                        except Exception:
                            stats.handler_errors += 1
                            log.exception("handler for event %r from %s raised", name, origin)
                        continue
                    try:
                        msg = decode_message(frame)
                    except RemoteProtocolError as exc:
                        stats.bad_frames += 1
                        self._ratelog.warning("bad_frame", "dropping a frame from %s: %s", origin, exc)
                        continue
                    if msg.kind == REQUEST:
                        await self._slots.acquire(origin)
                        self._tg.start_soon(self._serve_request, origin, msg, len(frame))
                    elif msg.kind == EVENT and self._name_allowed(msg.name, origin):  # with headers
                        stats.events_received += 1
                        await self.run_event(origin, msg.name, msg.payload, msg.headers, len(frame))
                    else:
                        stats.bad_frames += 1
                        self._ratelog.warning(
                            "bad_frame", "dropping a frame of kind 0x%02x from %s", msg.kind, origin
                        )
                inbox.queued -= 1
                if inbox.queued == 0 and origin in self._departed and self._inboxes.get(origin) is inbox:
                    self._retire_if_idle(origin)

    def _name(self, raw: bytes, origin: str) -> str | None:
        """Decode an event name, caching up to NAME_CACHE of them; None if not UTF-8 or reserved."""
        try:
            name = raw.decode()
        except UnicodeDecodeError:
            self.stats.bad_frames += 1
            self._ratelog.warning(
                "bad_event_name", "dropping an event from %s: its name is not UTF-8", origin
            )
            return None
        if not self._name_allowed(name, origin):  # never cached: every such event comes here
            return None
        if len(self._names) < NAME_CACHE:
            self._names[raw] = name
        return name

    def _name_allowed(self, name: str, origin: str) -> bool:
        if name.startswith(SYSTEM_PREFIX):
            self.stats.reserved_refused += 1
            self._ratelog.warning("reserved", "refused event %r from %s: the name is reserved", name, origin)
            return False
        return True

    def queued_batches(self) -> int:
        """Batches waiting in every origin's inbox now (each inbox holds at most ``inbox_batches``)."""
        return sum(inbox.queued for inbox in self._inboxes.values())

    def requests_in_flight(self, origin: str) -> int:
        return self._slots.in_flight(origin)

    # ------------------------------------------------------------- requests (requests.py)

    async def request(
        self, dest: str, name: str, payload: Any, timeout: float, headers: Headers | None = None
    ) -> Reply:
        """Send a request and wait for the reply (and its headers); see :meth:`pydevts.Node.request`."""
        return await self._requests.request(dest, name, payload, timeout, headers)

    def _resolve(self, origin: str, frame: bytes) -> None:
        try:
            msg = decode_message(frame)
        except RemoteProtocolError as exc:
            self.stats.bad_frames += 1
            self._ratelog.warning("bad_frame", "dropping a reply from %s: %s", origin, exc)
            return
        self._requests.resolve(origin, msg)

    def fail_pending(self, dest: str | None, reason: str) -> None:
        """Fail every request waiting on ``dest`` (it left or failed), or on anyone (``None``)."""
        self._requests.fail(dest, reason)
