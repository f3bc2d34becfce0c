"""pydevts peers: two nodes in a cluster of their own.

``recv`` starts the cluster on ``--port`` and says ``ready`` with its node id;
it counts ``ev`` events, answers ``echo`` requests, and reports when the
sender's ``end`` event arrives (events from one origin run in order, so
``end`` comes after every ``ev``). ``send`` and ``ping`` join through the same
port, wait until the receiver is a live member, then ``send`` N events or make
sequential ``request`` round trips. Results are printed before the nodes
leave, so a slow graceful leave does not count.

The nodes use the ``tcp`` transport unless ``args`` has a ``transport``
attribute (``bench/quic_compare.py`` passes ``--transport quic``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
from pydevts import MemberEvent, Node

from .common import CHECK_EVERY, PAYLOAD, Counter, SendClock, emit, ready, rtt_summary

JOIN_TIMEOUT = 15.0


def _transport(args: argparse.Namespace) -> str:
    """The transport to use: ``args.transport`` if the caller's parser has it, else ``tcp``."""
    return getattr(args, "transport", None) or "tcp"


async def recv(args: argparse.Namespace) -> None:
    node = Node(args.port, transport=_transport(args))
    counter = Counter()
    done = anyio.Event()

    @node.on("ev")
    async def ev(sender: str, payload: Any) -> None:
        counter.add()

    @node.on("end")
    async def end(sender: str, payload: Any) -> None:
        done.set()

    @node.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return payload

    async with node:
        ready(id=node.id, address=node.address)
        with anyio.move_on_after(args.deadline):
            await done.wait()
        emit("result", **counter.result(ended=done.is_set()))


class _Joiner:
    """A node that joins through ``--port`` and can wait until the receiver is a live member."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.peer_id: str = args.peer_id
        self.node = Node(args.port, join_only=True, transport=_transport(args))
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
        sent = 0
        with anyio.fail_after(args.deadline):
            while sent < args.n:
                await node.send(args.peer_id, "ev", PAYLOAD)
                sent += 1
                if sent % CHECK_EVERY == 0 and clock.expired():
                    break
            await node.send(args.peer_id, "end", None)
        emit("result", **clock.result(sent, args.n))


async def ping(args: argparse.Namespace) -> None:
    joiner = _Joiner(args)
    node = joiner.node
    samples: list[int] = []
    async with node:
        await joiner.wait_for_peer()
        with anyio.fail_after(args.deadline):
            for i in range(args.warmup + args.count):
                t0 = time.perf_counter_ns()
                await node.request(args.peer_id, "echo", PAYLOAD, timeout=5)
                if i >= args.warmup:
                    samples.append(time.perf_counter_ns() - t0)
            await node.send(args.peer_id, "end", None)
        emit("result", **rtt_summary(samples))


ROLES = {"recv": recv, "send": send, "ping": ping}
