"""``pydevts members``, ``pydevts emit`` and ``pydevts plugins``."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..errors import ConfigurationError, ConnectError
from ..members import Member, MemberState
from ..node.client import NodeClient
from ..node.inspect import fetch_cluster
from ..plugins.registry import Registry
from .options import transport_options

__all__ = ["emit", "members", "plugins", "select_members", "sent_to_text"]

T = TypeVar("T")


def _client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(
        args.join,
        cluster=args.cluster,
        transport=args.transport,
        transport_options=transport_options(args),
        serializer=args.serializer,
        serializer_options={"trusted": True} if args.trusted_cluster else None,
        keyring=args.keyring,
        timeout=args.timeout,
    )


async def ask(args: argparse.Namespace, call: Callable[[NodeClient], Awaitable[T]]) -> T:
    """``call`` the node at ``--join``; a failed connect says which transport was tried."""
    try:
        async with _client(args) as client:
            return await call(client)
    except ConnectError as exc:
        others = [t for t in Registry().names("transport") if t not in (args.transport, "memory")]
        hint = f" (--transport {' or '.join(others)})" if others else ""
        raise ConnectError(
            f"{exc} — nothing answered over {args.transport} at {args.join}; "
            f"is the cluster using another transport{hint}?",
            refused=exc.refused,
        ) from exc


def select_members(
    found: list[Member], tags: list[tuple[str, re.Pattern[str]]], states: list[MemberState]
) -> list[Member]:
    """The members whose tags match every ``K=REGEX`` (whole value) and whose state is one of ``states``."""
    return [
        m
        for m in found
        if (not states or m.state in states)
        and all(k in m.tags and pattern.fullmatch(m.tags[k]) for k, pattern in tags)
    ]


def members(args: argparse.Namespace) -> int:
    if getattr(args, "graph", False):  # the links between members, as Graphviz DOT
        from .graph import dot

        cluster = anyio.run(ask, args, fetch_cluster)
        print(dot(cluster, lambda found: select_members(found, args.tag, args.state)), end="")
        return 0
    found = select_members(anyio.run(ask, args, NodeClient.members), args.tag, args.state)
    if args.json:
        print(json.dumps([m.to_dict() for m in found], indent=2))
        return 0
    routed = any(m.distance is not None for m in found)  # a multi-hop router says how to reach each
    rows = [("ID", "ADDRESS", "STATE", *(("VIA", "HOPS") if routed else ()), "TAGS")]
    for m in found:
        route = (m.next_hop or "-", "-" if m.distance is None else str(m.distance)) if routed else ()
        rows.append((m.id, m.address, m.state.value, *route, ",".join(f"{k}={v}" for k, v in m.tags.items())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def sent_to_text(name: str, sent_to: list[str]) -> str:
    if not sent_to:
        return f"event {name!r} sent to no other node"
    nodes = "node" if len(sent_to) == 1 else "nodes"
    return f"event {name!r} sent to {len(sent_to)} {nodes}: {', '.join(sent_to)}"


def emit(args: argparse.Namespace) -> int:
    sent_to = anyio.run(ask, args, lambda client: client.emit(args.name, args.payload))
    print(sent_to_text(args.name, sent_to))
    return 0


def keys(args: argparse.Namespace) -> int:
    """``pydevts keys``: one line per member (or per key, for ``list``); exit 1 if any member failed."""
    if args.op != "list" and not args.key:
        raise ConfigurationError(f"`pydevts keys {args.op}` needs the key (base64)")
    if args.op == "list" and args.key:
        raise ConfigurationError("`pydevts keys list` takes no key")
    if args.keyring is None:
        raise ConfigurationError("`pydevts keys` needs --keyring PATH (a key the cluster accepts)")
    results = anyio.run(ask, args, lambda client: client.keys(args.op, args.key))
    failed = {m: r["error"] for m, r in results.items() if "error" in r}
    done = {m: r for m, r in results.items() if "error" not in r}
    if args.op == "list":
        counts: dict[str, list[int]] = {}
        for result in done.values():
            for fingerprint in result["keys"]:
                counts.setdefault(fingerprint, [0, 0])[0] += 1
            counts.setdefault(result["primary"], [0, 0])[1] += 1
        print(f"{'KEY (fingerprint)':<18}  MEMBERS  PRIMARY ON")
        for fingerprint, (have, primary) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
            print(f"{fingerprint:<18}  {have}/{len(done):<6} {primary}/{len(done)}")
    else:
        print(f"{args.op}: done on {len(done)} of {len(results)} members")
    for member, error in sorted(failed.items()):
        print(f"  {member}: failed: {error}")
    return 1 if failed else 0


def plugins(as_json: bool) -> int:
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
