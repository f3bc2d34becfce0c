"""Options shared by the ``pydevts`` commands and the scripted agent, and their checks.

Every check is an argparse ``type`` (or ``choices``), so bad input ends as
``pydevts node: error: argument --port: ...`` with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..address import Address
from ..errors import ConfigurationError
from ..limits import Limits
from ..members import MemberState
from ..node.core import Node
from ..wire.framing import DEFAULT_MAX_FRAME_SIZE
from .join_options import add_join_options

__all__ = [
    "LOG_LEVELS",
    "HelpFormatter",
    "add_node_options",
    "add_transport_options",
    "advertise_address",
    "check_backend",
    "join_address",
    "json_value",
    "key_value",
    "limits_from_args",
    "node_from_args",
    "port_number",
    "positive_seconds",
    "setup_logging",
    "state_name",
    "tag_filter",
    "transport_options",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a host name or an IPv4 address


class HelpFormatter(argparse.HelpFormatter):
    """Ends each option's help with ``(default: X)`` unless it has no default or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "(default" in text or default in (None, False, [], argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text  # a required positional
        return f"{text} (default: %(default)s)"


# ------------------------------------------------------------------ checks (argparse types)


def port_number(low: int = 0) -> Callable[[str], int]:
    """An argparse type: a port number from ``low`` to 65535."""

    def port(text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
        value = int(text)
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port {value} is out of range ({low} to 65535)")
        return value

    return port


def _host(host: str, text: str, *, ipv6: bool = False) -> None:
    if ipv6 or ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            if host == text:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is neither HOST, HOST:PORT, [IPV6]:PORT nor an IPv6 address"
                ) from None
            raise argparse.ArgumentTypeError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise argparse.ArgumentTypeError(f"{text!r}: {host!r} is not a host name or IP address")


def _host_port(text: str, *, port_required: bool) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or (port not required) a bare IPv6 address."""
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: empty, or contains spaces or control characters")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r} is not of the form [IPV6] or [IPV6]:PORT")
        port_text: str | None = rest[1:] if rest else None
    elif text.count(":") > 1 and not port_required:
        host, port_text = text, None  # a bare IPv6 address
    else:
        host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        port_text = port_text if sep else None
    _host(host, text, ipv6=text.startswith("["))
    if port_text is None:
        if port_required:
            raise argparse.ArgumentTypeError(f"{text!r} is not of the form HOST:PORT")
        return host, None
    if not port_text:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is missing after ':'")
    try:
        return host, port_number(1)(port_text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def advertise_address(text: str) -> str:
    """An argparse type: ``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or a bare IPv6 address."""
    _host_port(text, port_required=False)
    return text


def cli_transport(name: str) -> str:
    """An argparse type: a transport name other processes can reach (not the in-process ``memory``)."""
    if name == "memory":
        raise argparse.ArgumentTypeError(
            "the memory transport connects nodes inside one Python process only (pydevts.testing); "
            "the CLI needs tcp or quic"
        )
    return name


def join_address(text: str) -> Address:
    """An argparse type: ``HOST:PORT`` or ``[IPV6]:PORT`` of a node; a bare ``PORT`` means 127.0.0.1."""
    if text.isdigit():  # `--join 7000`, as `pydevts node 7000` takes a bare port
        text = f"127.0.0.1:{text}"
    host, port = _host_port(text, port_required=True)
    assert port is not None
    return Address(host, port)


def key_value(text: str) -> tuple[str, str]:
    """An argparse type: ``K=V`` (V may be empty, K may not)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def tag_filter(text: str) -> tuple[str, re.Pattern[str]]:
    """An argparse type: ``K=REGEX``, the regular expression matched against a whole tag value."""
    key, value = key_value(text)
    try:
        return key, re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not a regular expression: {exc}") from None


def state_name(text: str) -> MemberState:
    try:
        return MemberState(text.lower())
    except ValueError:
        states = ", ".join(s.value for s in MemberState)
        raise argparse.ArgumentTypeError(f"invalid state {text!r} (choose from {states})") from None


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def check_backend(backend: str) -> None:
    """ConfigurationError unless the event loop ``backend`` can be used."""
    if backend != "trio":
        return
    try:
        importlib.import_module("trio")
    except ModuleNotFoundError as exc:
        if exc.name != "trio":
            raise ConfigurationError(f"trio cannot be imported: {exc}") from None
        raise ConfigurationError("trio is not installed: pip install trio") from None
    except ImportError as exc:
        raise ConfigurationError(f"trio cannot be imported: {exc}") from None


# ------------------------------------------------------------------ option groups


def add_node_options(parser: argparse.ArgumentParser, *, cluster_port: bool = True) -> None:
    if cluster_port:
        parser.add_argument(
            "cluster_port",
            type=port_number(1),
            help="port to join through (or to start a new cluster on), 1 to 65535",
        )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--port", type=port_number(0), default=0, help="own port when joining (default: any free port)"
    )
    if cluster_port:
        parser.add_argument("--cluster-host", default=None, help="host of the cluster port (default: --host)")
    parser.add_argument(
        "--advertise",
        type=advertise_address,
        default=None,
        metavar="HOST[:PORT]",
        help="the address other nodes use to reach this one (default: the bound one)",
    )
    parser.add_argument("--cluster", default="default", help="cluster name (default: 'default')")
    parser.add_argument("--id", dest="node_id", default=None, help="node id (default: random)")
    add_transport_options(parser)
    parser.add_argument("--router", default="peer", help="router plugin")
    parser.add_argument(
        "--router-option",
        action="append",
        type=key_value,
        default=[],
        metavar="K=V",
        help="a setting of the router, e.g. dead_interval=1.5 for hop (repeatable)",
    )
    parser.add_argument("--serializer", default="msgpack", help="serializer plugin")
    parser.add_argument(
        "--plugin", action="append", default=[], help="enable a connection plugin (repeatable)"
    )
    parser.add_argument(
        "--plugin-option",
        action="append",
        type=plugin_option,
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an option of the plugin NAME (any kind), e.g. prometheus.port=9464 (repeatable)",
    )
    parser.add_argument(
        "--tag",
        action="append",
        type=key_value,
        default=[],
        metavar="K=V",
        help="a tag of this node (repeatable)",
    )
    add_join_options(parser, cluster_port=cluster_port)
    add_keyring_option(parser)
    parser.add_argument(
        "--trusted-cluster",
        action="store_true",
        help="declare every node and network path trusted (required by the pickle serializer)",
    )
    parser.add_argument(
        "--max-frame-size",
        type=int,
        default=DEFAULT_MAX_FRAME_SIZE,
        metavar="BYTES",
        help="largest frame sent or accepted (at least 1024)",
    )
    parser.add_argument(
        "--reap-after",
        type=positive_seconds,
        default=24 * 3600,
        metavar="SECONDS",
        help="drop members that left or failed this long ago from the view",
    )
    add_limit_options(parser)
    add_log_level(parser, "INFO")


def positive_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """``--max-connections N`` ... : one flag per field of :class:`~pydevts.limits.Limits`."""
    group = parser.add_argument_group(
        "limits", "what peers may cost this node (docs/architecture.md, section Limits)"
    )
    for f in fields(Limits):
        count = f.metadata["metavar"] == "N"
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest="limit_" + f.name,
            type=positive_count if count else positive_seconds,
            default=f.default,
            metavar=f.metadata["metavar"],
            help=f.metadata["help"],
        )


def limits_from_args(args: argparse.Namespace) -> Limits:
    given = {f.name: getattr(args, "limit_" + f.name, None) for f in fields(Limits)}
    return Limits(**{name: value for name, value in given.items() if value is not None})


def add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        metavar="LEVEL",
        help="what to log on stderr: DEBUG, INFO, WARNING or ERROR",
    )


def add_keyring_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keyring",
        metavar="PATH",
        help="the cluster's keyring file: one base64 key per line, the first is the primary "
        "(make a key with `pydevts keygen`); without it the cluster is open to anyone who can reach it",
    )


def add_transport_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", type=cli_transport, default="tcp", help="transport plugin, e.g. quic")
    parser.add_argument(
        "--transport-option",
        action="append",
        type=key_value,
        default=[],
        metavar="K=V",
        help="a setting of the transport, e.g. cafile=ca.pem for quic (repeatable)",
    )


def plugin_option(text: str) -> tuple[str, str, str]:
    """``NAME.KEY=VALUE`` as (name, key, value); argparse's error says what is wrong."""
    target, eq, value = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not (eq and dot and name and key):
        raise argparse.ArgumentTypeError(f"expected NAME.KEY=VALUE (e.g. prometheus.port=9464), got {text!r}")
    return name, key, value


def plugin_options(given: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for name, key, value in given:
        options.setdefault(name, {})[key] = value
    return options


def transport_options(args: argparse.Namespace) -> dict[str, str]:
    return dict(args.transport_option)


def node_from_args(args: argparse.Namespace, cls: type[Node] = Node, **extra: Any) -> Node:
    return cls(
        args.cluster_port,
        host=args.host,
        port=args.port,
        cluster_host=args.cluster_host,
        advertise=args.advertise,
        cluster=args.cluster,
        node_id=args.node_id,
        tags=dict(args.tag),
        transport=args.transport,
        transport_options=transport_options(args),
        router=args.router,
        router_options=dict(args.router_option),
        serializer=args.serializer,
        connection_plugins=args.plugin,
        plugin_options=plugin_options(args.plugin_option),
        serializer_options={"trusted": True} if args.trusted_cluster else None,
        keyring=args.keyring,
        join_only=args.join_only,
        seeds=getattr(args, "seeds", []),
        retry_join=args.retry_join,
        merge_interval=args.merge_interval,
        snapshot=args.snapshot,
        max_frame_size=args.max_frame_size,
        reap_after=args.reap_after,
        limits=limits_from_args(args),
        **extra,
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
