"""What an outside peer may cost a node: connections, handshakes, idle and slow clients, requests.

:class:`Limits` holds every limit with its default (``Node(limits=Limits(...))``,
CLI ``pydevts node --max-connections N ...``); ``docs/architecture.md``
("Limits") says why each default is what it is. The rest of this module is
the bookkeeping behind them, sans-IO where it can be:

- :class:`ConnectionGuard`, :class:`PendingTable` (handshakes in progress)
  and :class:`RequestSlots` (requests in flight) live in
  :mod:`pydevts.admission` and are re-exported here;
- :func:`address_key` says which address a connection counts against;
- :class:`StalledFrameError` is what a transport raises for a peer that
  stopped sending in the middle of a frame (``Connection.frame_timeout``).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .admission import ConnectionGuard, LimitCounters, PendingTable, RequestSlots, Ticket
from .errors import ConfigurationError, ConnectionClosedError

__all__ = [
    "DEFAULT_FRAME_TIMEOUT",
    "ConnectionGuard",
    "LimitCounters",
    "Limits",
    "PendingTable",
    "RequestSlots",
    "StalledFrameError",
    "Ticket",
    "address_key",
    "default_max_connections",
]

#: Seconds of waiting a frame that has begun to arrive may take (``Limits.frame_timeout``).
DEFAULT_FRAME_TIMEOUT = 10.0
#: Open files left to everything but accepted connections: dialled links, listeners, UDP, logs.
FD_RESERVE = 256
#: ``max_connections`` when the open-file limit allows more.
MAX_CONNECTIONS = 1000


def _n(default: int | None, text: str) -> Any:
    return field(default=default, metadata={"help": text, "metavar": "N"})


def _seconds(default: float, text: str) -> Any:
    return field(default=default, metadata={"help": text, "metavar": "SECONDS"})


@dataclass(frozen=True)
class Limits:
    """Every limit a node puts on its peers; each field's ``help`` says what it bounds.

    ``None`` means *auto* (see the field), filled in by :meth:`resolve` when
    a node is created. Connections a node dials itself are not counted.
    """

    max_connections: int | None = _n(
        None,
        "connections accepted and open at once, at any stage; over it a new one is closed at once "
        f"(default: auto, {MAX_CONNECTIONS} or the open-file limit less {FD_RESERVE}, if lower)",
    )
    max_connections_per_address: int = _n(
        64,
        "handshakes in progress plus client links from one address (an IPv6 /64; member links do not "
        "count: many nodes may share a host); over it that address's oldest handshake in progress is "
        "dropped, or if it has none the new connection",
    )
    max_pending_handshakes: int = _n(
        64,
        "connections accepted but not through the handshake yet; over it the oldest one of the address "
        "holding the most is dropped (each ends after the handshake timeout anyway)",
    )
    max_clients: int | None = _n(
        None,
        "client links (pydevts members/emit, NodeClient) at once; more are refused at the handshake, "
        "which keeps room for members (default: auto, a quarter of max_connections)",
    )
    max_clients_per_address: int = _n(16, "client links from one address; more are refused at the handshake")
    client_idle_timeout: float = _seconds(
        30.0, "a client link with no request for this long (and none in progress) is closed"
    )
    slow_consumer_timeout: float = _seconds(
        5.0,
        "a client link whose outgoing queue is over its high-water mark (1 MiB) while a sender waits, "
        "with nothing written for this long, is closed (the client does not read its replies)",
    )
    slow_member_timeout: float = _seconds(
        30.0, "the same for member links: longer, as a member's slow handler pushes back by design"
    )
    frame_timeout: float = _seconds(
        DEFAULT_FRAME_TIMEOUT,
        "a frame that has begun to arrive must be complete after this long spent waiting for its bytes, "
        "else the connection is closed (a sender must manage max_frame_size per frame_timeout)",
    )
    max_requests: int = _n(256, "requests whose handlers run at once, all senders together")
    max_requests_per_origin: int = _n(
        64,
        "requests in flight per sender (a client link or a member) until their reply is queued; beyond it "
        "that sender's link is not read until one ends (backpressure on that sender only)",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            if f.metadata["metavar"] == "N":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigurationError(f"limit {f.name} must be a whole number >= 1, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
                raise ConfigurationError(f"limit {f.name} must be a positive number of seconds: {value!r}")
        if self.max_clients_per_address > self.max_connections_per_address:
            raise ConfigurationError(
                "limit max_clients_per_address must not exceed max_connections_per_address "
                f"({self.max_clients_per_address} > {self.max_connections_per_address})"
            )

    def resolve(self) -> Limits:
        """These limits with the auto values filled in (for this process's open-file limit)."""
        total = self.max_connections or default_max_connections()
        clients = self.max_clients or max(1, total // 4)
        if clients > total:
            raise ConfigurationError(f"limit max_clients ({clients}) must not exceed max_connections {total}")
        return replace(self, max_connections=total, max_clients=clients)


def default_max_connections() -> int:
    """``MAX_CONNECTIONS``, or the soft open-file limit less ``FD_RESERVE`` if lower (at least 16)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - FD_RESERVE))


def address_key(remote: str) -> str:
    """The host of ``host:port`` / ``[v6]:port``, an IPv6 one as its /64 (one host's share, usually)."""
    host = remote.rpartition(":")[0] if remote.count(":") == 1 or remote.startswith("[") else remote
    host = host.strip("[]") or remote
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class StalledFrameError(ConnectionClosedError):
    """The peer began a frame and stopped sending it for longer than the frame timeout."""
