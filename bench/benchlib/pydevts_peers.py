"""pydevts peers: two nodes in a cluster of their own.

``recv`` starts the cluster on ``--port`` and says ``ready`` with its node id;
it counts ``ev`` events, answers ``echo`` requests, and reports when the
sender's ``end`` event arrives (events from one origin run in order, so
``end`` comes after every ``ev``). ``send`` and ``ping`` join through the same
port, wait until the receiver is a live member, then ``send`` N events or make
sequential ``request`` round trips. Results are printed before the nodes
leave, so a slow graceful leave does not count.

The nodes use the ``tcp`` transport unless ``args`` has a ``transport``
attribute (``bench/quic_compare.py`` passes ``--transport quic``), and form an
open cluster unless ``--keyring PATH`` is given (both nodes must get the same
file). Their member links are resumable (:mod:`pydevts.wire.session`: numbered
frames, a retransmit buffer, batched ACKs) unless ``--plain-links`` is given,
which sets ``pydevts.wire.session.ENABLED = False`` before the node is made: the
node then offers no sessions in its HELLO and its links are plain (both nodes
get the option, so neither side numbers frames). The receiver's result says
how many sessions it had at the first event (``sessions``: 1 for a resumable
link, 0 for plain); the sender and the requester say it once done.

The cost of the keyring handshake on a join (``benchlib/keyring_join.py``
starts two ``recv`` nodes, one open cluster and one with ``--keyring``):

``join``
    One new node joins the cluster on ``--port`` (with ``--keyring`` if given)
    and reports how long ``Node(...)`` took (``construct_ms``: reading the
    keyring, importing ``cryptography``) and the time from entering
    ``async with node`` to seeing ``--peer-id`` alive (``join_ms``); leaving
    is not timed. One join per process: a cold join.
``joins``
    In one process, after ``--warmup`` untimed pairs, ``--count`` pairs of
    joins: a node joins the open cluster (``--port``, ``--peer-id``), is seen
    alive, leaves; then one joins the keyring cluster (``--keyring-port``,
    ``--keyring-peer-id``, ``--keyring``) the same way (every other pair the
    keyring one first, so neither always comes second). Then as many pairs of
    client connections (``NodeClient``: a new connection and its handshake,
    HELLO only for the open cluster, AUTH x 3 then HELLO for the keyring one)
    to ``--address`` and ``--keyring-address``. Reports every sample (ms).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pydevts.wire.session
from pydevts import MemberEvent, Node
from pydevts.wire.keyring import Keyring

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, emit, ready, rtt_summary

JOIN_TIMEOUT = 15.0
HANDSHAKE_TIMEOUT = 5.0


def _transport(args: argparse.Namespace) -> str:
    """The transport to use: ``args.transport`` if the caller's parser has it, else ``tcp``."""
    return getattr(args, "transport", None) or "tcp"


def _keyring(args: argparse.Namespace) -> str | None:
    """The keyring file (``--keyring``), or None for an open cluster (also when the parser has none)."""
    return getattr(args, "keyring", None) or None


def _set_links(args: argparse.Namespace) -> None:
    """Resumable links (sessions), or plain ones with ``--plain-links``; call before making the node.

    The switch is process-wide and read at each handshake (also when the parser has no such option).
    """
    pydevts.wire.session.ENABLED = not getattr(args, "plain_links", False)


def _sessions(node: Node) -> int | None:
    """How many member sessions ``node`` keeps (a check that ``--plain-links`` took; private state)."""
    table = getattr(getattr(node, "_ctx", None), "sessions", None)
    sessions = getattr(table, "sessions", None)
    return len(sessions) if isinstance(sessions, dict) else None


async def recv(args: argparse.Namespace) -> None:
    _set_links(args)
    node = Node(args.port, transport=_transport(args), keyring=_keyring(args))
    counter = Counter()
    done = anyio.Event()
    sessions: int | None = None
    cpu_ns = [0, 0]  # process CPU time at the first event, and at ``end``

    @node.on("ev")
    async def ev(sender: str, payload: Any) -> None:
        nonlocal sessions
        if counter.count == 0:
            cpu_ns[0] = time.process_time_ns()
            sessions = _sessions(node)  # at the first event: a leave can overtake the last ones
        counter.add()

    @node.on("end")
    async def end(sender: str, payload: Any) -> None:
        cpu_ns[1] = time.process_time_ns()
        done.set()

    @node.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return payload

    async with node:
        ready(id=node.id, address=node.address)
        with anyio.move_on_after(args.deadline):
            await done.wait()
        # CPU time (all threads of the process) per event after the first, up to ``end``
        cpu_us = (cpu_ns[1] - cpu_ns[0]) / 1000 / (counter.count - 1) if counter.count > 1 else None
        emit("result", **counter.result(ended=done.is_set()), sessions=sessions, cpu_us_per_msg=cpu_us)


class _Joiner:
    """A node that joins through ``--port`` and can wait until the receiver is a live member."""

    def __init__(self, args: argparse.Namespace) -> None:
        _set_links(args)
        self.peer_id: str = args.peer_id
        self.node = Node(args.port, join_only=True, transport=_transport(args), keyring=_keyring(args))
        self._peer_seen = anyio.Event()
        self.node.on_lifecycle(self._on_member)

    async def _on_member(self, event: MemberEvent) -> None:
        if event.member.id == self.peer_id and event.member.alive:
            self._peer_seen.set()

    async def wait_for_peer(self) -> None:
        if any(m.id == self.peer_id and m.alive for m in self.node.members):
            return
        with anyio.fail_after(JOIN_TIMEOUT):
            await self._peer_seen.wait()


async def send(args: argparse.Namespace) -> None:
    joiner = _Joiner(args)
    node = joiner.node
    async with node:
        await joiner.wait_for_peer()
        clock = SendClock(args.seconds)
        cpu_ns = time.process_time_ns()
        sent = 0
        with anyio.fail_after(args.deadline):
            while sent < args.n:
                await node.send(args.peer_id, "ev", PAYLOAD)
                sent += 1
                if sent % CHECK_EVERY == 0 and clock.expired():
                    break
            cpu_ns = time.process_time_ns() - cpu_ns
            sessions = _sessions(node)
            await node.send(args.peer_id, "end", None)
        # CPU time (all threads of the process) per event sent (``send`` queues: the writer's
        # writes are in it, up to what was still queued when the loop ended)
        emit(
            "result",
            **clock.result(sent, args.n),
            sessions=sessions,
            cpu_us_per_msg=cpu_ns / 1000 / max(1, sent),
        )


async def ping(args: argparse.Namespace) -> None:
    joiner = _Joiner(args)
    node = joiner.node
    samples: list[int] = []
    cpu_ns = 0
    async with node:
        await joiner.wait_for_peer()
        with anyio.fail_after(args.deadline):
            for i in range(args.warmup + args.count):
                if i == args.warmup:
                    cpu_ns = time.process_time_ns()
                t0 = time.perf_counter_ns()
                await node.request(args.peer_id, "echo", PAYLOAD, timeout=5)
                if i >= args.warmup:
                    samples.append(time.perf_counter_ns() - t0)
            cpu_ns = time.process_time_ns() - cpu_ns
            sessions = _sessions(node)
            await node.send(args.peer_id, "end", None)
        # the client's CPU time per timed round trip (all threads of the process)
        emit(
            "result",
            **rtt_summary(samples),
            client_cpu_us=cpu_ns / 1000 / max(1, len(samples)),
            sessions=sessions,
        )


async def _join_once(
    port: int, peer_id: str, keyring: str | Keyring | None, registry: Any, deadline: float
) -> tuple[float, float]:
    """One node joins through ``port`` and leaves: (construct ms, join ms); leaving is not timed."""
    seen = anyio.Event()

    async def on_member(event: MemberEvent) -> None:
        if event.member.id == peer_id and event.member.alive:
            seen.set()

    t0 = time.perf_counter()
    node = Node(port, join_only=True, keyring=keyring, registry=registry)
    node.on_lifecycle(on_member)
    with anyio.fail_after(deadline):
        t1 = time.perf_counter()
        async with node:
            if not any(m.id == peer_id and m.alive for m in node.members):
                with anyio.fail_after(JOIN_TIMEOUT):
                    await seen.wait()
            t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


async def join(args: argparse.Namespace) -> Result:
    """A cold join: the first and only node this process makes.

    An open node then also times what a keyring node pays once per process,
    after the join so that it cannot change it: what ``Node(keyring=...)``
    does (``pydevts.wire.secure.require_cryptography()``: importing AES-GCM), then
    making a first AES-GCM key, which a keyring node does in its first
    handshake (OpenSSL loads the cipher then, unless something did before).
    """
    keyring = _keyring(args)
    construct_ms, join_ms = await _join_once(args.port, args.peer_id, keyring, None, args.deadline)
    result: Result = {"construct_ms": construct_ms, "join_ms": join_ms, "keyring": keyring is not None}
    if keyring is None:
        result |= _crypto_first_use()
    return result


def _crypto_first_use() -> Result:
    """``require_cryptography()``, then a first and a second AES-GCM key (ms), in a process new to them."""
    from pydevts.wire.secure import require_cryptography

    t0 = time.perf_counter()
    aesgcm = require_cryptography()
    t1 = time.perf_counter()
    aesgcm(os.urandom(32))
    t2 = time.perf_counter()
    aesgcm(os.urandom(32))
    t3 = time.perf_counter()
    return {
        "crypto_import_ms": (t1 - t0) * 1e3,
        "crypto_first_key_ms": (t2 - t1) * 1e3,
        "crypto_next_key_ms": (t3 - t2) * 1e3,
    }


async def _handshake_once(address: str, keyring: str | Keyring | None, registry: Any) -> float:
    """A client connection to ``address``: connect and handshake (ms); closing is not timed."""
    from pydevts.node.client import NodeClient

    client = NodeClient(address, keyring=keyring, registry=registry, timeout=HANDSHAKE_TIMEOUT)
    t0 = time.perf_counter()
    await client.__aenter__()
    dt = (time.perf_counter() - t0) * 1e3
    await client.__aexit__(None, None, None)
    return dt


async def joins(args: argparse.Namespace) -> Result:
    """Pairs of warm joins and of client handshakes, open and keyring, alternating (see the module doc)."""
    from pydevts.plugins import Registry

    registry = Registry()  # plugin discovery once, outside every timed part
    ring = Keyring.from_file(args.keyring)  # read once: the file is not what is measured
    samples: dict[str, list[float]] = {"join_open": [], "join_keyring": [], "hs_open": [], "hs_keyring": []}

    async def pairs(
        label: str, open_: Callable[[], Awaitable[float]], keyed: Callable[[], Awaitable[float]]
    ) -> None:
        for i in range(args.warmup + args.count):
            order = ((f"{label}_open", open_), (f"{label}_keyring", keyed))
            for key, run in order if i % 2 == 0 else order[::-1]:
                ms = await run()
                if i >= args.warmup:
                    samples[key].append(ms)

    async def join_open() -> float:
        return (await _join_once(args.port, args.peer_id, None, registry, args.deadline))[1]

    async def join_keyring() -> float:
        return (await _join_once(args.keyring_port, args.keyring_peer_id, ring, registry, args.deadline))[1]

    with anyio.fail_after(args.deadline):
        await pairs("join", join_open, join_keyring)
        await pairs(
            "hs",
            lambda: _handshake_once(args.address, None, registry),
            lambda: _handshake_once(args.keyring_address, ring, registry),
        )
    return samples


ROLES = {"recv": recv, "send": send, "ping": ping, "join": join, "joins": joins}
