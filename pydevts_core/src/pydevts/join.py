"""Joining a cluster through its cluster port, or starting one there.

The rule, from the original README: try the cluster port; if nothing answers,
bind it and start a new cluster. Binding is the tie-breaker of a race: when
two nodes find the port free at the same moment, only one can bind it, and
the other goes back to joining through it — so a race never makes two
clusters. With ``join_only`` a node never starts a cluster: it fails instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from .errors import AddressInUseError, ConnectError, JoinError
from .handshake import open_link
from .keyring import Keyring
from .link import Link
from .protocols import Address, ConnectionPlugin, Listener, Transport
from .wire import Hello

__all__ = ["JoinResult", "join_or_start"]

log = logging.getLogger("pydevts.join")


@dataclass
class JoinResult:
    listener: Listener
    entry: Link | None  # None: this node started a new cluster


async def join_or_start(
    transport: Transport,
    *,
    cluster_address: Address,
    bind_host: str,
    port: int,
    make_hello: Callable[[Address], Hello],
    join_only: bool = False,
    plugins: Sequence[ConnectionPlugin] = (),
    handshake_timeout: float = 5.0,
    join_timeout: float = 10.0,
    keyring: Keyring | None = None,
) -> JoinResult:
    """Join through ``cluster_address`` or, if nothing answers, start a cluster there.

    ``make_hello`` builds this node's hello once its own listening address is
    known. Raises :class:`JoinError` if neither works within ``join_timeout``.
    """
    delay = 0.01
    with anyio.move_on_after(join_timeout):
        while True:
            try:
                conn = await transport.connect(cluster_address)
            except ConnectError as exc:
                if join_only:
                    raise JoinError(
                        f"nothing answers at cluster port {cluster_address} ({exc}) "
                        "and join-only mode forbids starting a new cluster"
                    ) from exc
                try:
                    listener = await transport.listen(Address(bind_host, cluster_address.port))
                except AddressInUseError:
                    if not exc.refused:
                        # Something is there and answered, but not as a node we can join
                        # (e.g. its TLS certificate is not trusted): retrying will not help.
                        raise JoinError(f"cannot join the cluster at {cluster_address}: {exc}") from exc
                    # Somebody bound it between our connect and our bind: join them.
                    log.debug("cluster port %s was just taken; joining it", cluster_address)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                return JoinResult(listener, None)
            try:
                listener = await transport.listen(Address(bind_host, port))
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await conn.aclose()
                raise
            try:
                link = await open_link(
                    conn,
                    make_hello(listener.address),
                    initiated=True,
                    plugins=plugins,
                    timeout=handshake_timeout,
                    keyring=keyring,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await listener.aclose()
                raise
            return JoinResult(listener, link)
    raise JoinError(f"could neither join nor start a cluster at {cluster_address} within {join_timeout:g} s")
