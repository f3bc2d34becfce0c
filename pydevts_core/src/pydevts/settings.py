"""Node settings: tags, advertised address, cluster host (validation and defaults)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import anyio

from .errors import ConfigurationError
from .protocols import Address

__all__ = [
    "MAX_TAGS_BYTES",
    "advertise_host_for",
    "checked_tags",
    "default_cluster_host",
    "parse_advertise",
]

log = logging.getLogger("pydevts.node")

WILDCARDS = ("", "0.0.0.0", "::")


MAX_TAGS_BYTES = 4096


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
    if text.count(":") == 1 or text.startswith("["):
        try:
            parsed = Address.parse(text)
        except ValueError as exc:
            raise ConfigurationError(f"advertise={advertise!r}: {exc}") from None
        return parsed.host, parsed.port or None
    return text, None  # a host name, an IPv4 address or a bare IPv6 address


def default_cluster_host(host: str) -> str:
    return "127.0.0.1" if host in WILDCARDS else host


async def advertise_host_for(host: str, given: str | None) -> str | None:
    """The host to advertise: ``given``, else None for the bound one (or a guess for a wildcard)."""
    if given:
        return given
    if host not in WILDCARDS:
        return None
    try:
        infos = await anyio.getaddrinfo(socket.gethostname(), None, family=socket.AF_INET)
        guess = str(infos[0][4][0])
    except (OSError, IndexError):
        guess = "127.0.0.1"
    log.warning("bound to a wildcard address; advertising %s (set advertise= to choose)", guess)
    return guess
