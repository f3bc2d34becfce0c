"""System requests every node answers (``pydevts members``, ``emit``, ``keys`` use them).

``keyring`` is the member-to-member half of ``keys`` (see :mod:`pydevts.node.keys`);
``merged`` is how a member that merged two islands tells the other side the
members it lists as down (see :mod:`pydevts.cluster.views`). ``stats`` is this node's
snapshot for ``pydevts top`` and ``pydevts members --graph``; with
``{"all": true}`` (clients of this node only) every live member's (see
:mod:`pydevts.node.inspect`).

Their names start with ``pydevts.``, which no application handler may take
and no peer may send as an event. ``members`` and ``stats`` are read-only and
open to any link; ``emit`` and ``keys`` act for the client that asked and are refused to
anyone but a client connected to this node (a member cannot make another
member emit or change its keyring). A refusal is a ``PermissionError``,
which the dispatcher answers as an error reply and counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cluster.views import import_rows, member_rows, parse_rows
from ..errors import ConfigurationError, LocalProtocolError
from ..headers import checked_headers
from .handlers import SYSTEM_PREFIX, check_event_name
from .inspect import StatsService
from .keys import apply_everywhere, apply_local
from .trace_query import answer_trace

if TYPE_CHECKING:
    from .core import Node
    from .dispatch import Handler

__all__ = ["system_handlers"]


def system_handlers(node: Node) -> dict[str, Handler]:
    """The system request handlers of ``node``, by name."""

    def client_only(sender: str, what: str) -> None:
        if sender != node.id and sender not in node._require_running().clients:
            raise PermissionError(f"{SYSTEM_PREFIX}{what} is for clients of this node, not for {sender!r}")

    inspector = StatsService(node)

    async def stats(sender: str, payload: Any) -> dict[str, Any]:
        # Anyone's local snapshot; the fan-out ({"all": true}) only for this node's clients.
        ctx = node._require_running()
        return await inspector.answer(sender, payload, from_client=sender == node.id or sender in ctx.clients)

    async def members(sender: str, payload: Any) -> list[dict[str, object]]:
        # Down members also say for how long (seconds), so a node that records them reaps them in time.
        if not node._running:
            return []
        return member_rows(node._ctx.members)

    async def merged(sender: str, payload: Any) -> dict[str, int]:
        # From a member that has just merged its island with ours: the members it lists as down.
        ctx = node._require_running()
        if sender == node.id or sender in ctx.clients:
            raise PermissionError(f"{SYSTEM_PREFIX}merged is for members")
        try:
            rows = parse_rows(payload)
        except ValueError as exc:
            raise PermissionError(f"bad member list: {exc}") from None
        return {"recorded": len(import_rows(ctx.members, rows, node.reap_after))}

    async def emit(sender: str, payload: Any) -> dict[str, Any]:
        client_only(sender, "emit")
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            raise PermissionError("expected {'name': str, 'payload': ...}")
        try:  # never re-enters system handling: pydevts.* names are refused here
            check_event_name(payload["name"])
            headers = payload.get("headers")
            if headers is not None and not isinstance(headers, dict):
                raise LocalProtocolError(f"headers must be a map of strings, not {type(headers).__name__}")
            payload["headers"] = checked_headers(headers)
        except LocalProtocolError as exc:
            raise PermissionError(str(exc)) from None
        return {"sent_to": await node._require_running().emit_here_and_to_all(payload)}

    async def trace(sender: str, payload: Any) -> dict[str, Any]:
        # This node's records of one traced message; every member's only for this node's clients.
        return await answer_trace(node, sender, payload)

    async def keys(sender: str, payload: Any) -> dict[str, Any]:
        client_only(sender, "keys")
        try:
            return await apply_everywhere(node, payload)
        except ValueError as exc:  # a malformed request: refused, no traceback in the node's log
            raise PermissionError(str(exc)) from None

    async def keyring(sender: str, payload: Any) -> dict[str, Any]:
        # From another member only (a client asks through ``keys``): the fan-out of ``keys``.
        if sender == node.id or sender in node._require_running().clients:
            raise PermissionError(f"{SYSTEM_PREFIX}keyring is for members; clients use {SYSTEM_PREFIX}keys")
        try:
            return apply_local(node.keyring, payload)
        except (ValueError, ConfigurationError) as exc:
            raise PermissionError(str(exc)) from None

    return {
        f"{SYSTEM_PREFIX}members": members,
        f"{SYSTEM_PREFIX}emit": emit,
        f"{SYSTEM_PREFIX}keys": keys,
        f"{SYSTEM_PREFIX}keyring": keyring,
        f"{SYSTEM_PREFIX}merged": merged,
        f"{SYSTEM_PREFIX}stats": stats,
        f"{SYSTEM_PREFIX}trace": trace,
    }
