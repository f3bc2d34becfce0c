"""Many nodes in one process over the in-memory transport, with faults injected by the test."""

from __future__ import annotations

import anyio
import pytest
from inproc import alive_ids, cluster, wait_until
from pydevts import MemberEvent, Node
from pydevts.testing import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


def memory_node(
    network: MemoryNetwork,
    host: str,
    cluster_host: str = "n0",
    router_options: dict[str, float] | None = None,
) -> Node:
    return Node(
        7000,
        node_id=host,
        host=host,
        cluster_host=cluster_host,
        transport=MemoryTransport(network, host=host),
        router_options=router_options,
    )


async def test_eight_nodes_exchange_events_without_sockets() -> None:
    network = MemoryNetwork(seed=1)
    nodes = [memory_node(network, f"n{i}") for i in range(8)]
    got: dict[str, list[str]] = {n.id: [] for n in nodes}
    for node in nodes:

        async def hello(sender: str, payload: object, me: str = node.id) -> str:
            got[me].append(sender)
            return me

        node.add_handler("hello", hello)
    with anyio.fail_after(20):
        async with cluster(*nodes, timeout=10):
            await nodes[3].emit("hello", None)
            assert await nodes[5].request("n7", "hello", None, timeout=5) == "n7"
            await wait_until(lambda: sum(len(v) for v in got.values()) == 8, 5, "7 events and 1 request")
            assert all(got[n.id] == ["n3"] for n in nodes if n.id not in ("n3", "n7"))


async def test_a_partition_fails_members_and_healing_brings_them_back() -> None:
    network = MemoryNetwork(seed=2)
    nodes = [memory_node(network, f"n{i}") for i in range(4)]
    events: list[tuple[str, str]] = []

    @nodes[0].on_lifecycle
    async def record(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    everyone = {n.id for n in nodes}
    with anyio.fail_after(40):
        async with cluster(*nodes, timeout=10):
            network.partition({"n3"}, {"n0", "n1", "n2"})  # a cut cable: no error, no close
            for node in nodes[:3]:
                await wait_until(lambda node=node: alive_ids(node) == {"n0", "n1", "n2"}, 10, "n3 failed")
            await wait_until(lambda: alive_ids(nodes[3]) == {"n3"}, 10, "n3 alone")
            await wait_until(
                lambda: ("failed", "n3") in events, 5, "a failed event"
            )  # callbacks lag the view
            network.heal()
            for node in nodes:
                await wait_until(lambda node=node: alive_ids(node) == everyone, 15, "everyone back")
            await wait_until(lambda: events.count(("joined", "n3")) >= 2, 5, "n3 joined again")
            assert events.count(("joined", "n3")) == 2
            await nodes[0].send("n3", "anything", None)  # a link again, not only gossip


async def test_a_partition_longer_than_the_dead_probe_window_still_heals() -> None:
    # Failed members are pinged often for dead_probe_window, then once per
    # reconnect_interval until reaped (Serf's reconnect): a long partition heals too.
    network = MemoryNetwork(seed=6)
    timings = {"dead_probe_window": 0.3, "reconnect_interval": 0.5}
    nodes = [memory_node(network, f"n{i}", router_options=timings) for i in range(3)]
    everyone = {n.id for n in nodes}
    with anyio.fail_after(40):
        async with cluster(*nodes, timeout=10):
            network.partition({"n2"}, {"n0", "n1"})
            for node in nodes[:2]:
                await wait_until(lambda node=node: alive_ids(node) == {"n0", "n1"}, 10, "n2 failed")
            await wait_until(lambda: alive_ids(nodes[2]) == {"n2"}, 10, "n2 alone")
            await anyio.sleep(1.0)  # the failures age well past the 0.3 s window
            network.heal()
            for node in nodes:
                await wait_until(lambda node=node: alive_ids(node) == everyone, 10, "everyone back")
            await nodes[0].send("n2", "anything", None)
