"""Helpers shared by the hop-router tests: an independent BFS and delivery checks.

The BFS here is deliberately separate from :mod:`pydevts_hop.topology`: the
tests compare the router's routes with it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from pydevts.members import MemberState
from pydevts.wire import encode_event
from pydevts_hop.simulation import Network

Edges = Iterable[tuple[str, str]]


def adjacency(edges: Edges) -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    return adj


def distances(adj: dict[str, set[str]], src: str) -> dict[str, int]:
    dist = {src: 0}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        for n in adj.get(node, ()):
            if n not in dist:
                dist[n] = dist[node] + 1
                queue.append(n)
    return dist


def event(origin: str, i: int) -> bytes:
    return encode_event("t", f"{origin}/{i}".encode())


def check_routes(net: Network, edges: Edges) -> None:
    """Every node's next hop and distance to every other node agree with a BFS of ``edges``."""
    adj = adjacency(edges)
    for src, state in net.nodes.items():
        dist = distances(adj, src)
        for dest in net.nodes:
            if dest == src:
                continue
            route = state.route(dest)
            record = net.members[src].get(dest)
            if dest not in dist:
                assert route is None, f"{src} has a route to unreachable {dest}: {route}"
                assert record is None or record.state is MemberState.FAILED, (src, dest, record)
                continue
            assert route is not None, f"{src} has no route to {dest} (distance {dist[dest]})"
            hop, d = route
            assert d == dist[dest], f"{src}->{dest}: distance {d}, expected {dist[dest]}"
            assert hop in adj[src] and distances(adj, hop)[dest] == d - 1, f"{src}->{dest}: bad hop {hop}"
            assert record is not None and record.state is MemberState.ALIVE
            assert (record.next_hop, record.distance) == (hop, d), (src, dest, record)


def broadcast_from(
    net: Network, origins: Iterable[str], edges: Edges, tag: int = 0, *, after_gaps: bool = False
) -> int:
    """Each origin broadcasts once; check exactly-once delivery; return frames transmitted.

    Delivery must be immediate, unless ``after_gaps``: earlier broadcasts were
    lost (cuts), so a node may hold the next one of that origin for up to
    ``reorder_wait`` waiting for them (ticks then release it).
    """
    adj = adjacency(edges)
    for node in net.delivered:
        net.delivered[node].clear()
    before = net.frames[0x42]
    origins = list(origins)
    for origin in origins:
        net.broadcast(origin, event(origin, tag))
        net.run()
    if after_gaps:
        net.tick(int(net.config.reorder_wait / net.config.tick_interval) + 1)
    for origin in origins:
        reach = distances(adj, origin)
        frame = event(origin, tag)
        for node, got in net.delivered.items():
            copies = Counter(got)[(origin, frame)]
            expected = 1 if node in reach and node != origin else 0
            assert copies == expected, (
                f"{node} got {copies} copies of {origin}'s broadcast, expected {expected}"
            )
    return net.frames[0x42] - before


def send_between(net: Network, pairs: Iterable[tuple[str, str]], tag: int = 0) -> None:
    """Send along each pair; check each message reaches its target once and nobody else."""
    for node in net.delivered:
        net.delivered[node].clear()
    pairs = list(pairs)
    for src, dest in pairs:
        net.send(src, dest, event(f"{src}>{dest}", tag))
        net.run()
    for src, dest in pairs:
        frame = event(f"{src}>{dest}", tag)
        for node, got in net.delivered.items():
            copies = Counter(got)[(src, frame)]
            assert copies == (1 if node == dest else 0), f"{node} got {copies} of {src}->{dest}"
