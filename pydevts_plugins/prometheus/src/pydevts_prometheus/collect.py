"""What ``/metrics`` shows: every metric family, built when Prometheus scrapes.

:data:`METRICS` lists them (family name -> type, labels, help). Counters are
exposed with the ``_total`` suffix, histograms as ``_bucket``, ``_sum`` and
``_count`` (see :func:`sample_names`).

The collector runs on the HTTP server's thread while the node runs on its
event loop: it reads the plugin's counts and the node's state without a lock.
A read that meets a dictionary or set the node is changing at that moment
(``RuntimeError: ... changed size during iteration``) is simply done again;
each number read is whole, and a scrape is a snapshot to within the time it
takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from pydevts import LinkInfo, LocalProtocolError, Member, MemberState

if TYPE_CHECKING:
    from .exporter import Histogram, PrometheusPlugin

__all__ = [
    "BUCKETS",
    "CLIENTS",
    "DROP_REASONS",
    "GAUGE_STATISTICS",
    "METRICS",
    "OTHER",
    "SWIM_RTT_COUNT",
    "SWIM_RTT_SUM",
    "MetricSpec",
    "NodeCollector",
    "drop_reason",
    "sample_names",
]

log = logging.getLogger("pydevts.prometheus")
T = TypeVar("T")

#: Upper bounds (seconds) of the handler-time and request-latency histograms' buckets.
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_LE = [repr(float(b)) for b in BUCKETS]  # the "le" labels, as prometheus_client writes them

#: The ``name`` label of messages past ``max_names`` distinct names.
OTHER = "_other"
#: The ``peer`` label of every client link together (one-off ``pydevts emit``/``members`` clients).
CLIENTS = "_clients"

#: The ``reason`` label of ``pydevts_drops_total``: each drop reason a node gives, in a class.
DROP_REASONS = ("no_handler", "hop_limit", "no_route", "link_full", "other")
_REASON_WORDS = (
    ("no handler", "no_handler"),
    ("hop limit", "hop_limit"),
    ("no route", "no_route"),
    ("stayed full", "link_full"),
)

#: ``node.statistics()`` entries that are levels, not counts (exported as ``pydevts_node_gauge``).
GAUGE_STATISTICS = frozenset(
    {
        "limits.open_connections",
        "limits.open_clients",
        "limits.pending_handshakes",
        "links.unacknowledged",
        "links.queued_bytes",
        "inbox.queued_batches",
        "router.known_nodes",
        "router.dedup_origins",
    }
)

_ATTEMPTS = 10  # reads of the node's state that met a change in progress, before giving up


class MetricSpec(NamedTuple):
    type: str  #: ``counter``, ``gauge``, ``histogram`` or ``summary``
    labels: tuple[str, ...]
    help: str


#: Every metric family, by name (counters are exposed as ``<name>_total``).
METRICS: dict[str, MetricSpec] = {
    # counted by the hooks
    "pydevts_messages_sent": MetricSpec(
        "counter",
        ("kind", "name"),
        "Events, requests and replies this node sent, by kind and name (an emit counts once)",
    ),
    "pydevts_message_bytes_sent": MetricSpec(
        "counter", ("kind", "name"), "Bytes of the messages this node sent (name, headers and payload)"
    ),
    "pydevts_messages_received": MetricSpec(
        "counter",
        ("kind", "name"),
        "Events and requests that arrived for this node, by kind and name (handled, or dropped for "
        "having no handler; replies: see pydevts_request_seconds)",
    ),
    "pydevts_message_bytes_received": MetricSpec(
        "counter", ("kind", "name"), "Bytes of the events and requests that arrived for this node"
    ),
    "pydevts_handler_seconds": MetricSpec(
        "histogram", ("kind", "name"), "Time this node's handlers took, by kind (event, request) and name"
    ),
    "pydevts_handler_errors": MetricSpec(
        "counter", ("kind", "name"), "Handlers of this node that raised, by kind and name"
    ),
    "pydevts_handlers_running": MetricSpec(
        "gauge", ("kind", "name"), "Handlers of this node running now, by kind and name"
    ),
    "pydevts_request_seconds": MetricSpec(
        "histogram",
        ("name", "outcome"),
        "Latency of the requests this node sent, by name and outcome (ok, error, no_handler, timeout, "
        "unreachable)",
    ),
    "pydevts_member_events": MetricSpec(
        "counter", ("kind",), "Membership events: joined, left, failed, updated, reaped, started, stopping"
    ),
    "pydevts_drops": MetricSpec(
        "counter",
        ("kind", "name", "reason"),
        "Messages dropped, by kind, name and reason (no_handler, hop_limit, no_route, link_full, other)",
    ),
    "pydevts_relays": MetricSpec(
        "counter", ("kind",), "Other nodes' messages this node's router passed on (hop router)"
    ),
    "pydevts_tracked_names": MetricSpec(
        "gauge", (), "Distinct message names with series of their own (the rest count as _other)"
    ),
    "pydevts_tracked_names_limit": MetricSpec(
        "gauge", (), "The most distinct message names with series of their own (max_names)"
    ),
    # read from the node when scraped
    "pydevts_node_info": MetricSpec("gauge", ("node_id", "cluster", "address"), "This node (always 1)"),
    "pydevts_members": MetricSpec("gauge", ("state",), "Members this node knows (itself included), by state"),
    "pydevts_links": MetricSpec("gauge", ("role",), "Open links, by role (member, client)"),
    "pydevts_link_frames": MetricSpec(
        "counter",
        ("peer", "role", "direction"),
        "Frames on the open links to each peer, in and out (since the link opened)",
    ),
    "pydevts_link_bytes": MetricSpec(
        "counter",
        ("peer", "role", "direction"),
        "Bytes on the open links to each peer, in and out (since the link opened)",
    ),
    "pydevts_link_batches": MetricSpec(
        "counter",
        ("peer", "role", "direction"),
        "Reads and writes (each one or more frames) on the open links to each peer (since it opened)",
    ),
    "pydevts_link_queued_bytes": MetricSpec(
        "gauge", ("peer", "role"), "Bytes waiting to be written on the links to each peer"
    ),
    "pydevts_node_counter": MetricSpec(
        "counter",
        ("name",),
        "Every counter of node.statistics(): node, router.*, limits.*, links.*, transport.*, keyring.*",
    ),
    "pydevts_node_gauge": MetricSpec(
        "gauge", ("name",), "The levels of node.statistics() (open connections, unacknowledged frames, ...)"
    ),
    "pydevts_swim_probe_rtt_seconds": MetricSpec(
        "summary",
        (),
        "Round trips of the failure detector's direct probes answered in time (from "
        "router.swim_probe_rtt_us and router.swim_probes_acked, when the router reports them)",
    ),
}

#: The ``node.statistics()`` entries ``pydevts_swim_probe_rtt_seconds`` is made of (sum, count).
SWIM_RTT_SUM, SWIM_RTT_COUNT = "router.swim_probe_rtt_us", "router.swim_probes_acked"

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def sample_names() -> set[str]:
    """Every sample name ``/metrics`` may show (``pydevts_drops_total``, ``..._bucket``, ...)."""
    return {name + suffix for name, spec in METRICS.items() for suffix in _SUFFIXES[spec.type]}


def drop_reason(reason: str) -> str:
    """The class (one of :data:`DROP_REASONS`) of a drop reason as the node words it."""
    lowered = reason.lower()
    for words, label in _REASON_WORDS:
        if words in lowered:
            return label
    return "other"


def _family(name: str) -> Metric:
    spec = METRICS[name]
    if spec.type == "counter":
        return _counter(name)
    if spec.type == "gauge":
        return _gauge(name)
    if spec.type == "summary":
        return SummaryMetricFamily(name, spec.help, labels=spec.labels)
    return _histogram(name)


def _counter(name: str) -> CounterMetricFamily:
    spec = METRICS[name]
    assert spec.type == "counter", name
    return CounterMetricFamily(name, spec.help, labels=spec.labels)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = METRICS[name]
    assert spec.type == "gauge", name
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


def _histogram(name: str) -> HistogramMetricFamily:
    spec = METRICS[name]
    assert spec.type == "histogram", name
    return HistogramMetricFamily(name, spec.help, labels=spec.labels)


def _again(read: Callable[[], T]) -> T:
    """``read()``, done again while it meets a change in progress (the node runs on another thread)."""
    for _ in range(_ATTEMPTS - 1):
        try:
            return read()
        except RuntimeError:  # "dictionary/set changed size during iteration"
            continue
    return read()


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    counts, total, cumulative = list(histogram.counts), histogram.sum, 0
    buckets: list[tuple[str, float]] = []
    for le, count in zip(_LE, counts, strict=False):
        cumulative += count
        buckets.append((le, cumulative))
    buckets.append(("+Inf", cumulative + counts[-1]))
    return buckets, total


class _NodeState(NamedTuple):
    node_id: str
    cluster: str
    address: str
    statistics: dict[str, int]
    links: list[LinkInfo]
    members: list[Member]


class NodeCollector:
    """The collector of one :class:`~pydevts_prometheus.PrometheusPlugin` (in its own registry)."""

    def __init__(self, plugin: PrometheusPlugin) -> None:
        self.plugin = plugin

    def describe(self) -> list[Metric]:
        return [_family(name) for name in METRICS]

    def collect(self) -> Iterator[Metric]:
        yield from self._counted()
        node = self.plugin.node
        if node is None:
            return
        try:
            state = _again(
                lambda: _NodeState(
                    node.id, node.cluster, node.address, node.statistics(), node.links(), node.members
                )
            )
        except LocalProtocolError:  # the node stopped meanwhile
            return
        except Exception:
            log.exception("could not read node %s for /metrics", node.id)
            return
        yield from self._read(state)

    # ------------------------------------------------------------------ counted by the hooks

    def _counted(self) -> Iterator[Metric]:
        p = self.plugin
        sent, sent_bytes = _counter("pydevts_messages_sent"), _counter("pydevts_message_bytes_sent")
        for (kind, name), (count, nbytes) in _items(p.sent):
            sent.add_metric([kind, name], count)
            sent_bytes.add_metric([kind, name], nbytes)
        yield sent
        yield sent_bytes
        # What arrived: each event or request ran a handler, or was dropped for having none.
        handled = _items(p.handlers)
        drops = _items(p.drops)
        arrived: dict[tuple[str, str], list[int]] = {}
        for (kind, name), histogram in handled:
            arrived[kind, name] = [histogram.started, histogram.bytes]
        for (kind, name, reason), (count, nbytes) in drops:
            if reason == "no_handler" and kind in ("event", "request"):
                sums = arrived.setdefault((kind, name), [0, 0])
                sums[0] += count
                sums[1] += nbytes
        received, received_bytes = (
            _counter("pydevts_messages_received"),
            _counter("pydevts_message_bytes_received"),
        )
        for (kind, name), (count, nbytes) in sorted(arrived.items()):
            received.add_metric([kind, name], count)
            received_bytes.add_metric([kind, name], nbytes)
        yield received
        yield received_bytes
        seconds, errors = _histogram("pydevts_handler_seconds"), _counter("pydevts_handler_errors")
        running = _gauge("pydevts_handlers_running")
        for (kind, name), histogram in handled:
            buckets, total = _buckets(histogram)
            seconds.add_metric([kind, name], buckets, total)
            errors.add_metric([kind, name], histogram.errors)
            running.add_metric([kind, name], max(0, histogram.started - int(buckets[-1][1])))
        yield seconds
        yield errors
        yield running
        requests = _histogram("pydevts_request_seconds")
        for (name, outcome), histogram in _items(p.requests):
            requests.add_metric([name, outcome], *_buckets(histogram))
        yield requests
        members = _counter("pydevts_member_events")
        for kind, count in _items(p.member_events):
            members.add_metric([kind], count)
        yield members
        dropped = _counter("pydevts_drops")
        for (kind, name, reason), (count, _) in drops:
            dropped.add_metric([kind, name, reason], count)
        yield dropped
        relays = _counter("pydevts_relays")
        for kind, count in _items(p.relays):
            relays.add_metric([kind], count)
        yield relays
        tracked, limit = _gauge("pydevts_tracked_names"), _gauge("pydevts_tracked_names_limit")
        tracked.add_metric([], len(p.names))
        limit.add_metric([], p.max_names)
        yield tracked
        yield limit

    # ------------------------------------------------------------------ read from the node

    def _read(self, state: _NodeState) -> Iterator[Metric]:
        info = _gauge("pydevts_node_info")
        info.add_metric([state.node_id, state.cluster, state.address], 1)
        yield info
        members = _gauge("pydevts_members")
        by_state = dict.fromkeys(MemberState, 0)
        for member in state.members:
            by_state[member.state] = by_state.get(member.state, 0) + 1
        for member_state, count in by_state.items():
            members.add_metric([member_state.value], count)
        yield members
        yield from _links(state.links)
        counters, gauges = _counter("pydevts_node_counter"), _gauge("pydevts_node_gauge")
        for name, value in sorted(state.statistics.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                (gauges if name in GAUGE_STATISTICS else counters).add_metric([name], value)
        yield counters
        yield gauges
        rtt_sum, rtt_count = state.statistics.get(SWIM_RTT_SUM), state.statistics.get(SWIM_RTT_COUNT)
        if isinstance(rtt_sum, int) and isinstance(rtt_count, int):
            rtt = SummaryMetricFamily(
                "pydevts_swim_probe_rtt_seconds",
                METRICS["pydevts_swim_probe_rtt_seconds"].help,
                count_value=rtt_count,
                sum_value=rtt_sum / 1e6,
            )
            yield rtt


def _items(table: dict[Any, T]) -> list[tuple[Any, T]]:
    return _again(lambda: list(table.items()))


def _links(links: Sequence[LinkInfo]) -> Iterator[Metric]:
    """Per-link families, the links to one peer (or every client link) summed."""
    per_peer: dict[tuple[str, str], list[int]] = {}
    open_links = {"member": 0, "client": 0}
    for link in links:
        open_links[link.role] = open_links.get(link.role, 0) + 1
        key = (CLIENTS if link.role == "client" else link.peer, link.role)
        sums = per_peer.setdefault(key, [0] * 7)
        for i, value in enumerate(
            (
                link.frames_in,
                link.bytes_in,
                link.batches_in,
                link.frames_out,
                link.bytes_out,
                link.batches_out,
                link.queued_bytes,
            )
        ):
            sums[i] += value
    count = _gauge("pydevts_links")
    for role, n in open_links.items():
        count.add_metric([role], n)
    yield count
    frames, size, batches = (
        _counter("pydevts_link_frames"),
        _counter("pydevts_link_bytes"),
        _counter("pydevts_link_batches"),
    )
    queued = _gauge("pydevts_link_queued_bytes")
    for (peer, role), sums in sorted(per_peer.items()):
        for direction, offset in (("in", 0), ("out", 3)):
            frames.add_metric([peer, role, direction], sums[offset])
            size.add_metric([peer, role, direction], sums[offset + 1])
            batches.add_metric([peer, role, direction], sums[offset + 2])
        queued.add_metric([peer, role], sums[6])
    yield frames
    yield size
    yield batches
    yield queued
