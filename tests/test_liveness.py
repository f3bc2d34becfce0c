"""Failure-detector behaviour that needs no extra processes (in-process nodes, real sockets)."""

from __future__ import annotations

import json
import socket

import anyio
import pytest
from inproc import alive_ids, cluster, free_port, wait_until
from pydevts import MemberEvent, Node

pytestmark = pytest.mark.anyio


async def test_a_transient_link_drop_reconnects_and_is_not_a_failure() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    events: list[tuple[str, str]] = []

    @a.on_lifecycle
    async def record(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    got: list[int] = []

    @b.on("n")
    async def n(sender: str, payload: int) -> None:
        got.append(payload)

    with anyio.fail_after(20):
        async with cluster(a, b):
            router = a._ctx.router  # type: ignore[attr-defined]
            old = router.links["b"]
            await old.conn.aclose()  # cut the TCP connection under both nodes' feet
            await wait_until(lambda: router.links.get("b") not in (None, old), 5, "a new link to b")
            # Both ends redial at once and the duplicate-link rule may still replace the new link:
            # a frame sent on the replaced one goes out again on the one kept (pydevts.wire.session).
            await a.send("b", "n", 1)
            await wait_until(lambda: got == [1], 5, "delivery over the new link")
            await anyio.sleep(2.5)  # longer than the suspicion timeout: no failure may appear
            assert ("failed", "b") not in events
            assert alive_ids(a) == {"a", "b"}


async def test_datagrams_of_another_cluster_or_garbage_are_dropped() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    with anyio.fail_after(20):
        async with cluster(a, b):
            liveness = a.plugin("peer").detector
            host, udp_port = a.address.rsplit(":", 1)
            foreign = {
                "c": "other",
                "f": "b",
                "m": {"t": "gossip", "u": [["failed", "b", b.address, 99**9, None]]},
            }
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(json.dumps(foreign).encode(), (host, int(udp_port)))
                s.sendto(b"\xff not json", (host, int(udp_port)))
                s.sendto(
                    json.dumps({"c": "default", "f": "b", "m": {"t": "nope"}}).encode(), (host, int(udp_port))
                )
            await wait_until(lambda: liveness.bad_datagrams >= 3, 5, "the datagrams to be refused")
            assert alive_ids(a) == {"a", "b"}  # the foreign "failed" was not believed


async def test_events_sent_before_a_graceful_leave_all_arrive() -> None:
    """The leave (sent over UDP too) may overtake the data still on the TCP link: nothing
    the leaving node sent may be dropped because of it."""
    port = free_port()
    b = Node(port, node_id="b")
    got: list[int] = []

    @b.on("n")
    async def n(sender: str, payload: list[object]) -> None:
        got.append(payload[0])  # type: ignore[arg-type]
        if len(got) % 200 == 0:
            await anyio.sleep(0.002)  # a handler that is slower than the sender: the inbox fills

    total = 10_000
    pad = bytes(2048)
    with anyio.fail_after(30):
        async with b:
            a = Node(port, node_id="a", join_only=True)
            async with a:
                await wait_until(lambda: "b" in alive_ids(a), 5, "a to see b")
                for i in range(total):
                    await a.send("b", "n", [i, pad])
            # a has left; everything it sent must still be handled, in order
            await wait_until(lambda: len(got) == total, 20, f"{total} events (have {len(got)})")
            assert got == list(range(total))
            assert b.statistics()["dropped_after_leave"] == 0
