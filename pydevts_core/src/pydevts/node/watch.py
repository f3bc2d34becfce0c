"""What a node shows its plugins and traces of the messages it sends and passes on (internal).

:class:`Watching` is the part of :class:`~pydevts.node.context.NodeContext`
that builds outgoing event frames (letting plugins add headers, recording
traced ones), reports a router's relays and drops, and lists the open links.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..headers import EMPTY, Headers
from ..observe.hooks import MessageInfo, Observers
from ..observe.tracing import TRACE_HEADER, TraceLog
from ..wire.linkinfo import LinkInfo, link_info
from ..wire.messages import HEADED, KIND_NAMES, decode_message_or_none, encode_event

if TYPE_CHECKING:
    from ..protocols import Serializer
    from ..wire.link import Link

__all__ = ["Watching"]


class Watching:
    observers: Observers
    traces: TraceLog
    serializer: Serializer
    open_links: set[Link]

    def event_frame(self, name: str, payload: Any, headers: Headers | None, dest: str | None) -> bytes:
        """The EVENT frame for ``name`` to ``dest`` (``None``: everyone), shown to watching plugins."""
        body = self.serializer.dumps(payload)
        obs = self.observers
        if obs.out:
            info = MessageInfo("event", name, dest, len(body) + len(name) + 2, headers or EMPTY)
            headers = obs.message_out(info) or headers
        if headers and TRACE_HEADER in headers:
            self.traces.record(headers[TRACE_HEADER], "sent", name, dest or "*", "event")
        return encode_event(name, body, headers)

    def link_infos(self) -> list[LinkInfo]:
        return sorted((link_info(link) for link in self.open_links), key=lambda i: (i.peer, i.age))

    def relayed(self, origin: str, frame: bytes, to: str) -> None:
        """The router passed ``origin``'s core ``frame`` on to neighbour ``to`` (plugins, traces)."""
        self._watch(self.observers.relay, origin, frame, "relayed", to, to, f"from {origin}")

    def dropped(self, origin: str, frame: bytes, reason: str) -> None:
        """The router dropped ``origin``'s core ``frame`` (plugins, traces)."""
        self._watch(self.observers.drop, origin, frame, "dropped", reason, origin, reason)

    def _watch(
        self, hooks: tuple[Any, ...], origin: str, frame: bytes, what: str, arg: str, peer: str, detail: str
    ) -> None:
        """Show a router's relay or drop to ``hooks`` (``hook(info, arg)``) and record it if traced."""
        if not (hooks or frame[0] & HEADED):  # nobody watches, and no headers: nothing to trace
            return
        msg = decode_message_or_none(frame)
        if msg is None:
            return
        if hooks:
            info = MessageInfo(KIND_NAMES[msg.kind], msg.name, origin, len(frame), msg.headers)
            self.observers.call(hooks, info, arg)
        if TRACE_HEADER in msg.headers:
            self.traces.record(msg.headers[TRACE_HEADER], what, msg.name, peer, detail)
