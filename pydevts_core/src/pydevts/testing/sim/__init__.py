"""A deterministic simulator for router machines and the applications on top of them.

A virtual clock and an in-memory network run any
:class:`~pydevts.routing.machine.RouterMachine` (peer, hop, litemesh, your
own) through thousands of simulated seconds in seconds of CPU, reproducibly
from one seed: the same seed gives the same run, to the frame. The network
has delay, jitter (links stay FIFO, like TCP), datagram loss, partitions,
crashes (with or without a reset), graceful leaves, restarts under the same
id, and link resets that the host redials and resumes without loss, as the
real :class:`~pydevts.routing.host.LinkHost` does.

Applications' handlers can be tested on it too: ``node.on(name, handler)``,
``node.broadcast(name, payload)``, ``node.send(dest, name, payload)``, with
every delivery recorded and checks for exactly-once, per-sender order,
convergence of the member views and failure detection::

    sim = Simulation(seed=1)
    for i in range(5):
        sim.add_node(f"n{i}", MyRouter)
        if i:
            sim.join(f"n{i}", via="n0")
    sim.run_until(sim.converged, timeout=30)
    sim["n1"].broadcast("hello", {"x": 1})
    sim.run_for(1)
    sim.check_exactly_once()
"""

from __future__ import annotations

from .clock import SimulationError
from .conditions import NetworkConditions
from .node import Handler, SimNode
from .records import Delivery, DroppedFrame, Fault, ProtocolError, Sent
from .simulation import Simulation, SimulationTimeout

__all__ = [
    "Delivery",
    "DroppedFrame",
    "Fault",
    "Handler",
    "NetworkConditions",
    "ProtocolError",
    "Sent",
    "SimNode",
    "Simulation",
    "SimulationError",
    "SimulationTimeout",
]
