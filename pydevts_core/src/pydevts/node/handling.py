"""Running one handler: an event's, or a request's and sending its reply (internal).

:class:`Handling` is the part of :class:`~pydevts.node.dispatch.Dispatcher` that
runs handlers once a message is taken: with its headers for a handler that
asks for them (``async def h(sender, payload, *, headers)``), watched by the
node's plugins (:mod:`pydevts.observe`) when any plugin watches messages,
recorded when the message is traced (:mod:`pydevts.observe.tracing`). The hot path
of plain events with nobody watching stays in the dispatcher's drain loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import LocalProtocolError, PydevtsError, SerializationError
from ..headers import EMPTY, Headers
from ..observe.hooks import Finish, MessageInfo, Observers
from ..observe.tracing import TRACE_HEADER, TraceLog
from ..wire.link import SEND_DEADLINE
from ..wire.messages import ErrorCode, Message, encode_error, encode_reply
from .handlers import SYSTEM_PREFIX

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..limits import RequestSlots
    from ..protocols import Serializer
    from ..ratelog import RateLimitedLog
    from .dispatch import Fallback, Handler, SendFrame, Statistics

__all__ = ["Handling", "Reply"]

log = logging.getLogger("pydevts.dispatch")


class Reply:
    """A request handler's reply with headers: ``return Reply(value, headers={...})``.

    :meth:`pydevts.Node.request_reply` returns one too (the value and the
    reply's headers).
    """

    __slots__ = ("headers", "value")

    def __init__(self, value: Any = None, headers: Headers | None = None) -> None:
        self.value = value
        self.headers: Headers = headers or EMPTY

    def __repr__(self) -> str:
        return f"Reply({self.value!r}, headers={dict(self.headers)!r})"


class Handling:
    node_id: str
    serializer: Serializer
    handlers: dict[str, Handler]
    header_handlers: dict[str, Callable[..., Awaitable[Any]]]
    fallback: Fallback | None
    stats: Statistics
    observers: Observers
    traces: TraceLog | None
    _send_frame: SendFrame
    _slots: RequestSlots
    _ratelog: RateLimitedLog
    _tg: TaskGroup

    def _handler(self, name: str, headers: Headers) -> Callable[..., Awaitable[Any]] | None:
        if headers:
            wants = self.header_handlers.get(name)
            if wants is not None:
                return partial(wants, headers=headers)
        return self.handlers.get(name)

    async def run_event(self, origin: str, name: str, payload: bytes, headers: Headers, size: int) -> None:
        """Run the handler of one event (with headers, watched or traced): never raises."""
        obs = self.observers
        info = MessageInfo("event", name, origin, size, headers) if obs.messages else None
        if info is not None and obs.inbound:
            obs.call(obs.inbound, info)
        trace = headers.get(TRACE_HEADER) if headers else None
        handler = self._handler(name, headers)
        if handler is None:
            self.stats.events_unhandled += 1
            if self.fallback is None:
                log.debug("no handler for event %r from %s", name, origin)
                self._dropped(info, trace, name, origin, "no handler")
                return
            handler = partial(self.fallback, name)
        finishers = obs.handle_start(info) if info is not None and obs.handle else None
        if trace is None and not finishers:  # nothing to time or record
            try:
                await handler(origin, self.serializer.loads(payload))
            except Exception:
                self.stats.handler_errors += 1
                log.exception("handler for event %r from %s raised", name, origin)
            return
        await self._run(handler, origin, payload, trace, name, "event", finishers)

    async def _run(
        self,
        handler: Callable[..., Awaitable[Any]],
        origin: str,
        payload: bytes,
        trace: str | None,
        name: str,
        what: str,
        finishers: list[Finish] | None,
    ) -> tuple[Any, Exception | None]:
        """Run ``handler``; return its result, or the exception it raised (logged, counted)."""
        obs = self.observers
        start = time.perf_counter() if finishers else 0.0
        error: Exception | None = None
        result: Any = None
        try:
            result = await handler(origin, self.serializer.loads(payload))
        except Exception as exc:
            error = exc
        finally:
            if finishers:
                obs.handle_end(finishers, time.perf_counter() - start, error)
        if isinstance(error, SerializationError) and what == "request":
            pass  # the requester is told (BAD_PAYLOAD)
        elif error is not None and not (
            isinstance(error, PermissionError) and name.startswith(SYSTEM_PREFIX)
        ):
            self.stats.handler_errors += 1
            log.error("handler for %s %r from %s raised", what, name, origin, exc_info=error)
        if trace is not None and self.traces is not None:
            self.traces.record(trace, "handled" if error is None else "failed", name, origin, _why(error))
        return result, error

    def _dropped(self, info: MessageInfo | None, trace: str | None, name: str, origin: str, why: str) -> None:
        obs = self.observers
        if info is not None and obs.drop:
            obs.call(obs.drop, info, why)
        if trace is not None and self.traces is not None:
            self.traces.record(trace, "dropped", name, origin, why)

    async def _serve_request(self, origin: str, msg: Message, size: int = 0) -> None:
        SEND_DEADLINE.set(None)  # this task's own context: not the requester's deadline
        try:
            try:
                reply = await self._answer(origin, msg, size)
            finally:
                self._slots.handler_done()
            try:
                await self._send_frame(origin, reply)
            except PydevtsError as exc:
                self._ratelog.info("no_reply", "could not reply to %r from %s: %s", msg.name, origin, exc)
            except Exception:
                log.exception("could not reply to %r from %s", msg.name, origin)
        finally:  # once the reply is queued: a requester that does not read blocks itself only
            self._slots.release(origin)

    async def _answer(self, origin: str, msg: Message, size: int) -> bytes:
        obs = self.observers
        headers = msg.headers
        info = MessageInfo("request", msg.name, origin, size, headers) if obs.messages else None
        if info is not None and obs.inbound:
            obs.call(obs.inbound, info)
        trace = headers.get(TRACE_HEADER) if headers else None
        handler = self._handler(msg.name, headers)
        system = msg.name.startswith(SYSTEM_PREFIX)
        if handler is None:
            self.stats.events_unhandled += 1
            text = f"node {self.node_id} has no handler for {msg.name!r}"
            if system:
                self.stats.reserved_refused += 1
                text = f"{msg.name!r} is not a system request of node {self.node_id} (the name is reserved)"
            self._dropped(info, trace, msg.name, origin, "no handler")
            return encode_error(msg.request_id, ErrorCode.NO_HANDLER, text)
        finishers = obs.handle_start(info) if info is not None and obs.handle else None
        result, error = await self._run(handler, origin, msg.payload, trace, msg.name, "request", finishers)
        if isinstance(error, SerializationError):
            return encode_error(msg.request_id, ErrorCode.BAD_PAYLOAD, str(error))
        if error is not None:
            if system and isinstance(error, PermissionError):  # a system request refused
                self.stats.reserved_refused += 1
                self._ratelog.warning("reserved", "refused request %r from %s: %s", msg.name, origin, error)
            text = f"{type(error).__name__}: {error}"
            return encode_error(msg.request_id, ErrorCode.HANDLER_FAILED, text)
        reply_headers: Headers = EMPTY
        if isinstance(result, Reply):
            result, reply_headers = result.value, result.headers
        try:
            payload = self.serializer.dumps(result)
            if info is not None and obs.out:
                out = MessageInfo("reply", msg.name, origin, len(payload) + 9, reply_headers)
                reply_headers = obs.message_out(out) or reply_headers
            reply = encode_reply(msg.request_id, payload, reply_headers)
        except SerializationError as exc:
            return encode_error(msg.request_id, ErrorCode.BAD_PAYLOAD, str(exc))
        except LocalProtocolError as exc:  # headers over their bounds
            self.stats.handler_errors += 1
            log.error("the reply of %r to %s cannot be sent: %s", msg.name, origin, exc)
            return encode_error(msg.request_id, ErrorCode.HANDLER_FAILED, f"LocalProtocolError: {exc}")
        if system:
            self.stats.system_requests_served += 1
        else:
            self.stats.requests_served += 1
        return reply


def _why(error: BaseException | None) -> str:
    return "" if error is None else f"{type(error).__name__}: {error}"[:200]
