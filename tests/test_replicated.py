"""ReplicatedDict and custom node types, in-process clusters on loopback."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_for_mesh, wait_until
from pydevts import HandshakeRefusedError, Node, ReplicatedDict, handler

KEY = bytes(range(32))  # pickle needs a keyring

pytestmark = pytest.mark.anyio


async def test_writes_reach_every_replica_and_late_joiners_get_the_state() -> None:
    port = free_port()
    nodes = [Node(port, node_id=f"n{i}") for i in range(3)]
    stores = [ReplicatedDict(n, "kv") for n in nodes]
    with anyio.fail_after(20):
        async with cluster(*nodes):
            await stores[0].set("a", 1)
            await stores[1].set("b", [1, 2])
            await wait_until(
                lambda: all(s.to_dict() == {"a": 1, "b": [1, 2]} for s in stores), 5, "replication"
            )
            late = Node(port, node_id="late")
            late_store = ReplicatedDict(late, "kv")
            async with late:
                # state transfer happens by itself as the newcomer links to members ...
                await wait_until(lambda: late_store.to_dict() == {"a": 1, "b": [1, 2]}, 5, "state transfer")
                # ... and sync() merges it on demand (nothing new to apply now)
                assert await late_store.sync() == 0
                await late_store.set("c", "from the late one")
                await wait_until(lambda: all(s.get("c") == "from the late one" for s in stores), 5, "c")


async def test_last_writer_wins_by_logical_clock_whatever_the_arrival_order() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    sa, sb = ReplicatedDict(a, "kv"), ReplicatedDict(b, "kv")
    with anyio.fail_after(20):
        async with cluster(a, b):
            # concurrent writes of one key from both nodes: both converge on the higher version
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(sa.set, "k", f"a{i}")
                    tg.start_soon(sb.set, "k", f"b{i}")
            await wait_until(lambda: sa.version("k") == sb.version("k"), 5, "convergence")
            assert sa.get("k") == sb.get("k")
            winner = sa.version("k")
            assert winner is not None
            # a stale write (older clock) is ignored everywhere
            await b.emit("kv.set", ["k", "stale", 1, "a"])
            await b.request("a", "kv.state", None, timeout=2)  # a round trip: the stale event was handled
            assert sa.get("k") == sb.get("k") != "stale"
            assert sa.version("k") == winner


async def test_updates_during_a_transfer_are_not_lost_nor_reordered() -> None:
    """A newcomer joins while a writer keeps writing: it ends with the last value, and its
    update callbacks only ever see increasing versions."""
    port = free_port()
    writer, relay = Node(port, node_id="w"), Node(port, node_id="r")
    sw, _ = ReplicatedDict(writer, "kv"), ReplicatedDict(relay, "kv")
    seen: list[tuple[int, str]] = []
    with anyio.fail_after(30):
        async with cluster(writer, relay):
            done = anyio.Event()

            async def write() -> None:
                for i in range(300):
                    await sw.set("counter", i)
                    if i % 10 == 0:
                        await anyio.sleep(0.001)
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                newcomer = Node(port, node_id="x")
                sx = ReplicatedDict(newcomer, "kv")

                @sx.on_update
                async def record(key: str, value: Any, origin: str) -> None:
                    version = sx.version(key)
                    assert version is not None
                    seen.append(version)

                async with newcomer:
                    await done.wait()
                    await wait_until(lambda: sx.get("counter") == 299, 10, "the last value")
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_nodes_without_the_store_are_ignored() -> None:
    port = free_port()
    a, plain = Node(port, node_id="a"), Node(port, node_id="plain")
    sa = ReplicatedDict(a, "kv")
    with anyio.fail_after(20):
        async with cluster(a, plain):
            await sa.set("x", 1)
            assert await sa.sync() == 0  # plain has no "kv": NoHandlerError, ignored
            assert sa.to_dict() == {"x": 1}


# --------------------------------------------------------------------------- custom node types


class Counter(Node):
    """A node type with state and handler methods."""

    def __init__(self, cluster_port: int, **options: Any) -> None:
        super().__init__(cluster_port, **options)
        self.count = 0

    @handler("increment")
    async def increment(self, sender: str, payload: int) -> int:
        self.count += payload
        await self.emit("counted", self.count)
        return self.count


class Watcher(Node):
    """Another node type that reacts to Counter's events."""

    def __init__(self, cluster_port: int, **options: Any) -> None:
        super().__init__(cluster_port, **options)
        self.totals: list[int] = []

    @handler("counted")
    async def counted(self, sender: str, payload: int) -> None:
        self.totals.append(payload)


class LoudCounter(Counter):
    """Subclasses inherit handlers and may override them."""

    @handler("increment")
    async def increment(self, sender: str, payload: int) -> int:
        return await super().increment(sender, payload * 10)


async def test_custom_node_types_work_together() -> None:
    port = free_port()
    counter, watcher, loud = (
        Counter(port, node_id="c"),
        Watcher(port, node_id="w"),
        LoudCounter(port, node_id="l"),
    )
    with anyio.fail_after(20):
        async with cluster(counter, watcher, loud):
            assert await watcher.request("c", "increment", 2, timeout=5) == 2
            assert await watcher.request("c", "increment", 3, timeout=5) == 5
            assert await watcher.request("l", "increment", 1, timeout=5) == 10
            await wait_until(lambda: sorted(watcher.totals) == [2, 5, 10], 5, "the watcher's events")
            assert counter.count == 5 and loud.count == 10


async def test_pickle_and_msgpack_nodes_refuse_each_other() -> None:
    port = free_port()
    with anyio.fail_after(20):
        async with Node(port, node_id="m", keyring=[KEY]):
            pickled = Node(
                port, node_id="p", keyring=[KEY], serializer="pickle", serializer_options={"trusted": True}
            )
            with pytest.raises(
                HandshakeRefusedError,
                match=r"this node uses serializer 'pickle'; the cluster at \S+ uses 'msgpack'",
            ):
                async with pickled:
                    pass


async def test_a_pickle_cluster_carries_python_objects() -> None:
    port = free_port()
    options: dict[str, Any] = {
        "serializer": "pickle",
        "serializer_options": {"trusted": True},
        "keyring": [KEY],
    }
    a, b = Node(port, node_id="a", **options), Node(port, node_id="b", **options)

    @b.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return payload

    value = {"set": {1, 2}, "complex": 1 + 2j, "nested": (frozenset({"x"}),)}
    with anyio.fail_after(20):
        async with cluster(a, b):
            await wait_for_mesh([a, b])
            assert await a.request("b", "echo", value, timeout=5) == value
