"""Watching a node from a plugin: the :class:`Plugin` base class and what its hooks see.

A connection plugin subclasses :class:`Plugin` and overrides only the hooks
it needs; a hook it does not override costs nothing (the node never calls
it, and a node with no plugin watching messages builds no
:class:`MessageInfo` at all). There are three families:

*Links* — ``on_open``, ``on_frame_in``, ``on_frame_out``, ``on_close``: the
raw frames of one link (see :class:`~pydevts.protocols.ConnectionPlugin`),
for plugins that transform or refuse them.

*The node* — ``on_start(node)`` as the node starts to serve (a plugin may
start its own server thread there — one that cannot, e.g. its port is
taken, raises and the node's start fails — and later find the node's
counters in ``node.statistics()`` and ``node.links()``), ``on_stop(node)``
as it stops (or when a start fails after ``on_start``),
``on_member(event)`` for each lifecycle event (joined, left, failed, ...).

*Messages* — what the node sends, receives, handles, passes on or drops,
named (``kind``, ``name``, ``peer``, ``size``, ``headers``):

- ``on_message_out(msg)`` before an event, request or reply leaves (a
  broadcast once, ``peer`` ``None``); it may return headers to add (trace
  context), which the message then carries;
- ``on_message_in(msg)`` when one arrives for this node;
- ``on_handle(msg)`` just before a handler runs, in the handler's own task;
  it may return a callable ``finish(seconds, error)`` called when the handler
  returns or raises (``error`` is ``None`` on success);
- ``on_request_done(msg, seconds, outcome)`` when a request this node sent
  ends: ``outcome`` is one of :data:`OUTCOMES`; ``msg`` is the very object
  ``on_message_out`` was given for that request (a plugin may key on it);
- ``on_relay(msg, to)`` when a router passes another node's message on
  (the hop router's relays);
- ``on_drop(msg, reason)`` when a message is dropped, and why.

Hooks run synchronously on the node's paths: keep them cheap and never
block. A hook that raises is logged (rate-limited) and the message goes on
as if the plugin had not been there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..headers import EMPTY, Headers
from ..ratelog import RateLimitedLog

if TYPE_CHECKING:
    from ..members import MemberEvent
    from ..node.core import Node
    from ..protocols import ConnectionInfo, ConnectionPlugin

__all__ = ["OUTCOMES", "Finish", "MessageInfo", "Observers", "Plugin"]

log = logging.getLogger("pydevts.plugins")
_RATELOG = RateLimitedLog(log)

#: How a request ends, as ``on_request_done`` reports it.
OUTCOMES = ("ok", "error", "no_handler", "timeout", "unreachable")
Finish = Callable[[float, "BaseException | None"], None]


class MessageInfo:
    """One event, request or reply, as a plugin sees it (no payload: only its size). Read-only."""

    __slots__ = ("headers", "kind", "name", "peer", "size")

    def __init__(self, kind: str, name: str, peer: str | None, size: int, headers: Headers = EMPTY) -> None:
        #: ``"event"``, ``"request"``, ``"reply"`` or ``"error"``
        self.kind = kind
        #: The event or request name. A reply or error: the name of the request it answers where
        #: this node knows it (its own requests and replies); ``""`` in ``on_relay``/``on_drop``,
        #: since reply frames carry no name. ERROR frames carry no headers.
        self.name = name
        #: out: the destination (``None`` for a broadcast); in, relay: the origin
        self.peer = peer
        #: bytes of the message frame (name, headers and payload)
        self.size = size
        self.headers = headers

    def __repr__(self) -> str:
        return (
            f"MessageInfo({self.kind!r}, {self.name!r}, {self.peer!r}, {self.size}, {dict(self.headers)!r})"
        )


class Plugin:
    """Base class of connection plugins: override the hooks you need (see the module doc)."""

    #: The name the plugin is registered under (logs, ``Node.plugin(name)``).
    name: str = "plugin"

    # -- links (the ConnectionPlugin protocol)
    def on_open(self, info: ConnectionInfo) -> None:
        """A link is up; raise to refuse it (the message goes to the peer)."""

    def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        """A frame about to leave on a link: return it (or a replacement), or ``None`` to drop it."""
        return frame

    def on_frame_in(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        """A frame that arrived on a link: return it (or a replacement), or ``None`` to drop it."""
        return frame

    def on_close(self, info: ConnectionInfo, reason: str | None) -> None:
        """A link closed (``reason`` ``None``: this side closed it cleanly)."""

    # -- the node
    def on_start(self, node: Node) -> None:
        """The node is starting: its id and address are known, it is about to serve. Raising here
        fails the node's start (``ConfigurationError`` naming the plugin and the reason)."""

    def on_stop(self, node: Node) -> None:
        """The node is stopping: release what ``on_start`` took (threads, ports)."""

    def on_member(self, event: MemberEvent) -> None:
        """A lifecycle event: ``joined``, ``left``, ``failed``, ``updated``, ``reaped``, ..."""

    # -- messages
    def on_message_out(self, msg: MessageInfo) -> Mapping[str, str] | None:
        """A message is about to leave this node; return headers to add to it, or ``None``."""
        return None

    def on_message_in(self, msg: MessageInfo) -> None:
        """A message for this node arrived."""

    def on_handle(self, msg: MessageInfo) -> Finish | None:
        """A handler is about to run; return ``finish(seconds, error)`` to hear how it went."""
        return None

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        """A request this node sent ended (``outcome`` in :data:`OUTCOMES`)."""

    def on_relay(self, msg: MessageInfo, to: str) -> None:
        """The router passed another node's message on to neighbour ``to``."""

    def on_drop(self, msg: MessageInfo, reason: str) -> None:
        """A message was dropped, for ``reason``."""


_LINK_HOOKS = ("on_open", "on_frame_out", "on_frame_in", "on_close")


def overrides(plugin: object, hook: str) -> bool:
    """Does ``plugin`` implement ``hook`` itself? (One not built on :class:`Plugin`: its link hooks.)"""
    if not isinstance(plugin, Plugin):
        return hook in _LINK_HOOKS
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


def _name(plugin: object) -> str:
    return str(getattr(plugin, "name", type(plugin).__name__))


class Observers:
    """A node's plugins, sorted by the hooks each overrides. Each hook's attribute is a tuple of
    bound methods (looked up once), empty when no plugin implements it."""

    def __init__(self, plugins: Iterable[Any] = ()) -> None:
        plugins = list(plugins)

        def having(hook: str) -> tuple[Any, ...]:
            return tuple(getattr(p, hook) for p in plugins if overrides(p, hook))

        self.plugins = tuple(plugins)
        self.links: tuple[ConnectionPlugin, ...] = tuple(
            p for p in plugins if any(overrides(p, h) for h in _LINK_HOOKS)
        )
        self.start = having("on_start")
        self.stop = having("on_stop")
        self.member = having("on_member")
        self.out = having("on_message_out")
        self.inbound = having("on_message_in")
        self.handle = having("on_handle")
        self.request_done = having("on_request_done")
        self.relay = having("on_relay")
        self.drop = having("on_drop")
        #: Someone watches messages: the node builds a MessageInfo for each.
        watching = (self.out, self.inbound, self.handle, self.request_done, self.relay, self.drop)
        self.messages = any(watching)

    @staticmethod
    def failed(hook: Any) -> None:
        owner = getattr(hook, "__self__", hook)
        name, where = _name(owner), getattr(hook, "__name__", "a hook")
        key = f"hook:{name}:{where}"
        _RATELOG.log(logging.ERROR, key, "plugin %r failed in %s", name, where, exc_info=True)

    def call(self, hooks: tuple[Any, ...], *args: Any) -> None:
        """Call each of ``hooks`` (bound methods) with ``args``; a failure is logged and costs only itself."""
        for hook in hooks:
            try:
                hook(*args)
            except Exception:
                self.failed(hook)

    def message_out(self, msg: MessageInfo) -> dict[str, str] | None:
        """Run ``on_message_out``; return the headers to send (``None``: as they were)."""
        added: dict[str, str] | None = None
        for hook in self.out:
            try:
                extra = hook(msg)
            except Exception:
                self.failed(hook)
                continue
            if extra:
                if added is None:
                    added = dict(msg.headers)
                added.update(extra)
        return added

    def handle_start(self, msg: MessageInfo) -> list[Finish]:
        finishers = []
        for hook in self.handle:
            try:
                finish = hook(msg)
            except Exception:
                self.failed(hook)
                continue
            if finish is not None:
                finishers.append(finish)
        return finishers

    def handle_end(self, finishers: list[Finish], seconds: float, error: BaseException | None) -> None:
        for finish in reversed(finishers):  # innermost first, as context managers unwind
            try:
                finish(seconds, error)
            except Exception:
                self.failed(finish)


#: Observers of a node with no plugins (shared; every tuple empty).
NONE = Observers()
