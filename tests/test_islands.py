"""Islands of one cluster merge by themselves (merge.py): in process on both backends, and real processes.

The fast tests use a small ``merge_interval``; the process test uses the
defaults (30 s, ±20 %), as the issue's scenario does.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from agents import AgentProcess, agents, wait_alive, wait_listening
from inproc import alive_ids, cluster, free_port, wait_for_mesh, wait_until
from pydevts import Node
from pydevts.cluster.merge import merge_once
from pydevts.protocols import Router
from pydevts.routing.host import LinkHost
from pydevts.testing import MemoryNetwork, MemoryTransport
from pydevts.wire.keyring import generate_key
from pydevts_hop import HopConfig, HopRouter
from pydevts_peer import PeerRouter

pytestmark = pytest.mark.anyio

FAST = 0.2  # merge_interval of the in-process tests
HOP = HopConfig(tick_interval=0.05, keepalive_interval=0.1, dead_interval=0.4, settle_time=0.3)
ROUTERS: dict[str, Callable[[], Router]] = {"peer": PeerRouter, "hop": lambda: HopRouter(config=HOP)}


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "keyring"])
async def test_members_that_lost_their_seed_merge_with_the_new_cluster_at_the_cluster_port(
    keyed: bool,
) -> None:
    """The issue's scenario in one process: the seed goes, a newcomer starts a cluster on its port."""
    port = free_port()
    ring = [generate_key()] if keyed else None

    def node(name: str) -> Node:
        return Node(port, node_id=name, merge_interval=FAST, keyring=ring)

    a, b, c = node("a"), node("b"), node("c")
    with anyio.fail_after(30):
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(a)
            for n in (b, c):
                await stack.enter_async_context(n)
            await wait_for_mesh([a, b, c])
            await a.stop()  # the seed is gone: the cluster port is free
            d = await stack.enter_async_context(node("d"))
            assert d.started_cluster, "nothing answered at the cluster port: d starts a second cluster"
            await wait_for_mesh([b, c, d], timeout=10)
            # what b and c knew comes along: d lists a as left, as they do
            await wait_until(lambda: {m.id: m.state for m in d.members}.get("a") == "left", 5, "a left in d")


@pytest.mark.parametrize("router", sorted(ROUTERS))
async def test_two_clusters_started_apart_that_list_each_other_as_seeds_merge(router: str) -> None:
    network = MemoryNetwork(seed=11)
    hosts = {"a1": "a1", "a2": "a1", "b1": "b1", "b2": "b1"}  # host -> its island's cluster host
    other = {"a1": "b1", "b1": "a1"}

    def node(host: str) -> Node:
        return Node(
            7000,
            node_id=host,
            host=host,
            cluster_host=hosts[host],
            seeds=[f"{other[hosts[host]]}:7000"],
            transport=MemoryTransport(network, host=host),
            router=ROUTERS[router](),
            merge_interval=FAST,
        )

    network.partition(["a1", "a2"], ["b1", "b2"])
    nodes = [node(h) for h in hosts]
    with anyio.fail_after(40):
        async with AsyncExitStack() as stack:
            for n in nodes:
                await stack.enter_async_context(n)
            await wait_for_mesh(nodes[:2])
            await wait_for_mesh(nodes[2:])
            assert [n.started_cluster for n in nodes] == [True, False, True, False]
            network.heal()
            await wait_for_mesh(nodes, timeout=20)


async def test_probing_a_node_of_the_own_cluster_changes_nothing() -> None:
    port = free_port()
    nodes = [Node(port, node_id=f"n{i}", merge_interval=0, seeds=[f"127.0.0.1:{port}"]) for i in range(3)]
    with anyio.fail_after(20):
        async with cluster(*nodes):
            for n in nodes:
                router = n._ctx.router  # the link host that runs the peer router
                assert isinstance(router, LinkHost) and isinstance(router.machine, PeerRouter)
                before = dict(router.links)
                assert await merge_once(n._ctx, [n.cluster_address], reap_after=60, timeout=5) == []
                assert router.links == before
            assert all(alive_ids(n) == {"n0", "n1", "n2"} for n in nodes)
            assert all(n.statistics()["requests_served"] == 0 for n in nodes)


async def test_a_probe_that_finds_nothing_or_garbage_is_harmless() -> None:
    port = free_port()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            junk = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            junk_port = junk.extra(anyio.abc.SocketAttribute.local_port)

            async def babble(stream: Any) -> None:
                async with stream:
                    await stream.send(b"\x00\x00\x00\x05HTTP/")

            tg.start_soon(junk.serve, babble)
            async with Node(port, node_id="solo", merge_interval=0) as solo:
                targets = [anyio_address(free_port()), anyio_address(junk_port)]
                assert await merge_once(solo._ctx, targets, reap_after=60, timeout=2) == []
                assert alive_ids(solo) == {"solo"}
            tg.cancel_scope.cancel()


def anyio_address(port: int) -> Any:
    from pydevts.protocols import Address

    return Address("127.0.0.1", port)


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
# About 26 s of default timings, which do not depend on the backend: run once, on asyncio (the
# other island scenarios of this file run on both backends, in one process).
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_five_processes_merge_after_the_seed_is_replaced_with_default_timings(
    anyio_backend: str,
) -> None:
    """Five nodes on P; SIGTERM the seed; a new node starts a second cluster on P; one cluster within 40 s."""
    port = free_port()
    names = [f"n{i}" for i in range(5)]
    specs = [(name, [str(port), "--id", name]) for name in names]
    with anyio.fail_after(110):
        async with agents(specs[:1], anyio_backend) as (seed,):
            await seed.wait_for(lambda e: e.get("ev") == "started", 15, "start")
            async with agents(specs[1:], anyio_backend) as others:
                for proc in others:
                    await proc.wait_for(lambda e: e.get("ev") == "started", 15, "start")
                for proc in [seed, *others]:
                    await wait_alive(proc, set(names), 15)
                seed.signal(signal.SIGTERM)
                for proc in others:
                    await wait_alive(proc, set(names[1:]), 15)
                newcomer = AgentProcess("new", [str(port), "--id", "new", "--backend", anyio_backend])
                async with anyio.create_task_group() as tg:
                    await newcomer.start(tg)
                    try:
                        started = await newcomer.wait_for(lambda e: e.get("ev") == "started", 15, "start")
                        assert started["new_cluster"] is True
                        await wait_listening(port)
                        since = anyio.current_time()
                        everyone = {*names[1:], "new"}
                        for proc in [*others, newcomer]:
                            await wait_alive(
                                proc, everyone, timeout=max(1.0, since + 40 - anyio.current_time())
                            )
                    finally:
                        with anyio.CancelScope(shield=True):
                            await newcomer.stop(timeout=5)
                        tg.cancel_scope.cancel()
