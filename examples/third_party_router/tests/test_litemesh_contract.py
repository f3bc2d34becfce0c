"""The router contract from pydevts.testing, and the litemesh rules without sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from pydevts import MemberEvent, Node
from pydevts.errors import HandshakeRefusedError
from pydevts.testing import MemoryNetwork, MemoryTransport, check_router
from pydevts_litemesh import LiteMeshRouter

pytestmark = pytest.mark.anyio


async def test_honours_the_router_contract(anyio_backend: str) -> None:
    # Every rule, link churn included: core redials a link that drops and its session
    # resends what was in flight, although litemesh itself neither reconnects nor probes.
    with anyio.fail_after(60):
        await check_router(lambda: LiteMeshRouter(redial_for=1.0))


async def test_a_reset_link_comes_back_and_nothing_is_lost(anyio_backend: str) -> None:
    """A connection reset (no goodbye) is redialled by core: the member never fails, and the
    events sent meanwhile wait in the link's session and arrive once, in order."""
    network = MemoryNetwork(seed=5)
    routers = {i: LiteMeshRouter(redial_for=5.0) for i in "abc"}
    nodes = {
        i: Node(
            7000, node_id=i, host=i, cluster_host="a", transport=MemoryTransport(network, host=i), router=r
        )
        for i, r in routers.items()
    }
    got: list[int] = []
    failed: list[str] = []

    async def on_seq(sender: str, seq: int) -> None:
        got.append(seq)

    nodes["c"].add_handler("seq", on_seq)

    async def changed(event: MemberEvent) -> None:
        if event.kind == "failed":
            failed.append(event.member.id)

    nodes["a"].on_lifecycle(changed)
    resets = 0
    with anyio.fail_after(30):
        async with nodes["a"], nodes["b"], nodes["c"]:
            await wait_for(lambda: all(alive(n) == {"a", "b", "c"} for n in nodes.values()))
            for seq in range(200):
                await nodes["a"].send("c", "seq", seq)
                if seq % 50 == 25:  # the link may still be down from the last reset: then 0
                    resets += network.reset("a", "c") + network.reset("c", "a")
                    await anyio.sleep(0.01)  # the redial gets a moment
            await wait_for(lambda: len(got) >= 200)
            await anyio.sleep(0.1)  # room for a duplicate to show up
            assert resets > 0
            assert got == list(range(200))
            assert alive(nodes["a"]) == {"a", "b", "c"} and failed == []


@pytest.mark.parametrize("connect_after", [0.5, 0.0], ids=["smaller-dials", "both-dial"])
async def test_concurrent_joins_make_one_full_mesh(anyio_backend: str, connect_after: float) -> None:
    """Five nodes joining at once end with one link per pair and exactly-once delivery.

    With ``connect_after=0`` both ends of every pair dial at once, so nearly
    every pair makes two links and core retires one (the duplicate-link rule).
    """
    network = MemoryNetwork(seed=3)
    ids = [f"n{i}" for i in range(6)]
    routers = {i: LiteMeshRouter(connect_after=connect_after) for i in ids}
    nodes = [
        Node(7000, node_id=i, host=i, cluster_host="n0", transport=MemoryTransport(network, host=i), router=r)
        for i, r in routers.items()
    ]
    got: dict[str, list[str]] = {i: [] for i in ids}
    for node in nodes:

        async def on_ping(sender: str, payload: Any, got: list[str] = got[node.id]) -> None:
            got.append(sender)

        node.add_handler("ping", on_ping)

    done = anyio.Event()

    async def run(node: Node) -> None:
        async with node:
            await done.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, nodes[0])  # n0 holds the cluster port (host n0)
            await wait_for(lambda: bool(nodes[0].members))
            for node in nodes[1:]:  # the others join through it all at once
                tg.start_soon(run, node)
            await wait_for(
                lambda: all(alive(n) == set(ids) and len(routers[n.id].linked) == len(ids) - 1 for n in nodes)
            )
            for node in nodes:
                await node.emit("ping")
            await wait_for(lambda: sum(map(len, got.values())) == len(ids) * (len(ids) - 1))
            await anyio.sleep(0.2)  # room for a duplicate delivery to show up
            for i in ids:
                assert sorted(got[i]) == sorted(set(ids) - {i})
            for node in nodes:  # one open link per pair once the duplicates are retired
                await wait_for(
                    lambda node=node: (
                        sorted(info.peer for info in node.links()) == sorted(set(ids) - {node.id})
                    )
                )
            done.set()


def alive(node: Node) -> set[str]:
    return {m.id for m in node.members if m.alive}


async def wait_for(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await anyio.sleep(0.01)


async def test_nothing_sent_during_the_dial_race_is_lost(anyio_backend: str) -> None:
    """Both ends of every pair dial at once while every node keeps sending to every member.

    Frames go out on whichever link is current at that moment, so some travel
    on a link that is being retired: every frame ``send`` accepted must still
    arrive, exactly once (core's duplicate-link rule and the links' sessions).
    """
    network = MemoryNetwork(seed=11)
    network.delay = 0.001  # frames are in flight when a link is retired
    ids = [f"n{i}" for i in range(5)]
    routers = {i: LiteMeshRouter(connect_after=0.0) for i in ids}
    nodes = [
        Node(7000, node_id=i, host=i, cluster_host="n0", transport=MemoryTransport(network, host=i), router=r)
        for i, r in routers.items()
    ]
    sent: dict[tuple[str, str], list[int]] = {(s, d): [] for s in ids for d in ids if s != d}
    got: dict[tuple[str, str], list[int]] = {pair: [] for pair in sent}
    for node in nodes:

        async def on_seq(sender: str, seq: int, me: str = node.id) -> None:
            got[sender, me].append(seq)

        node.add_handler("seq", on_seq)
    done = anyio.Event()

    async def run(node: Node) -> None:
        async with node:
            for seq in range(300):  # through the whole join, and a while after
                for peer in sorted(alive(node) - {node.id}):
                    await node.send(peer, "seq", seq)
                    sent[node.id, peer].append(seq)
                await anyio.sleep(0.001)  # pacing, not synchronisation
            await done.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, nodes[0])
            await wait_for(lambda: bool(nodes[0].members))
            for node in nodes[1:]:
                tg.start_soon(run, node)
            await wait_for(lambda: all(len(v) >= 100 for v in sent.values()))
            with anyio.move_on_after(10):
                await wait_for(lambda: all(len(got[p]) >= len(sent[p]) for p in sent))
            for pair in sent:
                assert got[pair] == sent[pair], f"{pair}: sent {len(sent[pair])}, got {len(got[pair])}"
            done.set()


async def test_a_peer_router_cluster_is_refused_at_the_handshake() -> None:
    """Members name their router in the HELLO, so a mix is refused before any frame flows."""
    network = MemoryNetwork()
    peer_node = Node(7000, node_id="p", host="p", transport=MemoryTransport(network, host="p"), router="peer")
    mesh_node = Node(
        7000,
        node_id="m",
        host="m",
        cluster_host="p",
        transport=MemoryTransport(network, host="m"),
        router=LiteMeshRouter(),
    )
    with anyio.fail_after(20):
        async with peer_node:
            with pytest.raises(
                HandshakeRefusedError,
                match="router differs: this node uses router 'litemesh'; the cluster at p:7000 uses 'peer'",
            ):
                async with mesh_node:
                    pytest.fail("a litemesh node joined a peer cluster")
