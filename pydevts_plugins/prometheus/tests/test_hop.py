"""Relays, with the hop router: a - b - c in a line (a and c cannot reach each other), in memory."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest
from promtest import Scrape, wait_until
from pydevts import Node
from pydevts.testing import MemoryNetwork

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

PORT = 7000


async def test_relays_are_counted_where_they_happen(anyio_backend: str) -> None:
    hop = pytest.importorskip("pydevts_hop")
    net = MemoryNetwork(seed=1)
    net.partition(["a"], ["c"])
    got: dict[str, list[Any]] = {"a": [], "b": [], "c": []}
    nodes: list[Node] = []
    for host, via in (("a", "a"), ("b", "a"), ("c", "b")):
        node = Node(
            PORT,
            host=host,
            port=PORT,
            node_id=host,
            cluster_host=via,
            transport=net.transport(host=host),
            router=hop.HopRouter(),
            connection_plugins=["prometheus"],
            plugin_options={"prometheus": {"serve": False}},
        )

        async def ev(sender: str, payload: Any, sink: list[Any] = got[host]) -> None:
            sink.append(payload)

        node.add_handler("ev", ev)
        nodes.append(node)
    a = nodes[0]
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            for node in nodes:
                await stack.enter_async_context(node)
            await wait_until(
                lambda: all(sum(m.alive for m in n.members) == 3 for n in nodes), 30, "3 members alive"
            )
            await wait_until(lambda: any(m.id == "c" and m.distance == 2 for m in a.members), 30, "a route")
            await a.emit("ev", "everyone")
            await a.send("c", "ev", "only c")
            await wait_until(lambda: len(got["c"]) == 2 and len(got["b"]) == 1, 30, "both events")
            scrapes = {n.id: Scrape(generate_latest(n.plugin("prometheus").registry).decode()) for n in nodes}
    assert scrapes["b"].value("pydevts_relays_total", kind="event") >= 2  # the emit and the send to c
    assert scrapes["a"].value("pydevts_relays_total", kind="event") == 0
    assert scrapes["c"].value("pydevts_messages_received_total", kind="event", name="ev") == 2
    assert scrapes["c"].by("pydevts_link_frames_total", "peer", direction="in").keys() == {"b"}
    for s in scrapes.values():
        assert s.value("pydevts_members", state="alive") == 3
        assert s.series("pydevts_node_counter_total", name="router.hop_limit_drops")
