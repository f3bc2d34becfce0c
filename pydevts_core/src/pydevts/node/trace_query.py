"""The system request ``pydevts.trace``: a node's records of one traced message, or every member's.

A member (or a client) asking ``{"id": ID}`` gets this node's records of
``ID`` (see :mod:`pydevts.observe.tracing`). A *client* of this node asking
``{"id": ID, "all": true}`` gets every live member's, gathered by this node
(:func:`~pydevts.node.fanout.ask_members`), so that ``pydevts trace`` works
through one node on any router: ``{"nodes": {id: records}, "missing": {id: why}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fanout import ask_members

if TYPE_CHECKING:
    from .core import Node

__all__ = ["answer_trace"]

_NAME = "pydevts.trace"


def _trace_id(payload: Any) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        raise PermissionError("expected {'id': trace id, 'all': bool}")
    return str(payload["id"])[:64]


async def answer_trace(node: Node, sender: str, payload: Any) -> dict[str, Any]:
    trace_id = _trace_id(payload)
    ctx = node._require_running()
    mine = ctx.traces.rows(trace_id)
    if not payload.get("all"):
        return {"node": node.id, "records": mine}
    if sender != node.id and sender not in ctx.clients:
        raise PermissionError(f"{_NAME} for every member is for clients of this node, not for {sender!r}")
    # One fan-out at a time per node: clients asking in a loop cost the members one round each
    # in turn, not one per request in flight (a client may have 64 in flight).
    async with ctx.trace_fanout:
        answers = await ask_members(node, _NAME, {"id": trace_id})
    nodes: dict[str, list[Any]] = {node.id: ctx.traces.rows(trace_id)}
    missing: dict[str, str] = {}
    for member_id, answer in answers.items():
        if isinstance(answer, dict) and isinstance(answer.get("records"), list):
            nodes[member_id] = answer["records"]
        else:
            missing[member_id] = str(answer.get("error") if isinstance(answer, dict) else answer)
    return {"nodes": nodes, "missing": missing}
