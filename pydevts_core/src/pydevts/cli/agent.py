"""A node driven by JSON lines: used by ``pydevts demo`` and by end-to-end tests.

Run ``python -m pydevts.cli.agent CLUSTER_PORT [node options] [--handle NAME]``.

It writes one JSON object per line on stdout::

    {"ev": "started", "id": ..., "address": ..., "new_cluster": true}
    {"ev": "member", "kind": "joined"|"left"|"failed"|"updated"|"reaped", "id": ..., "address": ...}
    {"ev": "received", "name": ..., "sender": ..., "payload": ..., "request": false}
    {"ev": "result", "tag": ..., "ok": true, "value": ...}
    {"ev": "result", "tag": ..., "ok": false, "error": "UnknownNodeError", "message": ...}
    {"ev": "members", "tag": ..., "members": [{"id", "address", "tags", "state"}, ...]}
    {"ev": "stopped"}

(every line also has ``"t"``: the wall-clock time it was written) and reads
commands, one JSON object per line, on stdin::

    {"op": "emit", "name": ..., "payload": ..., "tag": ...}
    {"op": "send", "to": ..., "name": ..., "payload": ..., "tag": ...}
    {"op": "request", "to": ..., "name": ..., "payload": ..., "timeout": 5, "tag": ...}
    {"op": "members", "tag": ...}
    {"op": "tags", "tags": {...}, "tag": ...}        (replace this node's tags)
    {"op": "stop"}                 (or end of input): leave gracefully and exit

Every handled event (``--handle``, default ``greet`` and ``ping``) is reported;
a request is answered with ``{"echo": payload, "by": node_id}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import anyio

from ..errors import PydevtsError
from ..members import MemberEvent
from ..node.core import Node
from .options import add_node_options, node_from_args, setup_logging

__all__ = ["main"]


def _out(obj: dict[str, Any]) -> None:
    obj.setdefault("t", time.time())  # wall-clock time of the event, for measurements across processes
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> int:
    node = node_from_args(args)

    def make_handler(name: str) -> Any:
        async def handle(sender: str, payload: Any) -> Any:
            _out({"ev": "received", "name": name, "sender": sender, "payload": payload})
            return {"echo": payload, "by": node.id}

        return handle

    for name in args.handle or ["greet", "ping"]:
        node.add_handler(name, make_handler(name))

    @node.on_lifecycle
    async def lifecycle(event: MemberEvent) -> None:
        if event.kind in ("joined", "left", "failed", "updated", "reaped"):
            m = event.member
            _out({"ev": "member", "kind": event.kind, "id": m.id, "address": m.address, "tags": dict(m.tags)})

    try:
        async with node:
            _out(
                {"ev": "started", "id": node.id, "address": node.address, "new_cluster": node.started_cluster}
            )
            stdin = anyio.wrap_file(sys.stdin)
            async with anyio.create_task_group() as tg:
                async for line in stdin:
                    if not line.strip():
                        continue
                    try:
                        cmd = json.loads(line)
                    except ValueError:
                        _out({"ev": "error", "message": f"not JSON: {line.strip()!r}"})
                        continue
                    if cmd.get("op") == "stop":
                        break
                    tg.start_soon(_command, node, cmd)
                tg.cancel_scope.cancel()
    except PydevtsError as exc:
        _out({"ev": "error", "error": type(exc).__name__, "message": str(exc)})
        return 1
    _out({"ev": "stopped"})
    return 0


async def _command(node: Node, cmd: dict[str, Any]) -> None:
    op, tag = cmd.get("op"), cmd.get("tag")
    try:
        if op == "emit":
            await node.emit(cmd["name"], cmd.get("payload"))
            value: Any = None
        elif op == "send":
            await node.send(cmd["to"], cmd["name"], cmd.get("payload"))
            value = None
        elif op == "request":
            value = await node.request(cmd["to"], cmd["name"], cmd.get("payload"), timeout=cmd.get("timeout"))
        elif op == "tags":
            node.set_tags(**cmd.get("tags", {}))
            value = None
        elif op == "members":
            _out({"ev": "members", "tag": tag, "members": [m.to_dict() for m in node.members]})
            return
        else:
            _out({"ev": "result", "tag": tag, "ok": False, "error": "UnknownCommand", "message": str(op)})
            return
    except PydevtsError as exc:
        _out(
            {
                "ev": "result",
                "tag": tag,
                "op": op,
                "ok": False,
                "error": type(exc).__name__,
                "message": str(exc),
            }
        )
        return
    _out({"ev": "result", "tag": tag, "op": op, "ok": True, "value": value})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pydevts.cli.agent", description=__doc__.splitlines()[0])
    add_node_options(parser)
    parser.add_argument("--handle", action="append", default=[], help="event name to handle (repeatable)")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    code = anyio.run(_serve, args, backend=args.backend)
    # A worker thread may still be blocked reading stdin: do not wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
