"""What a running node sends and reports: emit, send, request; counters, plugins, links.

:class:`Messaging` is part of :class:`pydevts.Node` (its own module only to
keep each module small); see :class:`~pydevts.Node` for the whole API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..headers import Headers
from ..wire.linkinfo import LinkInfo
from ..wire.messages import encode_event
from .handling import Reply

if TYPE_CHECKING:
    from .context import NodeContext

__all__ = ["Messaging"]


class Messaging:
    request_timeout: float
    _plugins: dict[str, object]

    def _require_running(self) -> NodeContext:
        raise NotImplementedError  # Node._require_running

    def statistics(self) -> dict[str, int]:
        """Counters: events received/unhandled, handler errors, requests served, bad frames;
        plus the router's own counters (prefixed ``router.``) when it keeps any, and
        refusals and cuts by the limits (``limits.``, see :class:`~pydevts.limits.Limits`)."""
        ctx = self._require_running()
        counters = dict(vars(ctx.dispatcher.stats))
        counters.update({f"router.{k}": v for k, v in ctx.router.statistics().items()})
        if ctx.keyring is not None:
            counters["keyring.datagrams_dropped"] = ctx.datagrams_dropped()
        counters.update(ctx.limit_statistics())  # limits.*: refusals and cuts
        counters.update(ctx.link_statistics())  # links.*: resent, lost (pydevts.wire.session)
        return counters

    # ----------------------------------------------------------- messaging

    async def emit(self, name: str, payload: Any = None, *, headers: Headers | None = None) -> None:
        """Send event ``name`` to every other live member (not to this node).

        Members that join after the call do not get it; a member that fails
        while it is being sent may or may not. Waits only for queue space.
        ``headers`` travel with it (see :mod:`pydevts.headers` for their bounds).
        """
        ctx = self._require_running()
        if headers is None and not ctx.observers.out:  # the hot path: nothing to add or record
            await ctx.router.broadcast(encode_event(name, ctx.serializer.dumps(payload)))
        else:
            await ctx.router.broadcast(ctx.event_frame(name, payload, headers, None))

    async def send(
        self, node_id: str, name: str, payload: Any = None, *, headers: Headers | None = None
    ) -> None:
        """Send event ``name`` to one member; raise UnknownNodeError if it is not one."""
        ctx = self._require_running()
        if headers is None and not ctx.observers.out:  # the hot path: nothing to add or record
            await ctx.send_frame(node_id, encode_event(name, ctx.serializer.dumps(payload)))
        else:
            await ctx.send_frame(node_id, ctx.event_frame(name, payload, headers, node_id))

    async def request(
        self,
        node_id: str,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> Any:
        """Send a request and return the reply of the remote handler.

        Raises RequestTimeoutError (no reply within ``timeout``, default
        ``request_timeout``), UnknownNodeError (no such member, or it left
        before replying), NoHandlerError, or RemoteHandlerError.
        """
        return (await self.request_reply(node_id, name, payload, timeout=timeout, headers=headers)).value

    async def request_reply(
        self,
        node_id: str,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        headers: Headers | None = None,
    ) -> Reply:
        """:meth:`request`, returning the reply's value *and headers* (a :class:`~pydevts.Reply`)."""
        ctx = self._require_running()
        deadline = self.request_timeout if timeout is None else timeout
        return await ctx.dispatcher.request(node_id, name, payload, deadline, headers)

    # ----------------------------------------------------------- plugins and links

    def plugin(self, name: str) -> Any:
        """The plugin object this node made for ``name`` (its transport, router, serializer
        or a connection plugin), e.g. ``node.plugin("prometheus")``; KeyError if none."""
        self._require_running()
        try:
            return self._plugins[name]
        except KeyError:
            raise KeyError(
                f"this node has no plugin named {name!r}; it has {sorted(self._plugins)}"
            ) from None

    def links(self) -> list[LinkInfo]:
        """The node's open links now: peer, direction, age, frames/bytes/batches each way, queue."""
        return self._require_running().link_infos()
