"""`pydevts members --graph` (Graphviz DOT of the links) and the `pydevts.stats` fan-out behind it."""

from __future__ import annotations

import re
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from pydevts import Node, NodeClient
from pydevts.cli.graph import dot
from pydevts.errors import RemoteHandlerError
from pydevts.node.inspect import fetch_cluster
from pydevts_hop import HopConfig, HopRouter

pytestmark = pytest.mark.anyio

PYDEVTS = [sys.executable, "-m", "pydevts"]
QUOTED = r'"((?:[^"\\]|\\.)*)"'
NODE_LINE = re.compile(rf"^  {QUOTED} \[label={QUOTED}(.*)\];$")
EDGE_LINE = re.compile(rf"^  {QUOTED} -- {QUOTED};$")
# a chain: nobody opens a link on its own, so the only links are the joins' (c -> b -> a)
CHAIN = HopConfig(
    max_neighbours=0,
    tick_interval=0.05,
    keepalive_interval=0.1,
    dead_interval=0.6,
    settle_time=0.3,
    connect_delay=0.1,
    connect_backoff=0.1,
    max_connect_backoff=0.5,
)


def parse_dot(text: str) -> tuple[dict[str, str], set[frozenset[str]]]:
    """The labels by node id, and the undirected edges, of what `members --graph` prints."""
    lines = text.splitlines()
    assert lines[0] == "graph pydevts {" and lines[-1] == "}", text
    labels: dict[str, str] = {}
    edges: list[frozenset[str]] = []
    for line in lines[1:-1]:
        if m := NODE_LINE.match(line):
            labels[m[1]] = m[2]
        elif m := EDGE_LINE.match(line):
            edges.append(frozenset((m[1], m[2])))
        else:
            assert line.startswith("  node [") or line.startswith("  //"), line
    assert len(edges) == len(set(edges)), f"an edge twice: {text}"
    assert all(node in labels for edge in edges for node in edge), text
    return labels, set(edges)


async def graph_of(address: str) -> str:
    done = await anyio.run_process([*PYDEVTS, "members", "--graph", "--join", address], check=False)
    assert done.returncode == 0, done.stderr.decode()
    return str(done.stdout.decode())


def member_links(node: Node) -> set[str]:
    return {info.peer for info in node.links() if info.role == "member"}


async def test_a_peer_cluster_of_three_is_a_triangle() -> None:
    port = free_port()
    nodes = [Node(port, node_id=name) for name in ("a", "b", "c")]
    with anyio.fail_after(60):
        async with cluster(*nodes):
            await wait_until(lambda: all(len(member_links(n)) == 2 for n in nodes), 10, "a full mesh")
            labels, edges = parse_dot(await graph_of(nodes[0].address))
    assert labels == {"a": "a\\nalive", "b": "b\\nalive", "c": "c\\nalive"}
    assert edges == {frozenset("ab"), frozenset("ac"), frozenset("bc")}


async def test_a_hop_chain_is_two_edges_seen_from_either_end() -> None:
    pa, pb, pc = free_port(), free_port(), free_port()
    a = Node(pa, port=pa, node_id="a", router=HopRouter(config=CHAIN))
    b = Node(pa, port=pb, node_id="b", router=HopRouter(config=CHAIN))  # joins through a
    c = Node(pb, port=pc, node_id="c", router=HopRouter(config=CHAIN))  # joins through b
    nodes = [a, b, c]
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            for node in nodes:
                await stack.enter_async_context(node)
            await wait_until(
                lambda: all({m.id for m in n.members if m.alive} == {"a", "b", "c"} for n in nodes),
                15,
                "the chain to converge",
            )
            assert member_links(a) == {"b"} and member_links(c) == {"b"}  # a and c are two hops apart
            from_a = parse_dot(await graph_of(a.address))
            from_c = parse_dot(await graph_of(c.address))
    for labels, edges in (from_a, from_c):
        assert labels == {"a": "a\\nalive", "b": "b\\nalive", "c": "c\\nalive"}
        assert edges == {frozenset("ab"), frozenset("bc")}


async def test_the_fan_out_is_for_clients_and_lists_who_did_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    nodes = [Node(port, node_id=name, request_timeout=5) for name in ("a", "b", "c")]
    a, _, c = nodes
    with anyio.fail_after(60):
        async with cluster(*nodes):
            await wait_until(lambda: all(len(member_links(n)) == 2 for n in nodes), 10, "a full mesh")
            # a member gets the local snapshot, not the fan-out
            local = await a.request("b", "pydevts.stats", None)
            assert local["node"] == "b" and "nodes" not in local
            assert {row["id"] for row in local["members"]} == {"a", "b", "c"}
            assert {link["peer"] for link in local["links"] if link["role"] == "member"} == {"a", "c"}
            assert (await a.request("b", "pydevts.stats", {"members": False}))["members"] == []
            with pytest.raises(RemoteHandlerError, match="clients of this node") as refused:
                await a.request("b", "pydevts.stats", {"all": True})
            assert refused.value.remote_type == "PermissionError"
            with pytest.raises(RemoteHandlerError, match="expected null"):
                await a.request("b", "pydevts.stats", [1, 2])

            # c stops answering pydevts.stats: it is listed as missing, the others are there
            monkeypatch.setattr("pydevts.node.inspect.FANOUT_TIMEOUT", 1.0)
            release = anyio.Event()
            asked: list[str] = []

            async def stall(sender: str, payload: Any) -> None:
                asked.append(sender)
                await release.wait()

            c._handlers["pydevts.stats"] = stall
            results = []

            async def fan_out() -> None:
                async with NodeClient(a.address) as client:
                    results.append(await fetch_cluster(client))

            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(3):  # three viewers at once: one round of requests
                        tg.start_soon(fan_out)
            finally:
                release.set()
    assert asked == ["a"]
    for stats in results:
        assert stats.asked == "a"
        assert [n.id for n in stats.nodes] == ["a", "b"]
        assert list(stats.missing) == ["c"] and "RequestTimeoutError" in stats.missing["c"]
        assert {m.id: m.state.value for m in stats.members} == {"a": "alive", "b": "alive", "c": "alive"}
    labels, edges = parse_dot(dot(results[0]))
    assert labels["c"] == "c\\nalive"
    assert edges == {frozenset("ab"), frozenset("ac"), frozenset("bc")}  # c's links, seen from a and b
    assert "// c did not answer: RequestTimeoutError" in dot(results[0])


async def test_graph_and_json_cannot_be_asked_together() -> None:
    done = await anyio.run_process([*PYDEVTS, "members", "--graph", "--json", "--join", "1"], check=False)
    assert done.returncode == 2
    assert b"not allowed with argument" in done.stderr
