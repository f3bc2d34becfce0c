"""The ``prometheus`` connection plugin: counts what a node does, serves it at ``/metrics``.

Two kinds of numbers:

*Counted by the hooks* (messages sent and received per kind and name,
handler time, request latency by name and outcome, member events, drops,
relays). A hook does a dictionary look-up and an integer add, nothing more:
no lock, no ``prometheus_client`` object on the node's paths. The
:class:`~pydevts_prometheus.collect.NodeCollector` turns these into metric
families when Prometheus scrapes. The plugin overrides ``on_message_out``,
``on_handle``, ``on_request_done``, ``on_relay``, ``on_drop``, ``on_member``,
``on_start`` and ``on_stop``, and no link hook (per-link numbers are read
from the node) and no ``on_message_in``: every event or request that arrives
for the node either runs a handler (``on_handle``) or is dropped for having
none (``on_drop``), so those two count what arrived, one hook call less per
message.

*Read at scrape time* from the node (``node.statistics()``, ``node.links()``,
``node.members``): per-link frames, bytes and batches, queued bytes, members
by state, and every counter the node, its router and its transport keep.

Labels are bounded: at most ``max_names`` distinct message names (default
256, at most 65,536) get their own series; messages with any further name are
counted under ``name="_other"``. The other labels take values from small fixed
sets (kinds, outcomes, member event kinds, drop reasons, member states) or
are the peers of this node's open links.

The endpoint runs on its own thread (a threading HTTP server, one thread per
scrape) with a registry of its own, never the global default one: several
nodes in one process each serve their own numbers.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from pydevts import ConfigurationError, LocalProtocolError, MemberEvent, MessageInfo, Plugin
from pydevts.observe import Finish

from .collect import BUCKETS, OTHER, NodeCollector, drop_reason
from .server import MetricsServer

if TYPE_CHECKING:
    from pydevts import Node

__all__ = ["MAX_NAMES_LIMIT", "Histogram", "PrometheusPlugin"]

log = logging.getLogger("pydevts.prometheus")

#: The largest ``max_names`` accepted.
MAX_NAMES_LIMIT = 65_536


class Histogram:
    """Observations of one series: counts per bucket of :data:`BUCKETS` (not cumulative), sum.

    For handlers also: ``started`` (handlers begun), ``bytes`` (their messages' sizes) and
    ``errors`` (handlers that raised).
    """

    __slots__ = ("bytes", "counts", "errors", "started", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.errors = 0
        self.started = 0
        self.bytes = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def finish(self, seconds: float, error: BaseException | None) -> None:
        """A handler ended (``on_handle``'s ``finish``)."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        if error is not None:
            self.errors += 1


class PrometheusPlugin(Plugin):
    """Counts a node's traffic and serves it for Prometheus at ``http://host:port/metrics``.

    Options (``plugin_options={"prometheus": {...}}``, or
    ``--plugin-option prometheus.KEY=VALUE``):

    - ``port`` (default 9464): the port of ``/metrics``; 0 picks a free one
      (read it from :attr:`port` once the node runs);
    - ``host`` (default ``127.0.0.1``): the address to serve on (``0.0.0.0``
      or ``::`` for every interface);
    - ``max_names`` (default 256, 1 to 65,536): distinct message names that
      get series of their own; further names are counted as ``_other``;
    - ``serve`` (default true): false serves nothing: expose :attr:`registry`
      yourself (e.g. ``prometheus_client.make_asgi_app(plugin.registry)``).
    """

    name = "prometheus"

    def __init__(
        self, port: int = 9464, host: str = "127.0.0.1", max_names: int = 256, serve: bool = True
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a host name or address, got {host!r}")
        if isinstance(max_names, bool) or not isinstance(max_names, int):
            raise ValueError(f"max_names must be an integer, got {max_names!r}")
        if not 1 <= max_names <= MAX_NAMES_LIMIT:
            raise ValueError(f"max_names must be from 1 to {MAX_NAMES_LIMIT}, got {max_names}")
        self.host = host
        #: The port of ``/metrics``: as configured, then the bound one once serving (``port=0``).
        self.port = port
        self._listen_port = port  # as configured: what a restarted node binds again
        self.max_names = max_names
        self.serve = bool(serve)
        #: This plugin's own registry (never prometheus_client's global one).
        self.registry = CollectorRegistry()
        self.node: Node | None = None
        self._server: MetricsServer | None = None
        # What the hooks count (read by the collector on the server's thread).
        self.names: dict[str, str] = {}  # message name -> itself, for the names given a series
        self.sent: dict[tuple[str, str], list[int]] = {}  # (kind, name) -> [count, bytes]
        self.handlers: dict[tuple[str, str], Histogram] = {}  # (kind, name)
        self.requests: dict[tuple[str, str], Histogram] = {}  # (name, outcome)
        self.member_events: dict[str, int] = {}  # kind -> count
        self.drops: dict[tuple[str, str, str], list[int]] = {}  # (kind, name, reason) -> [count, bytes]
        self.relays: dict[str, int] = {}  # kind -> count
        self.registry.register(NodeCollector(self))

    @property
    def url(self) -> str | None:
        """``http://host:port/metrics`` while serving, else ``None``."""
        if self._server is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def label(self, name: str) -> str:
        """The ``name`` label for message ``name``: itself, or ``_other`` past ``max_names``."""
        label = self.names.get(name)
        if label is not None:
            return label
        if len(self.names) < self.max_names:
            self.names[name] = name
            return name
        return OTHER

    # ------------------------------------------------------------------ the node

    def on_start(self, node: Node) -> None:
        if self._server is not None and self.node is not node:
            raise LocalProtocolError("a PrometheusPlugin serves one node; make one per node")
        self.node = node
        if self.serve and self._server is None:
            try:
                self._server = MetricsServer(self.registry, self.host, self._listen_port, node.id)
            except OSError as exc:
                where = f"{self.host}:{self._listen_port}"
                raise ConfigurationError(f"cannot serve /metrics on {where}: {exc.strerror or exc}") from exc
            self.port = self._server.port
            log.info("node %s serves Prometheus metrics at %s", node.id, self.url)

    def on_stop(self, node: Node) -> None:
        server, self._server = self._server, None
        self.node = None
        if server is not None:
            server.close()

    def on_member(self, event: MemberEvent) -> None:
        events = self.member_events
        events[event.kind] = events.get(event.kind, 0) + 1

    # ------------------------------------------------------------------ messages (the hot paths)

    def on_message_out(self, msg: MessageInfo) -> None:
        name = self.names.get(msg.name)
        key = (msg.kind, name if name is not None else self.label(msg.name))
        counts = self.sent.get(key)
        if counts is None:
            counts = self.sent[key] = [0, 0]
        counts[0] += 1
        counts[1] += msg.size
        return None

    def on_handle(self, msg: MessageInfo) -> Finish:
        name = self.names.get(msg.name)
        key = (msg.kind, name if name is not None else self.label(msg.name))
        histogram = self.handlers.get(key)
        if histogram is None:
            histogram = self.handlers[key] = Histogram()
        histogram.started += 1
        histogram.bytes += msg.size
        return histogram.finish

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        name = self.names.get(msg.name)
        key = (name if name is not None else self.label(msg.name), outcome)
        histogram = self.requests.get(key)
        if histogram is None:
            histogram = self.requests[key] = Histogram()
        histogram.observe(seconds)

    def on_relay(self, msg: MessageInfo, to: str) -> None:
        relays = self.relays
        relays[msg.kind] = relays.get(msg.kind, 0) + 1

    def on_drop(self, msg: MessageInfo, reason: str) -> None:
        key = (msg.kind, self.label(msg.name), drop_reason(reason))
        counts = self.drops.get(key)
        if counts is None:
            counts = self.drops[key] = [0, 0]
        counts[0] += 1
        counts[1] += msg.size
