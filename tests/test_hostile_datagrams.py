"""Issue 10's attacks, fired at real nodes: one datagram or one CLI request must not hurt a cluster.

Three in-process nodes (TCP, real loopback sockets) take the crash datagrams
of the issue on their UDP ports from a plain socket: a NUL in an address, a
4,300-digit incarnation, spoofed ``left``/``failed`` about a live member, 400
invented members pointing at a victim address; then a client request nesting
``pydevts.emit``, reserved and malformed event names from a raw member. After
each: every node is up, every member alive in every view, events flow.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from inproc import (
    RawPeer,
    alive_ids,
    cluster,
    free_port,
    pydevts_warnings,
    wait_for_mesh,
    wait_stalled,
    wait_until,
)
from pydevts import Node
from pydevts.errors import NoHandlerError, RemoteHandlerError
from pydevts.node.client import NodeClient
from pydevts.wire import encode_event

pytestmark = pytest.mark.anyio

U64_MAX = 2**64 - 1


class Got:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []


def make_node(port: int, node_id: str, got: Got, **options: Any) -> Node:
    node = Node(port, node_id=node_id, **options)

    @node.on("greet")
    async def greet(sender: str, payload: Any) -> None:
        got.events.append((node_id, sender, payload))

    @node.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return [node_id, payload]

    return node


@asynccontextmanager
async def three(caplog: pytest.LogCaptureFixture, **options: Any) -> AsyncIterator[tuple[list[Node], Got]]:
    caplog.set_level(logging.INFO, logger="pydevts")
    port, got = free_port(), Got()
    nodes = [make_node(port, n, got, **options) for n in ("a", "b", "c")]
    async with cluster(*nodes, timeout=15):
        yield nodes, got


def udp(node: Node, *datagrams: bytes, prefix: bytes = b"") -> None:
    """Send ``datagrams`` to ``node``'s UDP port from a plain socket."""
    host, port = node.address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(prefix + data, (host, int(port)))


def swim_datagram(message: Any, sender: str = "c", cluster: str = "default") -> bytes:
    return json.dumps({"c": cluster, "f": sender, "m": message}).encode()


def liveness(node: Node) -> Any:
    return node.plugin("peer").detector


def swim_stats(node: Node) -> dict[str, int]:
    stats: dict[str, int] = liveness(node).statistics()
    return stats


async def assert_healthy(nodes: list[Node], got: Got, tag: str) -> None:
    """Every node up, everyone alive in every view (waiting for refutations), events and requests flow."""
    await wait_for_mesh(nodes, timeout=10)
    # a refuted left/failed made the routers drop links for a moment: wait until they are back
    await wait_until(
        lambda: all(set(n._ctx.router.links) == {m.id for m in nodes} - {n.id} for n in nodes),  # type: ignore[attr-defined]
        10,
        "every link back",
    )
    # ...and settled: a duplicate link may still replace one, and a frame on a replaced link is
    # lost (issue 11, links that resume without loss), which is not what this test is about
    await wait_stalled(lambda: [tuple(map(id, n._ctx.router.links.values())) for n in nodes], quiet=0.5)  # type: ignore[attr-defined]
    for node in nodes:
        for member in node.members:
            assert 0 <= member.incarnation <= U64_MAX
    got.events.clear()
    await nodes[0].emit("greet", tag)
    await nodes[1].send("c", "greet", tag)
    await wait_until(lambda: len(got.events) == 3, 5, f"3 deliveries of {tag!r} (have {got.events})")
    assert sorted(got.events) == [("b", "a", tag), ("c", "a", tag), ("c", "b", tag)]
    assert await nodes[2].request("a", "echo", tag, timeout=5) == ["a", tag]
    for node in nodes:  # `pydevts members` (a client request) still encodes every record
        async with NodeClient(node.address) as client:
            assert {m.id for m in await client.members() if m.alive} == {"a", "b", "c"}


NUL = "127.0.0.1\x00:7000"
CRASHERS = [
    ("nul-alive", {"t": "gossip", "u": [["alive", "evil", NUL, 1, {}]]}),
    ("nul-suspect", {"t": "gossip", "u": [["suspect", "b", NUL, 0, None]]}),
    ("nul-ping", {"t": "ping", "seq": 1, "addr": NUL}),
    ("nul-ping-req", {"t": "ping-req", "seq": 1, "target": "evil", "addr": NUL}),
    ("huge-incarnation", {"t": "gossip", "u": [["suspect", "b", "127.0.0.1:1", 10**4299, None]]}),
    ("huge-seq", {"t": "ping", "seq": 10**4299}),
    ("bool-incarnation", {"t": "gossip", "u": [["alive", "evil", "127.0.0.1:1", True, {}]]}),
]


async def test_crash_datagrams_stop_no_node(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(40):
        async with three(caplog) as (nodes, got):
            for node in nodes:
                udp(node, *(swim_datagram(m) for _, m in CRASHERS))
                udp(node, swim_datagram({"t": "ping", "seq": 1}, sender="evil\x00"), b"[" * 50_000, b"\xff")
            for node in nodes:
                await wait_until(
                    lambda node=node: swim_stats(node)["swim_bad_datagrams"] == len(CRASHERS) + 3,  # type: ignore[misc]
                    5,
                    f"{node.id} to drop every crash datagram",
                )
                assert swim_stats(node)["swim_datagram_errors"] == 0
            await assert_healthy(nodes, got, "after crashers")
            assert all("evil" not in {m.id for m in n.members} for n in nodes)
            assert len([w for w in pydevts_warnings(caplog.records) if "SWIM datagram" in w]) <= 3 * 10


async def test_spoofed_left_and_failed_about_a_live_member_are_refuted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(60):
        async with three(caplog) as (nodes, got):
            a, b, c = nodes
            b_address = b.address
            # left at a large incarnation, "from c", told to a only: it used to stick for 24 h
            udp(a, swim_datagram({"t": "gossip", "u": [["left", "b", b_address, 2**63, None]]}))
            await wait_until(lambda: liveness(b).swim.incarnation == 2**63 + 1, 5, "b to refute the left")
            await assert_healthy(nodes, got, "after a spoofed left")
            # sustained failed, each just above b's last refutation, for a second
            for i in range(20):
                inc = liveness(b).swim.incarnation
                udp(
                    a if i % 2 else c,
                    swim_datagram({"t": "gossip", "u": [["failed", "b", b_address, inc, None]]}),
                )
                await anyio.sleep(0.05)
            await assert_healthy(nodes, got, "after sustained spoofed failed")
            assert all(n.members[1].incarnation == liveness(b).swim.incarnation for n in (a, c))


async def test_four_hundred_invented_members_are_not_reflected(caplog: pytest.LogCaptureFixture) -> None:
    victim_port = free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim_udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as victim_tcp,
    ):
        victim_udp.bind(("127.0.0.1", victim_port))
        victim_udp.setblocking(False)
        victim_tcp.bind(("127.0.0.1", victim_port))
        victim_tcp.listen(512)
        victim_tcp.setblocking(False)
        victim = f"127.0.0.1:{victim_port}"
        updates = [["alive", f"evil{i}", victim, 1, {}] for i in range(400)]
        with anyio.fail_after(60):
            async with three(caplog) as (nodes, got):
                for node in nodes:
                    # the two datagrams (200 members each: over the limit per datagram) ...
                    udp(node, *(swim_datagram({"t": "gossip", "u": updates[i : i + 200]}) for i in (0, 200)))
                    # ... and the same 400 members in datagrams of 50
                    udp(
                        node,
                        *(
                            swim_datagram({"t": "gossip", "u": updates[i : i + 50]})
                            for i in range(0, 400, 50)
                        ),
                    )
                await anyio.sleep(4.0)  # probe rounds, suspicions, failures of the invented members
                received = connects = 0
                while True:
                    try:
                        victim_udp.recv(65536)
                        received += 1
                    except BlockingIOError:
                        break
                while True:
                    try:
                        victim_tcp.accept()[0].close()
                        connects += 1
                    except BlockingIOError:
                        break
                # before: >200,000 datagrams and TCP connects; now a few per probe round and node
                assert connects == 0
                assert received <= 3 * (4 * 2 + 2 * 200), received
                for node in nodes:
                    stats = swim_stats(node)
                    assert stats["swim_bad_datagrams"] == 2
                    assert stats["swim_new_members_rate_limited"] > 0
                    assert not any(m.id.startswith("evil") for m in node.members)
                await assert_healthy(nodes, got, "after 400 invented members")


async def test_a_bug_while_handling_a_datagram_costs_only_that_datagram(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(40):
        async with three(caplog) as (nodes, got):
            swim = liveness(nodes[0]).swim
            real = swim.receive

            def receive(sender: str, message: Any, now: float) -> Any:
                if isinstance(message, dict) and message.get("t") == "boom":
                    raise RuntimeError("a bug in the failure detector")
                return real(sender, message, now)

            monkeypatch.setattr(swim, "receive", receive)
            udp(nodes[0], *[swim_datagram({"t": "boom"})] * 50)
            await wait_until(
                lambda: swim_stats(nodes[0])["swim_datagram_errors"] == 50, 5, "50 errors counted"
            )
            tracebacks = [r for r in caplog.records if r.name == "pydevts.swim" and r.exc_info]
            assert 1 <= len(tracebacks) <= 10
            await assert_healthy(nodes, got, "after internal errors")


@pytest.mark.parametrize("transport", ["quic"])
async def test_the_nul_datagram_on_quics_shared_socket(
    caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    pytest.importorskip("pydevts_quic")
    with anyio.fail_after(60):
        async with three(caplog, transport=transport) as (nodes, got):
            for node in nodes:
                udp(node, *(swim_datagram(m) for _, m in CRASHERS), prefix=b"\x00")
            for node in nodes:
                await wait_until(
                    lambda node=node: swim_stats(node)["swim_bad_datagrams"] >= len(CRASHERS),  # type: ignore[misc]
                    5,
                    f"{node.id} to drop every crash datagram",
                )
            await wait_for_mesh(nodes, timeout=10)
            got.events.clear()
            await nodes[0].emit("greet", "quic")
            await wait_until(lambda: len(got.events) == 2, 5, "2 deliveries over QUIC")


# ------------------------------------------------------------------ event receipt


NESTED = {
    "name": "pydevts.emit",
    "payload": {"name": "pydevts.emit", "payload": {"name": "greet", "payload": "x"}},
}


async def test_nested_pydevts_emit_from_a_client_is_refused_and_events_still_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(40):
        async with three(caplog) as (nodes, got):
            a, b, c = nodes
            async with NodeClient(a.address) as client:
                with pytest.raises(RemoteHandlerError, match="reserved") as refused:
                    await client.emit("pydevts.emit", NESTED)
                assert refused.value.remote_type == "PermissionError"
                with pytest.raises(NoHandlerError, match="reserved"):
                    await client.request("pydevts.nope", None)
                assert await client.emit("greet", "via client") == ["a", "b", "c"]
            await wait_until(lambda: len(got.events) == 3, 5, "the client's event everywhere")
            assert {(n, p) for n, _, p in got.events} == {(n, "via client") for n in "abc"}
            # a member's EVENT with a reserved name is refused on receipt (it used to run the handler inline)
            await b.emit("pydevts.emit", NESTED)
            await wait_until(
                lambda: all(n.statistics()["reserved_refused"] >= 1 for n in (a, c)), 5, "the event refused"
            )
            # and a member may not have another node emit for it
            with pytest.raises(RemoteHandlerError, match="clients"):
                await b.request("a", "pydevts.emit", {"name": "greet", "payload": "relayed"}, timeout=5)
            await assert_healthy(nodes, got, "after nested emits")
            assert not any(p == "x" or p == "relayed" for _, _, p in got.events)


async def test_bad_and_reserved_event_names_are_counted_with_rate_limited_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(40):
        async with three(caplog) as (nodes, got):
            a = nodes[0]
            async with RawPeer.connect(a.cluster_address.port) as raw:
                await raw.handshake("zz-raw")
                await wait_until(lambda: "zz-raw" in alive_ids(a), 5, "the raw member")
                bad = b"\x01\x02\xff\xfe"  # an EVENT whose name is not UTF-8
                reserved = encode_event("pydevts.emit", b"\xc0")
                for _ in range(10):
                    await raw.send_frames(*[bad] * 1000, *[reserved] * 100)
                await wait_until(
                    lambda: (
                        a.statistics()["bad_frames"] == 10_000 and a.statistics()["reserved_refused"] == 1000
                    ),
                    10,
                    "every frame counted",
                )
            warnings = pydevts_warnings(caplog.records)
            assert len([w for w in warnings if "not UTF-8" in w]) <= 10
            assert len([w for w in warnings if "reserved" in w]) <= 10
            await assert_healthy(nodes, got, "after bad event names")
