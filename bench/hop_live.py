"""The hop router with real nodes: N nodes in one process, in-memory transport, a sparse graph.

``.venv/bin/python bench/hop_live.py [--nodes 50] [--extra 25] [--backend asyncio|trio]``

Builds a random connected graph (a random tree plus ``--extra`` edges; every
other pair of hosts is cut in the in-memory network), starts one Node with
the hop router (default settings) per vertex, and measures:

* time until every node sees every other alive;
* frames transmitted per ``emit`` once routes have settled (the ideal is
  N-1), from the routers' own counters, and that every emit reached every
  other node exactly once;
* time from a *silent* cut of one link (the in-memory network drops what
  crosses it) until every node's next hop and distance are right again,
  and the same for a link closed cleanly.

Every wait is bounded; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from pydevts import Node
from pydevts.routing import LinkHost
from pydevts.testing import MemoryNetwork, MemoryTransport
from pydevts_hop import HopRouter
from pydevts_hop.simulation import distances, random_sparse, routes_right

HERE = Path(__file__).resolve().parent
PORT = 7000


async def wait(pred: Any, timeout: float, what: str) -> float:
    start = time.perf_counter()
    with anyio.move_on_after(timeout):
        while not pred():  # noqa: ASYNC110 - conditions spread over 50 nodes; polled with a deadline
            await anyio.sleep(0.01)
        return time.perf_counter() - start
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


async def run(count: int, extra: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    edges = random_sparse(count, extra, rng, prefix="h")
    hosts = sorted({h for e in edges for h in e})
    net = MemoryNetwork(seed=seed)
    allowed = {frozenset(e) for e in edges}
    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            if frozenset((a, b)) not in allowed:
                net.partition([a], [b])
    neighbours: dict[str, list[str]] = {h: [] for h in hosts}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    routers = {h: HopRouter() for h in hosts}
    got: dict[str, list[tuple[str, Any]]] = {h: [] for h in hosts}
    nodes: dict[str, Node] = {}
    result: dict[str, Any] = {"nodes": count, "links": len(edges), "ideal_frames_per_emit": count - 1}
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        joined: set[str] = set()
        order = [hosts[0]]
        while order:  # breadth-first, each node joins through a neighbour already up
            host = order.pop(0)
            if host in joined:
                continue
            via = next((n for n in neighbours[host] if n in joined), host)
            node = Node(
                PORT,
                host=host,
                port=PORT,
                node_id=host,
                cluster_host=via,
                transport=MemoryTransport(net, host=host),
                router=routers[host],
            )
            sink = got[host]

            @node.on("bench")
            async def on_bench(sender: str, payload: Any, sink: list[tuple[str, Any]] = sink) -> None:
                sink.append((sender, payload))

            nodes[host] = await stack.enter_async_context(node)
            joined.add(host)
            order += [n for n in neighbours[host] if n not in joined]

        states = {h: r.state for h, r in routers.items()}

        def everyone_alive() -> bool:
            return all(sum(1 for m in n.members if m.alive) == count for n in nodes.values())

        await wait(everyone_alive, 120, "full membership")
        result["seconds_to_full_membership"] = round(time.perf_counter() - started, 3)
        await wait(lambda: routes_right(states, edges), 60, "routes")
        await anyio.sleep(max(r.config.settle_time for r in routers.values()) + 0.5)  # past flooding

        def frames() -> int:
            return sum(r.state.stats.broadcast_frames for r in routers.values())

        senders = hosts[:10]
        before = frames()
        for i, host in enumerate(senders):
            await nodes[host].emit("bench", i)
        expected = {h: sorted((s, i) for i, s in enumerate(senders) if s != h) for h in hosts}
        await wait(lambda: all(sorted(got[h]) == expected[h] for h in hosts), 30, "every emit everywhere")
        await anyio.sleep(0.3)
        result["frames_per_emit"] = round((frames() - before) / len(senders), 2)
        result["exactly_once"] = all(sorted(got[h]) == expected[h] for h in hosts)
        result["duplicates_dropped"] = sum(r.state.stats.broadcast_duplicates for r in routers.values())

        # a silent cut: the link stays up but carries nothing (keepalives stop)
        cut = next(e for e in edges if distances([x for x in edges if x != e], hosts[0]).keys() >= set(hosts))
        remaining = [e for e in edges if e != cut]
        net.partition([cut[0]], [cut[1]])
        result["silent_cut"] = list(cut)
        result["seconds_to_reconverge_silent_cut"] = round(
            await wait(lambda: routes_right(states, remaining), 60, "reconvergence"), 3
        )
        # a clean close: the link is closed by one end
        cut2 = next(
            e for e in remaining if distances([x for x in remaining if x != e], hosts[0]).keys() >= set(hosts)
        )
        remaining2 = [e for e in remaining if e != cut2]
        net.partition([cut2[0]], [cut2[1]])
        link_host = nodes[cut2[0]]._ctx.router  # the link host that runs the hop router
        assert isinstance(link_host, LinkHost)
        link = link_host.links.get(cut2[1])
        assert link is not None
        t0 = time.perf_counter()
        await link.aclose("benchmark: clean cut")
        await wait(lambda: routes_right(states, remaining2), 60, "reconvergence")
        result["clean_cut"] = list(cut2)
        result["seconds_to_reconverge_clean_cut"] = round(time.perf_counter() - t0, 3)
        result["reconvergence_bound_silent"] = routers[hosts[0]].config.reconvergence_bound
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--extra", type=int, default=25, help="edges beyond a spanning tree (default 25)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument("--json", type=Path, default=HERE / "hop_results.json")
    args = p.parse_args()
    result = anyio.run(run, args.nodes, args.extra, args.seed, backend=args.backend)
    result["backend"] = args.backend
    for key, value in result.items():
        print(f"{key:36} {value}")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
