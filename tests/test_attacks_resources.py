"""Resource attacks on a real cluster of three processes (open mode): what a peer may cost a node.

(a) a client pipelines 50,000 requests and never reads a reply: other clients
    and members are still answered, and the node's memory comes back;
(b) 1,100 client connections held open (nodes under the common default of
    1,024 open files, from 100 loopback addresses): a new node still joins,
    and letting them go prints no traceback;
(c) 100 clients stalled inside a 1 MiB frame after the handshake (one
    loopback address each): memory bounded by what they sent, and each
    connection closed;
(d) 5,000 QUIC Initial packets (real ones, built by aioquic's client) at a
    QUIC node: memory bounded and given back, the cluster unharmed.

The attacker is the test process; loopback has every 127.0.0.0/8 address, so
it can come from many addresses, as a botnet would. Figures are printed
(``pytest -rP``).
"""

from __future__ import annotations

import resource
import shutil
import struct
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import msgpack
import pytest
from agents import AgentProcess
from attackkit import CLUSTER_NAME, Cluster, handshaken, rss_mib, three_nodes
from inproc import RawPeer
from pydevts.errors import PydevtsError
from pydevts.node.client import NodeClient
from pydevts.wire import HELLO, REFUSE, Hello, encode_request

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

RSS_SLACK_MIB = 30.0
MIB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives processes; the nodes run their own event loops


def report(what: str, text: str) -> None:
    print(f"[resources] {what}: {text}")


class RssWatch:
    """Samples every node's RSS until cancelled; keeps each one's peak (MiB)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: rss_mib(pid) for name, pid in pids.items()}

    async def run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_mib(pid))
                except (OSError, LookupError):
                    pass
            await anyio.sleep(0.05)

    def rounded(self) -> dict[str, float]:
        return {n: round(v, 1) for n, v in self.peak.items()}


def pids(cluster: Cluster) -> dict[str, int]:
    return {p.name: cluster.pid(p) for p in cluster.procs}


async def others_answered(cluster: Cluster) -> float:
    """A new client of a and the members (requests to a) are served; seconds it took."""
    a, b, c = cluster.procs[:3]
    start = time.monotonic()
    with anyio.fail_after(10):
        async with NodeClient(cluster.address(a), cluster=CLUSTER_NAME, timeout=5) as client:
            members = await client.members()
    assert {m.id for m in members if m.alive} == {"a", "b", "c"}, members
    for asker in (b, c):
        reply = await asker.call(op="request", to="a", name="ping", payload="still there?", timeout=6)
        assert reply["ok"] and reply["value"] == {"echo": "still there?", "by": "a"}, reply
    return time.monotonic() - start


async def raw_client(
    port: int, source: str, node_id: str, timeout: float = 10.0
) -> tuple[RawPeer, bytes | None]:
    """A TCP connection from ``source`` that sends a client HELLO; the node's first frame (None: closed)."""
    stream = await anyio.connect_tcp("127.0.0.1", port, local_host=source)
    peer = RawPeer(stream)
    hello = Hello(
        cluster=CLUSTER_NAME, node_id=node_id, address="0.0.0.0:0", serializer="msgpack", role="client"
    )
    try:
        await peer.send_frames(hello.to_frame())
        with anyio.move_on_after(timeout):
            return peer, await peer.receive_frame()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return peer, None
    return peer, b"timeout"


def sources(n: int, start: int = 2) -> list[str]:
    """``n`` distinct loopback addresses other than 127.0.0.1 (the nodes' own)."""
    return [f"127.0.{(start + i) // 250}.{(start + i) % 250 + 1}" for i in range(n)]


# ------------------------------------------------------------------ (a) a client that never reads


async def test_a_a_client_pipelining_50000_requests_without_reading_starves_nobody(tmp_path: Path) -> None:
    with anyio.fail_after(100):
        async with three_nodes(tmp_path, "open") as cluster, anyio.create_task_group() as tg:
            a = cluster.procs[0]
            await cluster.assert_flowing("warm-up")
            baseline = cluster.record_baseline()
            watch = RssWatch(pids(cluster))
            tg.start_soon(watch.run)
            sent = [0]
            cut: list[str] = []
            done = anyio.Event()
            started = time.monotonic()
            async with handshaken(cluster.address(a), node_id="greedy") as (conn, _):
                nil = msgpack.packb(None)

                async def flood() -> None:
                    try:
                        with anyio.move_on_after(20):
                            for first in range(1, 50_001, 1000):
                                await conn.send_frames(
                                    [
                                        encode_request(i, "pydevts.members", nil)
                                        for i in range(first, first + 1000)
                                    ]
                                )
                                sent[0] = first + 999
                    except PydevtsError as exc:
                        cut.append(f"{exc} after {time.monotonic() - started:.1f} s")
                    finally:
                        done.set()

                tg.start_soon(flood)
                await anyio.sleep(2.0)
                during = await others_answered(cluster)
                with anyio.move_on_after(25):
                    await done.wait()
                flood_time = time.monotonic() - started
                await anyio.sleep(1.0)
                after = await others_answered(cluster)
                recovered = await cluster.assert_healthy("after-greedy-client")
                with anyio.move_on_after(10):  # reported only: does a cut the client that does not read?
                    while not (cut_line := [line for line in a.log if "closing link with client:" in line]):
                        await anyio.sleep(0.1)
                    cut.append(f"a: {cut_line[0].split(': ', 1)[-1]} ({time.monotonic() - started:.1f} s)")
            rss = await cluster.wait_rss_back(RSS_SLACK_MIB, 20)
            tg.cancel_scope.cancel()
    report(
        "(a) 50,000 pipelined requests, replies never read",
        f"{sent[0]} requests written in {flood_time:.1f} s"
        f"; cut: {cut or 'not within 10 s after the checks'}; a new client and the members were "
        f"answered in {during:.2f} s during the flood and {after:.2f} s after; healthy in {recovered:.2f} s; "
        f"RSS MiB {baseline}, peak {watch.rounded()}, after {rss}",
    )


# ------------------------------------------------------------------ (b) held client connections


def nofile_1024() -> list[str]:
    """``prlimit`` to run a node under a soft limit of 1,024 open files (the usual default)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(max(hard, 1024))
    return [prlimit, f"--nofile=1024:{hard_text}", "--"]


async def test_b_1100_held_client_connections_leave_room_for_a_new_member(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    wrap = nofile_1024()
    held: list[RawPeer] = []
    outcomes = {"served": 0, "refused": 0, "closed": 0, "timeout": 0, "connect failed": 0}
    reasons: set[str] = set()
    with anyio.fail_after(110):
        async with three_nodes(tmp_path, "open", wrap=wrap) as cluster, anyio.create_task_group() as tg:
            a = cluster.procs[0]
            await cluster.assert_flowing("warm-up")
            baseline = cluster.record_baseline()
            marks = {p.name: len(p.log) for p in cluster.procs}

            async def hold(source: str, i: int) -> None:
                try:
                    peer, first = await raw_client(cluster.port_of(a), source, f"held-{i}", timeout=6)
                except OSError:
                    outcomes["connect failed"] += 1
                    return
                held.append(peer)
                if first is None:
                    outcomes["closed"] += 1
                elif first == b"timeout":
                    outcomes["timeout"] += 1
                elif first[0] == HELLO:
                    outcomes["served"] += 1
                elif first[0] == REFUSE:
                    outcomes["refused"] += 1
                    reasons.add(first[1:].decode(errors="replace")[:120])

            started = time.monotonic()
            addresses = sources(100)
            for batch in range(0, 1100, 275):
                async with anyio.create_task_group() as connecting:
                    for i in range(batch, batch + 275):
                        connecting.start_soon(hold, addresses[i % 100], i)
            connect_time = time.monotonic() - started
            # a client of the cluster from an address of its own, while they are held (reported only)
            try:
                with anyio.fail_after(10):
                    async with NodeClient(cluster.address(a), cluster=CLUSTER_NAME, timeout=5) as client:
                        await client.members()
                legit_client = "served"
            except (PydevtsError, TimeoutError) as exc:
                legit_client = f"not served: {exc}"
            # a new member joins through a while the connections are held
            d = AgentProcess("d", [str(cluster.port), "--id", "d", *cluster.node_options(), "--join-only"])
            d.argv = [*wrap, *d.argv]
            joined_in = -1.0
            try:
                start = time.monotonic()
                await d.start(tg)
                await d.wait_for(lambda e: e.get("ev") in ("started", "error"), 20, "d's start or error")
                assert any(e.get("ev") == "started" for e in d.events), f"d could not join: {d.events[-3:]}"
                cluster.procs.append(d)
                await cluster.wait_all_alive(20)
                joined_in = time.monotonic() - start
                await cluster.assert_flowing("with-d")
                peak = cluster.rss()
                # let them all go at once
                marks["d"] = 0
                release = {p.name: len(p.log) for p in cluster.procs}
                for peer in held:
                    await peer.stream.aclose()
                held.clear()
                await anyio.sleep(2.0)
                tracebacks = {
                    p.name: [
                        line for line in p.log[release[p.name] :] if "Traceback" in line or "ERROR" in line
                    ]
                    for p in cluster.procs
                }
                recovered = await cluster.assert_healthy("after-release")
                logged = {p.name: len(p.log) - marks[p.name] for p in cluster.procs}
            finally:
                with anyio.CancelScope(shield=True):
                    for peer in held:
                        await peer.stream.aclose()
                    await d.stop(timeout=5)
            tg.cancel_scope.cancel()
    report(
        "(b) 1,100 held client connections",
        f"from 100 addresses in {connect_time:.1f} s: {outcomes}; refusals: {sorted(reasons)}; "
        f"another client meanwhile: {legit_client}; node d joined in {joined_in:.2f} s; "
        f"after release healthy in {recovered:.2f} s; stderr lines {logged}; "
        f"RSS MiB {baseline}, with them held {peak}",
    )
    assert not any(tracebacks.values()), f"tracebacks or errors after the release: {tracebacks}"


# ------------------------------------------------------------------ (c) stalled inside a frame


async def test_c_100_clients_stalled_inside_a_1mib_frame_are_bounded_and_closed(tmp_path: Path) -> None:
    size = MIB  # the default max_frame_size: the largest frame a node accepts
    body = b"\x02" + b"s" * (size - 2)  # a REQUEST frame's first size - 1 bytes: one byte short
    peers: list[RawPeer] = []
    served: list[RawPeer] = []
    closed_after: list[float] = []
    with anyio.fail_after(110):
        async with three_nodes(tmp_path, "open") as cluster, anyio.create_task_group() as tg:
            a = cluster.procs[0]
            await cluster.assert_flowing("warm-up")
            baseline = cluster.record_baseline()
            watch = RssWatch(pids(cluster))
            tg.start_soon(watch.run)
            refused: list[str] = []
            try:

                async def stall(source: str, i: int) -> None:
                    peer, first = await raw_client(cluster.port_of(a), source, f"stalled-{i}")
                    peers.append(peer)
                    if first is None or first[0] != HELLO:
                        refused.append(repr(first[:100] if first else first))
                        return
                    served.append(peer)
                    with anyio.move_on_after(15):
                        await peer.send_raw(struct.pack(">I", size) + body)

                addresses = sources(100)
                for batch in range(
                    0, 100, 25
                ):  # 25 handshakes at a time: under the limit on those in progress
                    async with anyio.create_task_group() as connecting:
                        for i in range(batch, batch + 25):
                            connecting.start_soon(stall, addresses[i], i)
                sent_at = time.monotonic()
                sent_mib = len(served) * len(body) / MIB

                async def wait_closed(peer: RawPeer) -> None:
                    with anyio.move_on_after(30):
                        while await peer.receive_frame() is not None:
                            pass
                        closed_after.append(time.monotonic() - sent_at)

                async with anyio.create_task_group() as waiting:
                    for peer in served:
                        waiting.start_soon(wait_closed, peer)
                    await anyio.sleep(1.0)
                    during = await others_answered(cluster)
            finally:
                with anyio.CancelScope(shield=True):
                    for peer in peers:
                        await peer.stream.aclose()
            recovered = await cluster.assert_healthy("after-stalled-frames")
            back, rss = await cluster.rss_settled(RSS_SLACK_MIB, 20)
            tg.cancel_scope.cancel()
    growth = watch.peak["a"] - baseline["a"]
    report(
        "(c) 100 clients stalled inside a 1 MiB frame",
        f"{len(served)} served ({len(refused)} refused: {refused[:3]}), {sent_mib:.0f} MiB sent; "
        f"{len(closed_after)} closed by the node, after {min(closed_after, default=-1):.1f} to "
        f"{max(closed_after, default=-1):.1f} s; others answered in {during:.2f} s meanwhile; healthy in "
        f"{recovered:.2f} s; RSS MiB {baseline}, peak {watch.rounded()} (a: +{growth:.0f}), after {rss}",
    )
    assert len(closed_after) == len(served), (
        f"only {len(closed_after)} of {len(served)} stalled connections were closed within 30 s"
    )
    assert growth <= 1.25 * sent_mib + RSS_SLACK_MIB, (
        f"a's RSS grew by {growth:.0f} MiB for {sent_mib:.0f} MiB of stalled frames (bound: 1.25 x + 30 MiB)"
    )
    assert back, (
        f"RSS (MiB) not back within {RSS_SLACK_MIB:g} MiB of the baseline 20 s after the stalled clients "
        f"were closed: baseline {baseline}, peak {watch.rounded()}, now {rss}"
    )


# ------------------------------------------------------------------ (d) QUIC Initials


def quic_initials(n: int, port: int) -> list[bytes]:
    """``n`` real QUIC Initial packets (a fresh connection each: ClientHello, new connection IDs)."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from pydevts_quic.transport import ALPN

    packets: list[bytes] = []
    for _ in range(n):
        quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=[ALPN]))
        now = time.monotonic()
        quic.connect(("127.0.0.1", port), now=now)
        packets.extend(data for data, _ in quic.datagrams_to_send(now=now))
    return packets


@asynccontextmanager
async def udp_senders(addresses: Sequence[str]) -> AsyncIterator[list[anyio.abc.UDPSocket]]:
    async with AsyncExitStack() as stack:
        socks = [
            await stack.enter_async_context(await anyio.create_udp_socket(local_host=host))
            for host in addresses
        ]
        yield socks


async def test_d_5000_quic_initials_cost_bounded_memory_given_back(tmp_path: Path) -> None:
    pytest.importorskip("pydevts_quic")
    pytest.importorskip("aioquic")
    with anyio.fail_after(110):
        async with (
            three_nodes(tmp_path, "open", extra=["--transport", "quic"]) as cluster,
            anyio.create_task_group() as tg,
        ):
            a = cluster.procs[0]
            await cluster.assert_flowing("warm-up")
            baseline = cluster.record_baseline()
            watch = RssWatch(pids(cluster))
            tg.start_soon(watch.run)
            built = time.monotonic()
            packets = await anyio.to_thread.run_sync(quic_initials, 5000, cluster.port_of(a))
            built = time.monotonic() - built
            started = time.monotonic()
            answers = 0
            async with udp_senders(sources(50)) as socks:
                for i, packet in enumerate(packets):  # 1,000 a second from 50 addresses
                    await socks[i % len(socks)].sendto(packet, "127.0.0.1", cluster.port_of(a))
                    if i % 100 == 99:
                        await anyio.sleep(0.1)
                sent_in = time.monotonic() - started
                during = await others_answered_quic(cluster)
                for sock in socks:  # what the node sent back (Retry or handshake packets)
                    with anyio.move_on_after(0.01):
                        while True:
                            await sock.receive()
                            answers += 1
            recovered = await cluster.assert_healthy("after-initials")
            peak = watch.rounded()
            rss = await cluster.wait_rss_back(RSS_SLACK_MIB, 30)
            tg.cancel_scope.cancel()
    growth = watch.peak["a"] - baseline["a"]
    report(
        "(d) 5,000 QUIC Initials",
        f"{len(packets)} Initials built in {built:.1f} s, sent in {sent_in:.1f} s from 50 addresses; "
        f"{answers} datagrams came back (at least); requests to a meanwhile in {during:.2f} s; healthy in "
        f"{recovered:.2f} s; RSS MiB {baseline}, peak {peak} (a: +{growth:.0f}), after {rss}",
    )
    assert growth <= 50, f"a's RSS grew by {growth:.0f} MiB under 5,000 Initials (bound: 50 MiB)"


async def others_answered_quic(cluster: Cluster) -> float:
    _, b, c = cluster.procs[:3]
    start = time.monotonic()
    for asker in (b, c):
        reply = await asker.call(op="request", to="a", name="ping", payload="quic?", timeout=11)
        assert reply["ok"] and reply["value"] == {"echo": "quic?", "by": "a"}, reply
    return time.monotonic() - start
