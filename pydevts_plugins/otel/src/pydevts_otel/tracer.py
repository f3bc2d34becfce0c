"""The ``otel`` connection plugin: OpenTelemetry spans for a node's messages.

One :class:`OtelPlugin` watches one node (see :class:`pydevts.Plugin`):

========================  ==========  ==============================================
span                      kind        when
========================  ==========  ==============================================
``emit NAME``             PRODUCER    ``node.emit`` (started and ended as it leaves)
``send NAME``             PRODUCER    ``node.send`` (started and ended as it leaves)
``request NAME``          CLIENT      ``node.request``: from sending to its outcome
``handle NAME``           CONSUMER    an event's handler runs (SERVER: a request's)
``relay NAME``            INTERNAL    the hop router passed another node's message on
``drop NAME``             INTERNAL    a message carrying trace context was dropped
========================  ==========  ==============================================

The context of each ``emit``/``send``/``request`` span travels in the
message's headers (W3C ``traceparent`` and ``tracestate``), so the receiving
node's ``handle`` span is its child, and whatever the handler does (a nested
``emit``, a ``request``) is a child of that: one trace follows a request
through the cluster. A request's reply carries the context of the ``handle``
span, so the hop router's relays of the reply join the trace too.

Hooks never raise: a failure is logged (rate-limited) and the message goes
on untraced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydevts import MessageInfo, Node, Plugin
from pydevts.headers import MAX_BLOCK, MAX_HEADERS, MAX_KEY, MAX_VALUE
from pydevts.node.handlers import SYSTEM_PREFIX
from pydevts.observe import Finish
from pydevts.ratelog import RateLimitedLog

from ._version import __version__

__all__ = ["INSTRUMENTATION_NAME", "OtelPlugin"]

log = logging.getLogger("pydevts.otel")

#: The instrumentation scope of every span this plugin makes.
INSTRUMENTATION_NAME: Final = "pydevts_otel"

_KEY = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY}}}\Z")
_TRACEPARENT = "traceparent"
_EMPTY_CONTEXT = Context()

# The request a task is serving, set by on_handle and read when its reply
# leaves (same task): (plugin, request name, requester, the handle span).
_SERVING: ContextVar[tuple[OtelPlugin, str, str | None, Span] | None] = ContextVar(
    "pydevts_otel_serving", default=None
)


def _entry_size(key: str, value: str) -> int:
    """Bytes one header takes in the header block (see :mod:`pydevts.headers`)."""
    return 3 + len(key.encode()) + len(value.encode())


class OtelPlugin(Plugin):
    """OpenTelemetry tracing of one node's events, requests, handlers and relays.

    ``tracer_provider``: where spans go (default: the global one, as
    configured by the application or ``opentelemetry-instrument``).
    ``propagator``: how context is written into and read from headers
    (default: W3C TraceContext only, ``traceparent``/``tracestate``; pass
    ``opentelemetry.propagate.get_global_textmap()`` to carry baggage too —
    headers that would break pydevts' header bounds are left out).
    ``system``: also trace ``pydevts.*`` system messages (``pydevts emit``
    from the command line, members queries, key rotation).
    ``relays``: make ``relay NAME`` spans for messages the router passes on.
    ``reply_context``: a reply carries the context of its ``handle`` span
    (about 70 bytes), so relays of replies join the trace.
    ``max_open_requests``: request spans kept open at most (the oldest is
    ended, as ``untracked``, beyond that).

    One instance watches one node.
    """

    name = "otel"

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        system: bool = True,
        relays: bool = True,
        reply_context: bool = True,
        max_open_requests: int = 10_000,
    ) -> None:
        if max_open_requests < 1:
            raise ValueError("max_open_requests must be at least 1")
        self.tracer: Tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        self.propagator: TextMapPropagator = propagator or TraceContextTextMapPropagator()
        self.system = bool(system)
        self.relays = bool(relays)
        self.reply_context = bool(reply_context)
        self.max_open_requests = int(max_open_requests)
        #: This node's id (known once it started).
        self.node_id: str | None = None
        #: Messages that left without trace context: it did not fit in their headers.
        self.context_dropped = 0
        # Requests in flight: id(MessageInfo) -> (the MessageInfo, its span). The
        # node passes the same MessageInfo to on_message_out and on_request_done.
        self._requests: dict[int, tuple[MessageInfo, Span]] = {}
        self._ratelog = RateLimitedLog(log)

    # ------------------------------------------------------------------ the node

    def on_start(self, node: Node) -> None:
        self.node_id = node.id

    def on_stop(self, node: Node) -> None:
        try:
            requests, self._requests = self._requests, {}
            for _, span in requests.values():  # normally none: each ended with its outcome
                self._end_request(span, "stopped")
        except Exception:
            self._failed("on_stop")

    # ------------------------------------------------------------------ messages

    def on_message_out(self, msg: MessageInfo) -> Mapping[str, str] | None:
        try:
            if not self._traced(msg.name):
                return None
            if msg.kind == "reply":
                return self._reply_headers(msg)
            if msg.kind == "request":
                span = self.tracer.start_span(
                    f"request {msg.name}",
                    context=self._parent_out(msg.headers),
                    kind=SpanKind.CLIENT,
                    attributes=self._attributes(msg, "request"),
                )
                self._remember(msg, span)
                return self._inject(span, msg.headers)
            if msg.kind == "event":
                operation = "emit" if msg.peer is None else "send"
                span = self.tracer.start_span(
                    f"{operation} {msg.name}",
                    context=self._parent_out(msg.headers),
                    kind=SpanKind.PRODUCER,
                    attributes=self._attributes(msg, operation),
                )
                try:
                    return self._inject(span, msg.headers)
                finally:
                    span.end()
        except Exception:
            self._failed("on_message_out")
        return None

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        try:
            entry = self._requests.pop(id(msg), None)
            if entry is not None:
                self._end_request(entry[1], outcome)
        except Exception:
            self._failed("on_request_done")

    def on_handle(self, msg: MessageInfo) -> Finish | None:
        try:
            if msg.kind not in ("event", "request") or not self._traced(msg.name):
                return None
            parent = self._extract(msg.headers)
            request = msg.kind == "request"
            span = self.tracer.start_span(
                f"handle {msg.name}",
                context=parent,
                kind=SpanKind.SERVER if request else SpanKind.CONSUMER,
                attributes=self._attributes(msg, "handle"),
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            if request and self.reply_context:
                _SERVING.set((self, msg.name, msg.peer, span))
        except Exception:
            self._failed("on_handle")
            return None

        def finish(seconds: float, error: BaseException | None) -> None:
            try:
                otel_context.detach(token)
                if error is not None:
                    span.record_exception(error)
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
                span.end()
            except Exception:
                self._failed("on_handle's finish")

        return finish

    def on_relay(self, msg: MessageInfo, to: str) -> None:
        if not self.relays:
            return
        try:
            self._point_span("relay", msg, {"pydevts.relay.to": to})
        except Exception:
            self._failed("on_relay")

    def on_drop(self, msg: MessageInfo, reason: str) -> None:
        try:
            span = self._point_span("drop", msg, {"pydevts.drop.reason": reason}, end=False)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, reason[:200]))
                span.end()
        except Exception:
            self._failed("on_drop")

    # ------------------------------------------------------------------ helpers

    def _traced(self, name: str) -> bool:
        return self.system or not name.startswith(SYSTEM_PREFIX)

    def _attributes(self, msg: MessageInfo, operation: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "pydevts.message.kind": msg.kind,
            "messaging.system": "pydevts",
            "messaging.operation.name": operation,
            "messaging.message.envelope.size": msg.size,
        }
        if msg.name:  # a relayed reply has none
            attributes["pydevts.event"] = attributes["messaging.destination.name"] = msg.name
        if msg.kind == "request":
            attributes["rpc.system"] = "pydevts"
            attributes["rpc.method"] = msg.name
        if operation in ("emit", "send", "request"):
            attributes["messaging.operation.type"] = "send"
        elif operation == "handle":
            attributes["messaging.operation.type"] = "process"
        if self.node_id is not None:
            attributes["pydevts.node"] = self.node_id
        if msg.peer is not None:
            attributes["pydevts.peer"] = msg.peer
        return attributes

    def _extract(self, headers: Mapping[str, str]) -> Context:
        """The context ``headers`` carry (an empty one if none: the span is a root)."""
        if not headers:
            return _EMPTY_CONTEXT
        return self.propagator.extract(headers, context=_EMPTY_CONTEXT)

    def _parent_out(self, headers: Mapping[str, str]) -> Context:
        """The parent of an outgoing message's span: the current span, else the caller's headers'."""
        current = otel_context.get_current()
        if (
            headers
            and _TRACEPARENT in headers
            and not trace.get_current_span(current).get_span_context().is_valid
        ):
            return self.propagator.extract(headers, context=current)
        return current

    def _inject(self, span: Span, existing: Mapping[str, str]) -> dict[str, str] | None:
        """The headers carrying ``span``'s context that fit beside ``existing`` (None: none fit)."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        headers = dict(existing)
        size = 1 + sum(_entry_size(k, v) for k, v in headers.items())
        added: dict[str, str] = {}
        for key in sorted(carrier, key=lambda k: k != _TRACEPARENT):  # traceparent first
            value = carrier[key]
            if not isinstance(value, str) or not _KEY.match(key) or len(value.encode()) > MAX_VALUE:
                continue
            old = headers.get(key)
            new_size = size + _entry_size(key, value) - (0 if old is None else _entry_size(key, old))
            if new_size > MAX_BLOCK or len(headers) + (old is None) > MAX_HEADERS:
                continue
            headers[key], size, added[key] = value, new_size, value
        if carrier and not added:
            self.context_dropped += 1
            self._ratelog.log(
                logging.WARNING, "otel.no_room", "no room in the headers for trace context; sent untraced"
            )
            return None
        return added or None

    def _reply_headers(self, msg: MessageInfo) -> dict[str, str] | None:
        serving = _SERVING.get()
        if serving is None:
            return None
        plugin, name, peer, span = serving
        if plugin is not self or name != msg.name or peer != msg.peer:
            return None
        _SERVING.set(None)
        return self._inject(span, msg.headers)

    def _remember(self, msg: MessageInfo, span: Span) -> None:
        requests = self._requests
        while len(requests) >= self.max_open_requests:
            _, oldest = requests.pop(next(iter(requests)))
            self._end_request(oldest, "untracked")
        requests[id(msg)] = (msg, span)  # holding msg keeps its id from being reused meanwhile

    @staticmethod
    def _end_request(span: Span, outcome: str) -> None:
        span.set_attribute("pydevts.outcome", outcome)
        if outcome != "ok":
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    def _point_span(
        self, operation: str, msg: MessageInfo, extra: Mapping[str, str], *, end: bool = True
    ) -> Span | None:
        """A span of no duration for ``msg`` in the trace its headers carry; none if they carry none."""
        if not msg.headers or not self._traced(msg.name):
            return None
        parent = self._extract(msg.headers)
        if not trace.get_current_span(parent).get_span_context().is_valid:
            return None
        attributes = self._attributes(msg, operation)
        attributes.update(extra)
        span = self.tracer.start_span(
            f"{operation} {msg.name or msg.kind}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        if end:
            span.end()
        return span

    def _failed(self, hook: str) -> None:
        self._ratelog.log(logging.ERROR, f"otel.{hook}", "pydevts-otel failed in %s", hook, exc_info=True)
