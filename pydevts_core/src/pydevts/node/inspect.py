"""What a node reports about itself to ``pydevts top`` and ``pydevts members --graph``.

The system request ``pydevts.stats`` (open to any link, read-only) answers
this node's *snapshot*::

    {"node": id, "address": "host:port", "cluster": name, "router": "peer",
     "time": wall-clock seconds, "clock": this node's monotonic seconds (for rates),
     "statistics": {counter: int, ...},             # node.statistics()
     "links": [LinkInfo.as_dict(), ...],            # at most MAX_LINKS (links_total: all)
     "members": [member rows, ...],                 # at most MAX_MEMBERS (members_total: all)
     "latencies": {...} or None}                    # RequestLatencies.summary(), if installed

``{"members": false}`` leaves the member list out. A *client of this node*
may ask ``{"all": true}`` instead: the node then asks every other live
member for its snapshot (member to member, in parallel, at most
MAX_FANOUT of them, FANOUT_TIMEOUT seconds each; this works where the
client cannot reach them, e.g. with the hop router) and answers::

    {"asked": id, "nodes": [this node's snapshot, then the others' (no member list), by id],
     "missing": [{"id": ..., "why": ...}, ...],     # at most MAX_MISSING (missing_total: all)}

Snapshots that would make the reply larger than REPLY_BUDGET are left out
and listed as missing. Fan-outs asked while one is running share its result,
so any number of viewers cost one round per node. A member asking for the
fan-out is refused (``PermissionError``): it would make this node ask everyone.

Request latencies: the node keeps none by itself. :class:`RequestLatencies`
is a plugin that summarises the requests a node *sends* (count, outcomes,
p50/p99 of the last RESERVOIR, for at most MAX_NAMES names); a node that runs
it (``Node(connection_plugins=[RequestLatencies()])``) reports it in its
snapshot, others report ``None``.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ..cluster.views import member_rows
from ..errors import RemoteProtocolError
from ..members import Member, MemberState
from ..observe.hooks import MessageInfo, Plugin
from ..plugins.hookspecs import hookimpl
from ..wire.framing import DEFAULT_MAX_FRAME_SIZE
from ..wire.linkinfo import LinkInfo
from .fanout import ask_members

if TYPE_CHECKING:
    from .client import NodeClient
    from .core import Node

__all__ = [
    "FANOUT_TIMEOUT",
    "MAX_FANOUT",
    "MAX_LINKS",
    "MAX_MEMBERS",
    "STATS",
    "ClusterStats",
    "NodeStats",
    "RequestLatencies",
    "RequestSummary",
    "StatsService",
    "fetch_cluster",
    "parse_cluster",
    "snapshot",
]

STATS = "pydevts.stats"
MAX_LINKS = 1024  # links listed per snapshot
MAX_MEMBERS = 1024  # member rows per snapshot
MAX_FANOUT = 256  # members asked by one fan-out
MAX_MISSING = 256  # missing entries listed
FANOUT_TIMEOUT = 2.0  # seconds each member has to answer
MAX_NAMES = 64  # request names RequestLatencies keeps
RESERVOIR = 256  # latencies kept per name (the most recent)
_WHY = 200  # characters of a reason kept


def _budget(node: Node) -> int:
    # JSON length as a conservative stand-in for the serialized size; a client's frames are 1 MiB.
    return min(node.max_frame_size, DEFAULT_MAX_FRAME_SIZE) // 2


# ------------------------------------------------------------------ request latencies (a plugin)


@dataclass
class _Summary:
    recent: deque[float]
    count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class RequestLatencies(Plugin):
    """How the requests this node sends end, per name: count, outcomes, p50/p99 of the latest ones.

    Bounded: at most ``names`` names (later ones are only counted, as ``other``),
    the last ``keep`` latencies of each.
    """

    name = "latencies"

    def __init__(self, *, names: int | str = MAX_NAMES, keep: int | str = RESERVOIR) -> None:
        self.max_names, self.keep = int(names), int(keep)
        if self.max_names < 1 or self.keep < 1:
            raise ValueError("names and keep must be at least 1")
        self._by_name: dict[str, _Summary] = {}
        self.other = 0  #: requests whose name did not fit

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        summary = self._by_name.get(msg.name)
        if summary is None:
            if len(self._by_name) >= self.max_names:
                self.other += 1
                return
            summary = self._by_name[msg.name] = _Summary(deque(maxlen=self.keep))
        summary.count += 1
        summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
        summary.recent.append(seconds)

    def summary(self) -> dict[str, Any]:
        """``{"names": {name: {count, outcomes, p50, p99, max, samples}}, "other": int}`` (seconds)."""
        names = {}
        for name, s in self._by_name.items():
            ordered = sorted(s.recent)
            names[name] = {
                "count": s.count,
                "outcomes": dict(s.outcomes),
                "p50": _quantile(ordered, 0.5) if ordered else None,
                "p99": _quantile(ordered, 0.99) if ordered else None,
                "max": ordered[-1] if ordered else None,
                "samples": len(ordered),
            }
        return {"names": names, "other": self.other}


@hookimpl
def pydevts_register_connection_plugins() -> Mapping[str, Any]:
    """``--plugin latencies`` once this module is an entry point of the ``pydevts`` group."""
    return {"latencies": RequestLatencies}


# ------------------------------------------------------------------ the node's side


def snapshot(node: Node, *, members: bool = True) -> dict[str, Any]:
    """This node's snapshot (see the module doc); bounded by MAX_LINKS and MAX_MEMBERS."""
    ctx = node._require_running()
    links = node.links()
    plugin = next((p for p in ctx.observers.plugins if isinstance(p, RequestLatencies)), None)
    return {
        "node": node.id,
        "address": node.address,
        "cluster": node.cluster,
        "router": str(getattr(ctx.router, "name", type(ctx.router).__name__)),
        "time": time.time(),
        "clock": time.monotonic(),
        "statistics": node.statistics(),
        "links": [info.as_dict() for info in links[:MAX_LINKS]],
        "links_total": len(links),
        "members": member_rows(ctx.members)[:MAX_MEMBERS] if members else [],
        "members_total": len(ctx.members),
        "latencies": plugin.summary() if plugin is not None else None,
    }


class StatsService:
    """Answers ``pydevts.stats`` for one node (see the module doc)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._round: anyio.Event | None = None  # set when the fan-out in progress ends
        self._result: dict[str, Any] | None = None

    async def answer(self, sender: str, payload: Any, *, from_client: bool) -> dict[str, Any]:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise PermissionError("expected null or {'all': bool, 'members': bool}")
        if not payload.get("all"):
            return snapshot(self.node, members=payload.get("members", True) is not False)
        if not from_client:
            raise PermissionError(f"{STATS} with all=true is for clients of this node, not for {sender!r}")
        while True:
            running = self._round
            if running is None:
                return await self._fan_out()
            await running.wait()  # share the round in progress
            if self._result is not None:
                return self._result

    async def _fan_out(self) -> dict[str, Any]:
        done = self._round = anyio.Event()
        self._result = None
        try:
            self._result = await gather(self.node)
            return self._result
        finally:
            self._round = None
            done.set()


async def gather(node: Node) -> dict[str, Any]:
    """Ask every other live member for its snapshot (in parallel, bounded); see the module doc."""
    local = snapshot(node)
    answers = await ask_members(node, STATS, {"members": False}, timeout=FANOUT_TIMEOUT, limit=MAX_FANOUT)
    got: dict[str, dict[str, Any]] = {}
    missing: list[dict[str, str]] = []
    for member_id, reply in answers.items():
        if isinstance(reply, dict) and reply.get("node") == member_id:
            got[member_id] = reply
        elif isinstance(reply, dict) and isinstance(reply.get("error"), str):
            missing.append({"id": member_id, "why": reply["error"][:_WHY]})
        else:
            missing.append({"id": member_id, "why": "its answer is not a snapshot of it"})
    nodes, room = [local], _budget(node) - len(json.dumps(local, default=str))
    for member_id in sorted(got):
        size = len(json.dumps(got[member_id], default=str))
        if size > room:
            missing.append({"id": member_id, "why": "answered, but left out: the reply size limit"})
            continue
        nodes.append(got[member_id])
        room -= size
    missing.sort(key=lambda m: m["id"])
    return {"asked": node.id, "nodes": nodes, "missing": missing[:MAX_MISSING], "missing_total": len(missing)}


# ------------------------------------------------------------------ the client's side


@dataclass(frozen=True)
class RequestSummary:
    """The requests of one name a node sent (``RequestLatencies``): how many, how many ok, latencies (s)."""

    count: int
    ok: int
    p50: float | None
    p99: float | None


@dataclass(frozen=True)
class NodeStats:
    """One node's snapshot, checked."""

    id: str
    address: str
    cluster: str
    router: str
    clock: float
    statistics: dict[str, int]
    links: list[LinkInfo]
    links_total: int
    members: list[Member]
    latencies: dict[str, RequestSummary] | None  #: by request name; None: the node keeps none


@dataclass(frozen=True)
class ClusterStats:
    """A fan-out: the asked node's snapshot first (its member list is the cluster's), who did not answer."""

    asked: str
    nodes: list[NodeStats]
    missing: dict[str, str]  #: id -> why
    missing_total: int

    @property
    def members(self) -> list[Member]:
        return self.nodes[0].members if self.nodes else []


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise RemoteProtocolError(f"unexpected {STATS} reply: {what}.{key} is {value!r:.60}")
    return value


def _member(row: Any) -> Member:
    if not isinstance(row, dict):
        raise RemoteProtocolError(f"unexpected {STATS} reply: a member row is {row!r:.60}")
    try:
        hop, distance = row.get("next_hop"), row.get("distance")
        return Member(
            _get(row, "id", str, "member"),
            _get(row, "address", str, "member"),
            {str(k): str(v) for k, v in _get(row, "tags", dict, "member").items()},
            MemberState(str(row.get("state"))),
            next_hop=None if hop is None else str(hop),
            distance=None if distance is None else int(distance),
        )
    except (TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"unexpected {STATS} reply: member row {row!r:.80}: {exc}") from None


def _link(row: Any) -> LinkInfo:
    if not isinstance(row, dict):
        raise RemoteProtocolError(f"unexpected {STATS} reply: a link is {row!r:.60}")
    values = {}
    types: dict[str, type | tuple[type, ...]] = {"str": str, "bool": bool, "float": (int, float), "int": int}
    for name, kind in LinkInfo.__annotations__.items():
        values[name] = _get(row, name, types[str(kind)], "link")
    return LinkInfo(**values)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _latencies(obj: Any) -> dict[str, RequestSummary] | None:
    names = obj.get("names") if isinstance(obj, dict) else None
    if not isinstance(names, dict):
        return None
    found = {}
    for name, s in list(names.items())[:MAX_NAMES]:
        if isinstance(s, dict) and isinstance(s.get("count"), int):
            outcomes = s.get("outcomes")
            ok = outcomes.get("ok") if isinstance(outcomes, dict) else None
            ok = ok if isinstance(ok, int) else 0
            found[str(name)] = RequestSummary(s["count"], ok, _number(s.get("p50")), _number(s.get("p99")))
    return found


def _node(obj: Any) -> NodeStats:
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"unexpected {STATS} reply: a snapshot is {obj!r:.60}")
    stats = _get(obj, "statistics", dict, "snapshot")
    return NodeStats(
        id=_get(obj, "node", str, "snapshot"),
        address=_get(obj, "address", str, "snapshot"),
        cluster=str(obj.get("cluster", "")),
        router=str(obj.get("router", "")),
        clock=float(_get(obj, "clock", (int, float), "snapshot")),
        statistics={str(k): int(v) for k, v in stats.items() if isinstance(v, int)},
        links=[_link(row) for row in _get(obj, "links", list, "snapshot")],
        links_total=int(_get(obj, "links_total", int, "snapshot")),
        members=[_member(row) for row in _get(obj, "members", list, "snapshot")],
        latencies=_latencies(obj.get("latencies")),
    )


def parse_cluster(reply: Any) -> ClusterStats:
    """Check a fan-out reply (``{"all": true}``); RemoteProtocolError saying what is wrong."""
    if not isinstance(reply, dict):
        raise RemoteProtocolError(f"unexpected {STATS} reply: {reply!r:.80}")
    missing = {}
    for entry in _get(reply, "missing", list, "reply"):
        if isinstance(entry, dict):
            missing[str(entry.get("id"))] = str(entry.get("why"))
    return ClusterStats(
        asked=_get(reply, "asked", str, "reply"),
        nodes=[_node(obj) for obj in _get(reply, "nodes", list, "reply")],
        missing=missing,
        missing_total=int(reply.get("missing_total", len(missing))),
    )


async def fetch_cluster(client: NodeClient) -> ClusterStats:
    """Ask the client's node for the fan-out and check it."""
    return parse_cluster(await client.request(STATS, {"all": True}))
