"""``pydevts`` — run a node, list plugins, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence

import anyio

from ..errors import PydevtsError
from ..members import MemberEvent
from ..plugins import Registry
from .options import add_node_options, node_from_args, setup_logging

__all__ = ["main"]

log = logging.getLogger("pydevts.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydevts", description="Python Distributed EVenT System")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a node: join the cluster at CLUSTER_PORT or start one there")
    add_node_options(node)
    node.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"], help="event loop")
    plugins = sub.add_parser("plugins", help="list installed transports, routers, serializers, plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    demo = sub.add_parser("demo", help="start a 3-node cluster on loopback and show an event exchange")
    demo.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"], help="event loop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "node":
            setup_logging(args.log_level)
            return anyio.run(_run_node, args, backend=args.backend)
        if args.command == "plugins":
            return _plugins(args.json)
        if args.command == "demo":
            from .demo import run_demo

            return anyio.run(run_demo, args.backend, backend=args.backend)
    except PydevtsError as exc:
        print(f"pydevts: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


async def _run_node(args: argparse.Namespace) -> int:
    node = node_from_args(args)

    @node.on_lifecycle
    async def report(event: MemberEvent) -> None:
        if event.kind == "started":
            alive = [m.id for m in node.members if m.alive]
            log.info("members: %s", ", ".join(alive))

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with node:
            log.info("node %s running at %s (Ctrl-C to leave)", node.id, node.address)
            async for _ in signals:
                log.info("leaving the cluster")
                break
    return 0


def _plugins(as_json: bool) -> int:
    registry = Registry()
    rows = [(p.kind, p.name, p.distribution, p.version) for p in registry.all()]
    if as_json:
        out = {
            "plugins": [dict(zip(("kind", "name", "distribution", "version"), r, strict=True)) for r in rows],
            "broken": [vars(b) for b in registry.broken],
        }
        print(json.dumps(out, indent=2))
        return 0
    header = ("KIND", "NAME", "DISTRIBUTION", "VERSION")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for broken in registry.broken:
        print(f"skipped (broken): {broken.name} from {broken.distribution}: {broken.reason}")
    return 0
