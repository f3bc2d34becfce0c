"""``pydevts`` — run a node, watch events, list members, watch the cluster live, emit an event, list plugins,
run the demo."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence

import anyio

from ..errors import PydevtsError
from ..wire.keyring import generate_key
from . import commands
from .options import (
    HelpFormatter,
    add_keyring_option,
    add_log_level,
    add_node_options,
    add_transport_options,
    check_backend,
    cli_transport,
    join_address,
    json_value,
    positive_seconds,
    setup_logging,
    state_name,
    tag_filter,
)
from .watch import run_node, silence_stdout

__all__ = ["main"]

EPILOG = "Run `pydevts COMMAND --help` for a command's options."


def version() -> str:
    try:
        return importlib.metadata.version("pydevts-core")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pydevts", description="Python Distributed EVenT System", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"pydevts {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)

    node = command("node", "run a node: join the cluster at CLUSTER_PORT or start one there")
    add_node_options(node)
    node.add_argument(
        "--print-events",
        action="store_true",
        help="print each event this node receives, and each membership change, as one line on stdout",
    )
    _backend(node)

    watch = command(
        "watch",
        "join a running cluster as a member (listed by `members` until it leaves) and print every "
        "event it receives and every membership change, one line each on stdout, until Ctrl-C",
    )
    watch.add_argument(
        "--join",
        type=join_address,
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="a node of the cluster; more of them are seeds, tried in order (repeatable)",
    )
    add_node_options(watch, cluster_port=False)
    watch.set_defaults(log_level="WARNING", print_events=True, join_only=True)
    _backend(watch)

    members = command("members", "list the members as the node at --join sees them")
    _client_options(members)
    members.add_argument(
        "--tag",
        action="append",
        type=tag_filter,
        default=[],
        metavar="K=REGEX",
        help="only members with tag K whose whole value matches the regular expression REGEX "
        "(as `serf members -tag`; e.g. role=db, role='db|cache'); repeatable: all must match",
    )
    members.add_argument(
        "--state",
        action="append",
        type=state_name,
        default=[],
        help="only members in this state: alive, suspect, failed or left (repeatable: any of them)",
    )
    output = members.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list")
    output.add_argument(
        "--graph",
        action="store_true",
        help="print the links between the members as Graphviz DOT (each link once; nodes labelled with "
        "id and state), asking every live member through the node at --join; e.g. | dot -Tsvg",
    )

    top = command(
        "top",
        "a live view of the cluster through the node at --join: members and their states, per-link "
        "event rates, bytes and queues, counters, request latencies; redrawn every --interval, q quits",
    )
    _client_options(top)
    top.add_argument(
        "--interval",
        type=positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between samples (rates are over the last interval)",
    )
    top.add_argument(
        "--once",
        action="store_true",
        help="take two samples --interval apart, print one screen as plain text (no ANSI codes) and exit",
    )
    _backend(top)

    emit = command("emit", "send one event into the cluster through the node at --join")
    emit.add_argument("name", help="event name")
    emit.add_argument(
        "payload", nargs="?", type=json_value, default=None, help="JSON payload (default: null)"
    )
    emit.add_argument(
        "--trace",
        nargs="?",
        const=True,
        default=None,
        metavar="ID",
        help="trace the event (a new id, or ID): after --wait seconds, print where it went on every member",
    )
    emit.add_argument(
        "--wait", type=float, default=1.0, help="with --trace: seconds to let the event travel (default 1)"
    )
    emit.add_argument("--json", action="store_true", help="with --trace: print the records as JSON")
    _client_options(emit)

    trace = command(
        "trace",
        "print where a traced event (one sent with the header pydevts-trace: ID) went: every live "
        "member's records of it (sent, relayed, handled, failed, dropped and why), in time order",
    )
    trace.add_argument("id", help="the trace id")
    trace.add_argument("--json", action="store_true", help="print JSON")
    _client_options(trace)

    command("keygen", "print a new random cluster key (base64): one line of a keyring file")

    keys = command(
        "keys",
        "list or change the keyring of every live member, through the node at --join: install a new "
        "key everywhere, use it (make it primary) everywhere, then remove the old one",
    )
    keys.add_argument("op", choices=["list", "install", "use", "remove"], help="what to do")
    keys.add_argument("key", nargs="?", help="the key (base64), for install, use and remove")
    _client_options(keys)

    plugins = command("plugins", "list installed transports, routers, serializers, connection plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    demo = command("demo", "start a 3-node cluster on loopback and show an event exchange")
    _backend(demo)
    demo.add_argument("--transport", type=cli_transport, default="tcp", help="transport plugin, e.g. quic")
    return parser


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"], help="event loop")


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--join", type=join_address, required=True, metavar="HOST:PORT", help="a node of the cluster"
    )
    parser.add_argument("--cluster", default="default", help="cluster name (default: 'default')")
    add_transport_options(parser)
    parser.add_argument("--serializer", default="msgpack", help="serializer plugin")
    parser.add_argument("--trusted-cluster", action="store_true", help="needed with --serializer pickle")
    add_keyring_option(parser)
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the node",
    )
    add_log_level(parser, "WARNING")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):  # plain `pydevts`: the overview, not an error
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
        return code
    except PydevtsError as exc:
        print(f"pydevts: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pydevts members | head -1`: stop quietly, as Unix tools do
        silence_stdout()
        return 128 + 13  # what a shell reports for a process ended by SIGPIPE


def _run(args: argparse.Namespace) -> int:
    if args.command in ("node", "watch"):
        check_backend(args.backend)
        setup_logging(args.log_level)
        if args.command == "watch":
            args.cluster_port, args.cluster_host = args.join[0].port, args.join[0].host
            args.seeds = args.join[1:]
            args.node_id = args.node_id or f"watch-{os.urandom(3).hex()}"
        return anyio.run(run_node, args, backend=args.backend)
    if args.command == "demo":
        from .demo import run_demo

        check_backend(args.backend)
        return anyio.run(run_demo, args.backend, args.transport, backend=args.backend)
    if args.command == "plugins":
        return commands.plugins(args.json)
    if args.command == "keygen":
        print(generate_key())
        return 0
    setup_logging(args.log_level)
    if args.command == "members":
        return commands.members(args)
    if args.command == "keys":
        return commands.keys(args)
    if args.command == "trace" or (args.command == "emit" and args.trace is not None):
        from .trace import emit_traced, trace

        return trace(args) if args.command == "trace" else emit_traced(args)
    if args.command == "top":
        from .top import run_top

        check_backend(args.backend)
        return anyio.run(run_top, args, backend=args.backend)
    return commands.emit(args)
