"""Node settings: tags, advertised address, cluster host (validation and defaults)."""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from .address import Address
from .errors import ConfigurationError
from .fields import MAX_TAGS_BYTES, id_field

__all__ = [
    "MAX_SEEDS",
    "MAX_TAGS_BYTES",
    "advertise_host_for",
    "checked_interval",
    "checked_node_id",
    "checked_seeds",
    "checked_tags",
    "default_cluster_host",
    "finite_seconds",
    "parse_advertise",
]

log = logging.getLogger("pydevts.node")

WILDCARDS = ("", "0.0.0.0", "::")


def checked_node_id(node_id: str) -> str:
    """A node id others can parse (1 to 255 printable UTF-8 bytes, not `client:`); else ConfigurationError."""
    try:
        id_field(node_id)
    except ValueError as exc:
        raise ConfigurationError(f"node_id: {exc} (1 to 255 printable UTF-8 bytes)") from None
    if node_id.startswith("client:"):
        raise ConfigurationError(
            f"node_id: ids starting with 'client:' are what nodes call their clients: {node_id!r}"
        )
    return node_id


def checked_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as strings; ConfigurationError past MAX_TAGS_BYTES (they ride in every membership update)."""
    checked = {str(k): str(v) for k, v in tags.items()}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in checked.items())
    if size > MAX_TAGS_BYTES:
        raise ConfigurationError(f"tags take {size} bytes; at most {MAX_TAGS_BYTES} are allowed")
    return checked


def parse_advertise(advertise: str | None) -> tuple[str | None, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ConfigurationError if malformed."""
    if not advertise:
        return None, None
    text = advertise.strip()
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1], None
    if text.count(":") > 1 and not text.startswith("["):  # a bare IPv6 address, or nonsense
        try:
            ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            raise ConfigurationError(
                f"advertise={advertise!r} is not HOST, HOST:PORT, [IPV6]:PORT or an IPv6 address"
            ) from None
        return text, None
    try:  # HOST, HOST:PORT or [V6]:PORT; Address.parse checks the host and the port
        parsed = Address.parse(text if ":" in text else f"{text}:0")
    except ValueError as exc:
        raise ConfigurationError(f"advertise={advertise!r}: {exc}") from None
    return parsed.host, parsed.port or None


MAX_SEEDS = 64  # seeds a node takes: each is tried when joining and probed every merge_interval


def checked_seeds(seeds: Iterable[str | Address]) -> list[Address]:
    """Seeds as addresses (``HOST:PORT``, ``[V6]:PORT`` or :class:`Address`), duplicates dropped.

    ConfigurationError for a malformed one, a port 0, or more than :data:`MAX_SEEDS`.
    """
    if isinstance(seeds, (str, Address)):
        raise ConfigurationError(f"seeds must be a list of addresses, not one address: {seeds!r}")
    checked: list[Address] = []
    for seed in seeds:
        text = str(seed) if isinstance(seed, Address) else seed
        if not isinstance(text, str):
            raise ConfigurationError(f"seed {seed!r} is not an address (HOST:PORT)")
        try:
            address = Address.parse(text.strip())
        except ValueError as exc:
            raise ConfigurationError(f"seed {seed!r}: {exc}") from None
        if address.port == 0:
            raise ConfigurationError(f"seed {seed!r}: the port must be 1 to 65535")
        if address not in checked:
            checked.append(address)
    if len(checked) > MAX_SEEDS:
        raise ConfigurationError(f"{len(checked)} seeds given; at most {MAX_SEEDS} are allowed")
    return checked


def finite_seconds(value: Any) -> float | None:
    """``value`` (from a file or the network) as a finite float; None if it is not a number, a bool,
    infinite, NaN or too large for a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def checked_interval(name: str, value: float, *, zero: bool = False) -> float:
    """A finite number of seconds, positive (or 0 when ``zero`` allows it); else ConfigurationError."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or (zero and value == 0))
    if not ok:
        what = "zero or a positive" if zero else "a positive"
        raise ConfigurationError(f"{name} must be {what} number of seconds, got {value!r}")
    return float(value)


def default_cluster_host(host: str) -> str:
    return "127.0.0.1" if host in WILDCARDS else host


# Where a wildcard-bound node looks for its routable address when the cluster
# host tells nothing: documentation addresses (RFC 5737, RFC 3849). A UDP
# socket connected to them sends nothing; the kernel only picks a route.
_ROUTE_PROBES = {socket.AF_INET: "198.51.100.1", socket.AF_INET6: "2001:db8::1"}


def _source_address(family: socket.AddressFamily, target: str) -> str | None:
    """The address this machine would send from to reach ``target`` (no packet is sent)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return str(sock.getsockname()[0])
    except (OSError, ValueError):
        return None


def _routable(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


async def advertise_host_for(host: str, given: str | None, toward: str | None = None) -> str | None:
    """The host to advertise: ``given``, else None for the bound one, else (a wildcard) a routable guess.

    For a wildcard bind the guess is, in order: the source address this
    machine uses to reach ``toward`` (the cluster host) when that is not a
    loopback address; the host name's first routable address; the source
    address of the default route. With none of them routable, the node
    advertises loopback and warns that only this machine can reach it.
    """
    if given:
        return given
    if host not in WILDCARDS:
        return None
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    candidates: list[str | None] = []
    if toward and toward not in WILDCARDS:
        candidates.append(_source_address(family, toward))
    try:
        infos = await anyio.getaddrinfo(socket.gethostname(), None, family=family)
        candidates.extend(str(info[4][0]) for info in infos)
    except OSError:
        pass
    candidates.append(_source_address(family, _ROUTE_PROBES[family]))
    for candidate in candidates:
        if _routable(candidate):
            log.info("bound to %s; advertising %s to other nodes (--advertise to choose)", host, candidate)
            return candidate
    loopback = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    log.warning(
        "bound to %s but found no routable address of this machine; advertising %s, which only "
        "nodes on this machine can reach: pass --advertise HOST (Node(advertise=...)) to choose",
        host,
        loopback,
    )
    return loopback
