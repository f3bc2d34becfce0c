"""The hop router in core's deterministic simulator (virtual clock, no IO).

``.venv/bin/python bench/hop_simulated.py [--sizes 10 25 50 100] [--seed 1]`` prints, for
random sparse graphs of growing size: frames per broadcast once converged (the ideal
is N-1) and while flooding after a change, and the time from a silent link cut until
every route is right again. It runs :class:`pydevts_hop.router.HopRouter` machines in
:class:`pydevts.testing.Simulation` (through :class:`pydevts_hop.simulation.Network`).
"""

from __future__ import annotations

import argparse
import random

from pydevts_hop import HopConfig
from pydevts_hop.simulation import Network, random_sparse, routes_right

__all__ = ["broadcast_cost", "reconvergence", "main"]


def broadcast_cost(count: int, extra: int, seed: int = 1) -> tuple[float, float]:
    """Mean frames per broadcast on a fresh ``count``-node graph: ``(flooding, converged)``."""
    net = Network(HopConfig(max_neighbours=0))
    net.build(random_sparse(count, extra, random.Random(seed)))
    ids = sorted(net.nodes)[:10]
    before = net.frames[0x42]
    for i, origin in enumerate(ids):
        net.broadcast(origin, b"\x01\x01t" + bytes([i]))
    net.run()
    flooding = (net.frames[0x42] - before) / len(ids)
    net.settle()
    before = net.frames[0x42]
    for i, origin in enumerate(ids):
        net.broadcast(origin, b"\x01\x01t" + bytes([i]))
    net.run()
    return flooding, (net.frames[0x42] - before) / len(ids)


def reconvergence(count: int, extra: int, seed: int = 1, cuts: int = 5) -> float:
    """Worst seconds from a silent cut of a random link until all routes are right (fake clock)."""
    config = HopConfig(max_neighbours=0)
    rng = random.Random(seed)
    edges = random_sparse(count, extra, rng)
    net = Network(config)
    net.build(edges)
    net.settle()
    worst = 0.0
    for _ in range(cuts):
        cut = rng.choice(edges)
        net.cut(*cut)
        edges = [e for e in edges if e != cut]
        start = net.now
        while not routes_right(net.nodes, edges):
            net.tick()
        worst = max(worst, net.now - start)
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100], help="node counts")
    parser.add_argument("--seed", type=int, default=1, help="graph and cut seed")
    args = parser.parse_args(argv)
    print(f"{'nodes':>5} {'links':>5} {'flooding':>9} {'converged':>9} {'ideal':>5} {'reconverge':>10}")
    for count in args.sizes:
        extra = count // 2
        flooding, converged = broadcast_cost(count, extra, args.seed)
        seconds = reconvergence(count, extra, args.seed)
        links, ideal = count - 1 + extra, count - 1
        print(f"{count:>5} {links:>5} {flooding:>9.1f} {converged:>9.1f} {ideal:>5} {seconds:>9.1f}s")


if __name__ == "__main__":
    main()
