"""Node options shared by ``pydevts node`` and the scripted agent."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..framing import DEFAULT_MAX_FRAME_SIZE
from ..node import Node

__all__ = [
    "add_node_options",
    "add_transport_options",
    "node_from_args",
    "setup_logging",
    "transport_options",
]


def add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cluster_port", type=int, help="port to join through (or to start a new cluster on)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="own port when joining (default: any free port)")
    parser.add_argument("--cluster-host", default=None, help="host of the cluster port (default: --host)")
    parser.add_argument(
        "--advertise", default=None, help="HOST or HOST:PORT other nodes use to reach this one"
    )
    parser.add_argument("--cluster", default="default", help="cluster name (default 'default')")
    parser.add_argument("--id", dest="node_id", default=None, help="node id (default: random)")
    add_transport_options(parser)
    parser.add_argument("--router", default="peer", help="router plugin (default peer)")
    parser.add_argument(
        "--router-option",
        action="append",
        default=[],
        metavar="K=V",
        help="a setting of the router, e.g. dead_interval=1.5 for hop (repeatable)",
    )
    parser.add_argument("--serializer", default="msgpack", help="serializer plugin (default msgpack)")
    parser.add_argument(
        "--plugin", action="append", default=[], help="enable a connection plugin (repeatable)"
    )
    parser.add_argument(
        "--tag", action="append", default=[], metavar="K=V", help="a tag of this node (repeatable)"
    )
    parser.add_argument("--join-only", action="store_true", help="fail instead of starting a new cluster")
    parser.add_argument(
        "--trusted-cluster",
        action="store_true",
        help="declare every node and network path trusted (required by the pickle serializer)",
    )
    parser.add_argument("--max-frame-size", type=int, default=DEFAULT_MAX_FRAME_SIZE, help="bytes")
    parser.add_argument(
        "--reap-after",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="drop members that left or failed this long ago from the view (default 86400)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def add_transport_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", default="tcp", help="transport plugin (default tcp)")
    parser.add_argument(
        "--transport-option",
        action="append",
        default=[],
        metavar="K=V",
        help="a setting of the transport, e.g. cafile=ca.pem for quic (repeatable)",
    )


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"pydevts: {option} expects K=V, got {item!r}")
        pairs[key] = value
    return pairs


def parse_tags(items: list[str]) -> dict[str, str]:
    return parse_pairs(items, "--tag")


def transport_options(args: argparse.Namespace) -> dict[str, str]:
    return parse_pairs(args.transport_option, "--transport-option")


def node_from_args(args: argparse.Namespace, cls: type[Node] = Node, **extra: Any) -> Node:
    return cls(
        args.cluster_port,
        host=args.host,
        port=args.port,
        cluster_host=args.cluster_host,
        advertise=args.advertise,
        cluster=args.cluster,
        node_id=args.node_id,
        tags=parse_tags(args.tag),
        transport=args.transport,
        transport_options=transport_options(args),
        router=args.router,
        router_options=parse_pairs(args.router_option, "--router-option"),
        serializer=args.serializer,
        connection_plugins=args.plugin,
        serializer_options={"trusted": True} if args.trusted_cluster else None,
        join_only=args.join_only,
        max_frame_size=args.max_frame_size,
        reap_after=args.reap_after,
        **extra,
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
