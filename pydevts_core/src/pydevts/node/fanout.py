"""Asking every live member at once (system requests that answer for the whole cluster)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..errors import PydevtsError

if TYPE_CHECKING:
    from .core import Node

__all__ = ["FANOUT_LIMIT", "FANOUT_TIMEOUT", "ask_members"]

FANOUT_TIMEOUT = 5.0  # seconds each member has to answer
FANOUT_LIMIT = 1024  # members asked at most (the rest are reported as not asked)


async def ask_members(
    node: Node, name: str, payload: Any, *, timeout: float = FANOUT_TIMEOUT, limit: int = FANOUT_LIMIT
) -> dict[str, Any]:
    """Send request ``name`` to every other live member in parallel; ``{id: reply or {"error": why}}``."""
    results: dict[str, Any] = {}
    others = sorted(m.id for m in node.members if m.alive and m.id != node.id)

    async def ask(member_id: str) -> None:
        try:
            results[member_id] = await node.request(member_id, name, payload, timeout=timeout)
        except PydevtsError as exc:
            results[member_id] = {"error": f"{type(exc).__name__}: {exc}"}

    async with anyio.create_task_group() as tg:
        for member_id in others[:limit]:
            tg.start_soon(ask, member_id)
    for member_id in others[limit:]:
        results[member_id] = {"error": f"not asked: over the limit of {limit} members"}
    return results
