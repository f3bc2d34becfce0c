"""Links that resume without loss: numbered events across connection resets (pydevts.wire.session).

Two live members; the test resets every connection between them again and
again (the in-memory network's ``reset``: both ends see the connection
closed, whatever was in flight is gone) while one sends numbered events,
requests and replies at full speed. Every number must arrive exactly once
and in order.
"""

from __future__ import annotations

import anyio
import pytest
from inproc import cluster, wait_until
from pydevts import Node
from pydevts.testing import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio


def memory_node(network: MemoryNetwork, host: str, router: str = "peer") -> Node:
    return Node(
        7000,
        node_id=host,
        host=host,
        cluster_host="a",
        transport=MemoryTransport(network, host=host),
        router=router,
    )


def open_between(network: MemoryNetwork, a: str, b: str) -> int:
    return sum(1 for c in network._open if c._local_host == a and c._remote_host == b)


async def reset_repeatedly(network: MemoryNetwork, times: int, pause: float) -> int:
    """Reset the connections between a and b ``times`` times, each once one is up again."""
    for _ in range(times):
        await wait_until(lambda: open_between(network, "a", "b") > 0, 10, "a link between a and b")
        await anyio.sleep(pause * network.rng.random())
        network.reset("a", "b")
    return times


@pytest.mark.parametrize("router", ["peer", "hop"])
async def test_numbered_events_arrive_once_and_in_order_across_resets(router: str) -> None:
    count = 20_000
    network = MemoryNetwork(seed=11)
    a, b = memory_node(network, "a", router), memory_node(network, "b", router)
    got: list[int] = []

    @b.on("n")
    async def number(sender: str, payload: int) -> None:
        got.append(payload)

    resets = 0
    with anyio.fail_after(60):
        async with cluster(a, b, timeout=10):
            done = anyio.Event()

            async def cut() -> None:
                nonlocal resets
                resets = await reset_repeatedly(network, 15, 0.02)
                done.set()

            sent = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(cut)
                while sent < count or not done.is_set():  # full speed, until 15 resets are done
                    await a.send("b", "n", sent)
                    sent += 1
                await wait_until(lambda: len(got) >= sent, 30, f"{sent} events at b")
            assert got == list(range(sent)), "lost, duplicated or reordered"
            stats = a.statistics()
            assert stats["links.undelivered"] == 0
            assert stats["links.resent"] > 0


async def test_broadcasts_and_requests_survive_resets_both_ways() -> None:
    network = MemoryNetwork(seed=12)
    a, b = memory_node(network, "a"), memory_node(network, "b")
    got = {"a": [], "b": []}  # type: dict[str, list[int]]
    for node in (a, b):

        @node.on("n")
        async def number(sender: str, payload: int, me: str = node.id) -> None:
            got[me].append(payload)

        @node.on("echo")
        async def echo(sender: str, payload: int) -> int:
            return payload

    count = 3000
    with anyio.fail_after(60):
        async with cluster(a, b, timeout=10):
            answers: list[int] = []

            async def emitter(node: Node) -> None:
                for i in range(count):
                    await node.emit("n", i)

            async def asker() -> None:
                for i in range(300):
                    answers.append(await a.request("b", "echo", i, timeout=20))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reset_repeatedly, network, 10, 0.02)
                tg.start_soon(emitter, a)
                tg.start_soon(emitter, b)
                tg.start_soon(asker)
            await wait_until(lambda: len(got["a"]) >= count and len(got["b"]) >= count, 30, "all events")
            assert got["a"] == list(range(count)) and got["b"] == list(range(count))
            assert answers == list(range(300))
