"""Joining a cluster through its cluster port, its seeds or the members it knew, or starting one.

The rule, from the original README: try the cluster port; if nothing answers,
bind it and start a new cluster. Binding is the tie-breaker of a race: when
two nodes find the port free at the same moment, only one can bind it, and
the other goes back to joining through it — so a race never makes two
clusters. With ``join_only`` a node never starts a cluster: it fails instead.

Seeds (``Node(seeds=...)``, ``--join``) and the members a snapshot remembers
are more ways in. One *round* tries, in order, the cluster port, every seed,
then (at most :data:`MAX_REMEMBERED_TRIES` of) the remembered members; the
first that answers and completes the handshake is the entry. Only when none
answers does the node start a new cluster at the cluster port (or, join-only,
fail with every target's reason). ``retry_join`` repeats the rounds, with
backoff, until one answers instead of failing or timing out.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from ..errors import AddressInUseError, ConnectError, JoinError, PydevtsError
from ..protocols import Address, Connection, ConnectionPlugin, Listener, Transport
from ..wire.handshake import open_link
from ..wire.keyring import Keyring
from ..wire.link import Link
from ..wire.messages import Hello

__all__ = ["MAX_REMEMBERED_TRIES", "JoinResult", "Target", "join_or_start", "join_targets"]

log = logging.getLogger("pydevts.join")

MAX_REMEMBERED_TRIES = 16  # remembered members tried per round (a different sample each round)
RETRY_FIRST_DELAY = 0.1  # retry-join: the first pause between rounds, doubled up to...
RETRY_MAX_DELAY = 2.0  # ... this (jittered by ±20 %)

CLUSTER_PORT, SEED, REMEMBERED = "cluster port", "seed", "known member"


@dataclass(frozen=True)
class Target:
    address: Address
    kind: str  # CLUSTER_PORT, SEED or REMEMBERED

    def __str__(self) -> str:
        return f"{self.kind} {self.address}"


@dataclass
class JoinResult:
    listener: Listener
    entry: Link | None  # None: this node started a new cluster
    via: Target | None = None  # what the entry answered at


def join_targets(
    cluster_address: Address, seeds: Sequence[Address], remembered: Sequence[Address] = ()
) -> list[Target]:
    """The cluster port, then the seeds, then the remembered members; each address once."""
    targets = [Target(cluster_address, CLUSTER_PORT)]
    seen = {cluster_address}
    for kind, addresses in ((SEED, seeds), (REMEMBERED, remembered)):
        for address in addresses:
            if address not in seen:
                seen.add(address)
                targets.append(Target(address, kind))
    return targets


def _round(targets: list[Target]) -> list[Target]:
    fixed = [t for t in targets if t.kind != REMEMBERED]
    remembered = [t for t in targets if t.kind == REMEMBERED]
    if len(remembered) > MAX_REMEMBERED_TRIES:
        remembered = random.sample(remembered, MAX_REMEMBERED_TRIES)
    return fixed + remembered


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
    seeds: Sequence[Address] = (),
    remembered: Sequence[Address] = (),
    retry_join: bool = False,
) -> JoinResult:
    """Join through the cluster port, a seed or a remembered member; if none answers, start a cluster.

    ``make_hello`` builds this node's hello once its own listening address is
    known. Raises :class:`JoinError` if neither works within ``join_timeout``
    (no time limit with ``retry_join``), or at once when join-only and
    nothing answers (without ``retry_join``). A handshake refused by the
    cluster port or a seed (another cluster name, key, serializer...) fails
    at once with the reason; one refused by a remembered member (its address
    may have been reused) is logged and skipped.
    """
    targets = join_targets(cluster_address, seeds, remembered)
    race_delay, retry_delay = 0.01, RETRY_FIRST_DELAY
    told = False
    with anyio.move_on_after(math.inf if retry_join else join_timeout):
        while True:
            failures: list[str] = []
            cluster_error: ConnectError | None = None
            for target in _round(targets):
                try:
                    conn = await transport.connect(target.address)
                except ConnectError as exc:
                    failures.append(f"{target} ({exc})")
                    if target.kind == CLUSTER_PORT:
                        cluster_error = exc
                    continue
                joined = await _enter(
                    conn, target, transport, bind_host, port, make_hello, plugins, handshake_timeout, keyring
                )
                if joined is not None:
                    return joined
                failures.append(f"{target} (handshake failed)")
            if join_only:
                if not retry_join:
                    raise JoinError(_nothing_answers(failures, cluster_address, cluster_error))
                if not told:
                    log.info("nothing answers yet (%s); retrying until something does", "; ".join(failures))
                    told = True
                await anyio.sleep(retry_delay * random.uniform(0.8, 1.2))
                retry_delay = min(retry_delay * 2, RETRY_MAX_DELAY)
                continue
            try:
                listener = await transport.listen(Address(bind_host, cluster_address.port))
            except AddressInUseError:
                if cluster_error is not None and not cluster_error.refused:
                    # Something is there and answered, but not as a node we can join
                    # (e.g. its TLS certificate is not trusted): retrying will not help.
                    raise JoinError(
                        f"cannot join the cluster at {cluster_address}: {cluster_error}"
                    ) from cluster_error
                # Somebody bound it between our connect and our bind: join them.
                log.debug("cluster port %s was just taken; joining it", cluster_address)
                await anyio.sleep(race_delay)
                race_delay = min(race_delay * 2, 0.5)
                continue
            if len(targets) > 1:
                log.warning(
                    "no seed or known member answered (%s): starting a new cluster on cluster port %s",
                    "; ".join(f for f in failures if not f.startswith(CLUSTER_PORT)),
                    cluster_address,
                )
            return JoinResult(listener, None)
    raise JoinError(f"could neither join nor start a cluster at {cluster_address} within {join_timeout:g} s")


def _nothing_answers(
    failures: list[str], cluster_address: Address, cluster_error: ConnectError | None
) -> str:
    first = f"nothing answers at cluster port {cluster_address}"
    if cluster_error is not None:
        first += f" ({cluster_error})"
    others = [f for f in failures if not f.startswith(CLUSTER_PORT)]
    if others:
        first += f", nor at {'; '.join(others)}"
    return f"{first} and join-only mode forbids starting a new cluster (--retry-join keeps trying)"


async def _enter(
    conn: Connection,
    target: Target,
    transport: Transport,
    bind_host: str,
    port: int,
    make_hello: Callable[[Address], Hello],
    plugins: Sequence[ConnectionPlugin],
    handshake_timeout: float,
    keyring: Keyring | None,
) -> JoinResult | None:
    """Bind our listener and handshake over ``conn``; None if a remembered member refused (skipped)."""
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
    except PydevtsError as exc:
        with anyio.CancelScope(shield=True):
            await listener.aclose()
        if target.kind != REMEMBERED:
            raise
        log.warning("skipping %s: %s", target, exc)
        return None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await listener.aclose()
        raise
    return JoinResult(listener, link, target)
