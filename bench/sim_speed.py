"""How fast the deterministic simulator (:mod:`pydevts.testing.sim`) runs a cluster.

``.venv/bin/python bench/sim_speed.py`` prints, for 10 and 50 nodes running a
small full-mesh router (a ping on every link every second, as a failure
detector would; each node also broadcasts one application event every 10 s)
over 1,000 simulated seconds: the CPU seconds the run took, the simulated
seconds per CPU second, frames carried and frames per CPU second.
``--seconds`` and ``--nodes`` change the run; ``--check`` fails (exit 1) if
10 nodes over 2,000 simulated seconds take more than 10 CPU seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from pydevts.members import Member
from pydevts.routing.actions import Action, Connect, Control, UpdateMember
from pydevts.routing.machine import NO_ACTIONS, RouterMachine
from pydevts.testing.sim import Simulation

__all__ = ["Pinger", "main", "run"]

SYNC, PING = 0x60, 0x62
PING_FRAME = bytes((PING,))


class Pinger(RouterMachine):
    """Full mesh: sync (``id address`` lines) on each link, dial the unknown, ping every second."""

    name = "pinger"
    hears = True

    def __init__(self) -> None:
        self.me = Member("", "")
        self.linked: dict[str, Member] = {}
        self.heard_at: dict[str, float] = {}
        self.tick = 0.0

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self.me, self.tick = local, now + 1.0
        return NO_ACTIONS

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.linked[peer.id] = peer
        known = "\n".join(f"{m.id} {m.address}" for m in (self.me, *self.linked.values()))
        return [UpdateMember(peer), Control(peer.id, bytes((SYNC,)) + known.encode())]

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        if frame[0] == PING:
            return NO_ACTIONS
        if frame[0] != SYNC:
            raise ValueError("unknown frame")
        pairs = (line.split(" ") for line in frame[1:].decode().split("\n"))
        return [Connect(i, a) for i, a in pairs if i != self.me.id and i not in self.linked]

    def heard(self, now: float, peer_id: str) -> None:
        self.heard_at[peer_id] = now

    def next_deadline(self) -> float | None:
        return self.tick

    def timer(self, now: float) -> list[Action]:
        self.tick = now + 1.0
        return [Control(p, PING_FRAME) for p in self.linked]


def run(nodes: int, seconds: float, seed: int = 1) -> tuple[float, int, int]:
    """Form the cluster, then time ``seconds`` simulated seconds: ``(cpu seconds, frames, deliveries)``."""
    sim = Simulation(seed=seed)
    for i in range(nodes):
        sim.add_node(f"n{i}", Pinger)
        if i:
            sim.join(f"n{i}", via="n0")
    sim.run_until(sim.converged, timeout=60)
    for i, node_id in enumerate(sim.live()):
        for k in range(int(seconds // 10)):
            sim.call_at(sim.now + k * 10 + i * 10 / nodes, partial(sim[node_id].broadcast, "tick", k))
    frames = sim.counts["frames"]
    start = time.process_time()
    sim.run_for(seconds)
    cpu = time.process_time() - start
    sim.check_exactly_once()
    return cpu, sim.counts["frames"] - frames, sum(len(n.deliveries) for n in sim.nodes.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1000.0, help="simulated seconds per run")
    parser.add_argument("--nodes", type=int, action="append", help="cluster sizes (default 10 and 50)")
    parser.add_argument("--check", action="store_true", help="assert the 10-node, 2,000 s bound")
    args = parser.parse_args(argv)
    head = ("nodes", "sim s", "cpu s", "sim s/cpu s", "frames", "frames/cpu s", "events")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (5, 7, 7, 11, 9, 12, 7), strict=True)))
    for nodes in args.nodes or [10, 50]:
        cpu, frames, deliveries = run(nodes, args.seconds)
        print(
            f"{nodes:>5} {args.seconds:>7g} {cpu:>7.2f} {args.seconds / cpu:>11.0f} "
            f"{frames:>9} {frames / cpu:>12.0f} {deliveries:>7}"
        )
    if args.check:
        cpu, _, _ = run(10, 2000.0)
        print(f"check: 10 nodes, 2,000 simulated seconds in {cpu:.2f} CPU seconds (bound: 10)")
        if cpu > 10.0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
