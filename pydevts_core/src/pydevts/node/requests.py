"""Requests this node sends: matching replies to them, and their deadlines.

:class:`PendingRequests` belongs to a :class:`~pydevts.node.dispatch.Dispatcher`:
its ``request`` sends a REQUEST and waits until the reply (or an error) is
matched to it by :meth:`PendingRequests.resolve` — called at once by the link
reader, so a handler that awaits a request never blocks the reply it waits
for — or until its deadline passes or its destination leaves
(:meth:`PendingRequests.fail`). :func:`remote_error` turns an ERROR reply
into the exception the requester sees.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import PydevtsError, RequestTimeoutError, UnknownNodeError
from ..headers import EMPTY, Headers
from ..observe.hooks import NONE, MessageInfo, Observers
from ..observe.tracing import TRACE_HEADER, TraceLog
from ..protocols import Serializer
from ..wire.link import SEND_DEADLINE
from ..wire.messages import REPLY, ErrorCode, Message, encode_request, remote_error
from .handling import Reply

__all__ = ["PendingRequests", "remote_error"]

log = logging.getLogger("pydevts.dispatch")

SendFrame = Callable[[str, bytes], Awaitable[None]]


@dataclass
class _Pending:
    dest: str
    name: str
    deadline: float
    started: float = 0.0
    done: anyio.Event = field(default_factory=anyio.Event)
    message: Message | None = None
    error: PydevtsError | None = None


class PendingRequests:
    """The requests in flight of one node, by request id."""

    def __init__(
        self,
        serializer: Serializer,
        send_frame: SendFrame,
        task_group: TaskGroup,
        observers: Observers = NONE,
        traces: TraceLog | None = None,
    ) -> None:
        self.serializer = serializer
        self.observers = observers
        self.traces = traces
        self._send_frame = send_frame
        self._tg = task_group
        self.pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._sweep_at = math.inf  # when the deadline sweeper will next look
        self._sweep_wake: anyio.Event | None = None

    async def request(
        self, dest: str, name: str, payload: Any, timeout: float, headers: Headers | None = None
    ) -> Reply:
        """Send a request and wait for the reply; see :meth:`pydevts.Node.request`."""
        request_id = self._next_id
        self._next_id += 1
        now = anyio.current_time()
        pending = _Pending(dest, name, now + timeout, now)
        self.pending[request_id] = pending
        if pending.deadline < self._sweep_at:
            self._wake_sweeper()
        obs = self.observers
        info: MessageInfo | None = None
        token = SEND_DEADLINE.set(pending.deadline)
        try:
            body = self.serializer.dumps(payload)
            if obs.messages:
                info = MessageInfo("request", name, dest, len(body) + len(name) + 10, headers or EMPTY)
                if obs.out:
                    headers = obs.message_out(info) or headers
            frame = encode_request(request_id, name, body, headers)
            if headers and self.traces is not None and TRACE_HEADER in headers:
                self.traces.record(headers[TRACE_HEADER], "sent", name, dest, "request")
            try:
                await self._send_frame(dest, frame)
            except TimeoutError:
                pending.done.set()  # queue space did not come in time: a timeout
            else:
                await pending.done.wait()  # set by the reply, by fail, or by the sweeper
        except BaseException as exc:
            if info is not None and obs.request_done:
                outcome = "unreachable" if isinstance(exc, UnknownNodeError) else "error"
                self._done(info, pending, outcome)
            raise
        finally:
            SEND_DEADLINE.reset(token)
            del self.pending[request_id]
        msg = pending.message
        if info is not None:
            self._observe_end(info, pending)
        if pending.error is not None:
            raise pending.error
        if msg is None:
            raise RequestTimeoutError(f"no reply from {dest} to request {name!r} within {timeout:g} s")
        if msg.kind == REPLY:
            return Reply(self.serializer.loads(msg.payload), msg.headers)
        raise remote_error(dest, name, msg)

    def _observe_end(self, info: MessageInfo, pending: _Pending) -> None:
        obs, msg = self.observers, pending.message
        if msg is not None and obs.inbound:
            kind = "reply" if msg.kind == REPLY else "error"
            size = len(msg.payload) + 9
            obs.call(obs.inbound, MessageInfo(kind, info.name, info.peer, size, msg.headers))
        if obs.request_done:
            if pending.error is not None:
                outcome = "unreachable"
            elif msg is None:
                outcome = "timeout"
            elif msg.kind == REPLY:
                outcome = "ok"
            elif msg.code == ErrorCode.NO_HANDLER:
                outcome = "no_handler"
            elif msg.code == ErrorCode.UNREACHABLE:
                outcome = "unreachable"
            else:
                outcome = "error"
            self._done(info, pending, outcome)

    def _done(self, info: MessageInfo, pending: _Pending, outcome: str) -> None:
        seconds = anyio.current_time() - pending.started
        self.observers.call(self.observers.request_done, info, seconds, outcome)

    # Deadlines: one sweeper task instead of a cancel scope per request (a
    # scope costs several microseconds on the round-trip path). It sleeps
    # until the earliest deadline of the requests in flight; a request with
    # an earlier deadline than that wakes it.

    def _wake_sweeper(self) -> None:
        if self._sweep_wake is None:
            self._sweep_wake = anyio.Event()
            self._tg.start_soon(self._sweep, name="pydevts request deadlines")
        else:
            self._sweep_wake.set()

    async def _sweep(self) -> None:
        while True:
            now = anyio.current_time()
            earliest = math.inf
            for pending in self.pending.values():
                if pending.done.is_set():
                    continue
                if pending.deadline <= now:
                    pending.done.set()  # no message, no error: a timeout
                elif pending.deadline < earliest:
                    earliest = pending.deadline
            self._sweep_at = earliest
            self._sweep_wake = wake = anyio.Event()
            with anyio.move_on_after(earliest - now):
                await wake.wait()

    def resolve(self, origin: str, msg: Message) -> None:
        """A REPLY or ERROR from ``origin``: wake the request it answers (if it still waits)."""
        pending = self.pending.get(msg.request_id)
        if pending is None or pending.dest != origin:
            log.debug("late or unknown reply %d from %s", msg.request_id, origin)
            return
        pending.message = msg
        pending.done.set()

    def fail(self, dest: str | None, reason: str) -> None:
        """Fail every request waiting on ``dest`` (it left or failed), or on anyone (``None``)."""
        for pending in self.pending.values():
            if (dest is None or pending.dest == dest) and not pending.done.is_set():
                pending.error = UnknownNodeError(pending.dest, f"{reason}; no reply to {pending.name!r}")
                pending.done.set()
