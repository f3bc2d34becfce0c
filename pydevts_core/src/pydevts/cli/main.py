"""``pydevts`` — run a node, list members, emit an event, list plugins, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence

import anyio

from ..client import NodeClient
from ..errors import ConfigurationError, PydevtsError
from ..members import MemberEvent
from ..plugins import Registry
from ..protocols import Address
from .options import add_node_options, add_transport_options, node_from_args, setup_logging, transport_options

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
    members = sub.add_parser("members", help="list the members as the node at --join sees them")
    _client_options(members)
    members.add_argument("--json", action="store_true", help="print a JSON list")
    emit = sub.add_parser("emit", help="send one event into the cluster through the node at --join")
    emit.add_argument("name", help="event name")
    emit.add_argument("payload", nargs="?", default="null", help="JSON payload (default: null)")
    _client_options(emit)
    demo = sub.add_parser("demo", help="start a 3-node cluster on loopback and show an event exchange")
    demo.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"], help="event loop")
    demo.add_argument("--transport", default="tcp", help="transport plugin (default tcp; e.g. quic)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "node":
            setup_logging(args.log_level)
            return anyio.run(_run_node, args, backend=args.backend)
        if args.command == "plugins":
            return _plugins(args.json)
        if args.command == "members":
            return anyio.run(_members, args)
        if args.command == "emit":
            return anyio.run(_emit, args)
        if args.command == "demo":
            from .demo import run_demo

            return anyio.run(run_demo, args.backend, args.transport, backend=args.backend)
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


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--join", required=True, metavar="HOST:PORT", help="a node of the cluster")
    parser.add_argument("--cluster", default="default", help="cluster name (default 'default')")
    add_transport_options(parser)
    parser.add_argument("--serializer", default="msgpack", help="serializer plugin (default msgpack)")
    parser.add_argument("--trusted-cluster", action="store_true", help="needed with --serializer pickle")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")


def _client(args: argparse.Namespace) -> NodeClient:
    try:
        address = Address.parse(args.join)
    except ValueError as exc:
        raise ConfigurationError(f"--join: {exc}") from None
    return NodeClient(
        address,
        cluster=args.cluster,
        transport=args.transport,
        transport_options=transport_options(args),
        serializer=args.serializer,
        serializer_options={"trusted": True} if args.trusted_cluster else None,
        timeout=args.timeout,
    )


async def _members(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        members = await client.members()
    if args.json:
        print(json.dumps([m.to_dict() for m in members], indent=2))
        return 0
    routed = any(m.distance is not None for m in members)  # a multi-hop router says how to reach each
    rows = [("ID", "ADDRESS", "STATE", *(("VIA", "HOPS") if routed else ()), "TAGS")]
    for m in members:
        route = (m.next_hop or "-", "-" if m.distance is None else str(m.distance)) if routed else ()
        rows.append((m.id, m.address, m.state.value, *route, ",".join(f"{k}={v}" for k, v in m.tags.items())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _emit(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise ConfigurationError(f"payload is not JSON: {exc}") from None
    async with _client(args) as client:
        sent_to = await client.emit(args.name, payload)
    print(f"event {args.name!r} sent to {len(sent_to)} nodes: {', '.join(sent_to)}")
    return 0


def _plugins(as_json: bool) -> int:
    registry = Registry()
    registry.check()  # import each implementation, so that one missing a dependency shows as broken
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
