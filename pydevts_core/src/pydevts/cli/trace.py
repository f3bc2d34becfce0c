"""``pydevts trace ID`` and ``pydevts emit --trace``: where one message went, node by node."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

import anyio

from ..node.client import NodeClient
from ..observe.tracing import TRACE_HEADER, new_trace_id
from .commands import ask, sent_to_text

__all__ = ["emit_traced", "path_text", "trace"]


def path_text(trace_id: str, result: dict[str, Any]) -> str:
    """The records of every member in time order; then who never saw the message, who did not answer."""
    nodes: dict[str, list[dict[str, Any]]] = result.get("nodes", {})
    records = sorted((r for rows in nodes.values() for r in rows), key=lambda r: float(r.get("time", 0)))
    seen_by = sum(1 for rows in nodes.values() if rows)
    lines = [f"trace {trace_id}: {len(records)} records from {seen_by} of {len(nodes)} nodes"]
    for r in records:
        when = datetime.datetime.fromtimestamp(float(r["time"])).strftime("%H:%M:%S.%f")
        what, peer, detail = r.get("what", "?"), r.get("peer", ""), r.get("detail", "")
        if what in ("sent", "relayed"):
            where = f" -> {peer}"
        else:
            where = f" from {peer}" if peer else ""
        extra = f"  ({detail})" if detail else ""
        lines.append(f"  {when}  {r.get('node', '?')}  {what:<8} {r.get('name', '')}{where}{extra}")
    never = sorted(node for node, rows in nodes.items() if not rows)
    if never:
        lines.append(f"never saw it: {', '.join(never)}")
    for node, why in sorted(result.get("missing", {}).items()):
        lines.append(f"did not answer: {node} ({why})")
    return "\n".join(lines)


def _show(args: argparse.Namespace, trace_id: str, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({"id": trace_id, **result}, indent=2))
    else:
        print(path_text(trace_id, result))


def trace(args: argparse.Namespace) -> int:
    result = anyio.run(ask, args, lambda client: client.trace(args.id))
    _show(args, args.id, result)
    return 0


def emit_traced(args: argparse.Namespace) -> int:
    """``pydevts emit NAME --trace``: emit with a trace id, wait ``--wait`` s, print where it went."""
    trace_id = new_trace_id() if args.trace is True else str(args.trace)

    async def go(client: NodeClient) -> tuple[list[str], dict[str, Any]]:
        sent_to = await client.emit(args.name, args.payload, headers={TRACE_HEADER: trace_id})
        await anyio.sleep(args.wait)  # the user's chosen wait: what arrived by then is recorded
        return sent_to, await client.trace(trace_id)

    sent_to, result = anyio.run(ask, args, go)
    if not args.json:
        print(sent_to_text(args.name, sent_to))
    _show(args, trace_id, result)
    return 0
