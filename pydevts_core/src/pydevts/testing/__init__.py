"""Tools for testing pydevts and its plugins.

- :func:`check_transport`: the contract every :class:`~pydevts.protocols.Transport`
  must honour, as one async function a plugin author can run in their own tests
  (like ``trio.testing.check_two_way_stream``).
- :func:`check_router`: the contract every router must honour, on a small
  in-process cluster over the in-memory transport.
- :func:`check_router_simulated`: the same contract for a router machine, run
  on the deterministic simulator in virtual time, for a few seeds.
- :class:`MemoryNetwork` / :class:`MemoryTransport`: connections without sockets,
  many endpoints in one process, with fault injection (partition, drop, delay).
- :class:`Simulation` (:mod:`pydevts.testing.sim`): a deterministic simulator, a
  virtual clock and an in-memory network that run any router machine (and the
  application's handlers) through thousands of simulated seconds, from a seed.

Layer: above the node (a contract cluster runs real nodes); nothing in the
core imports it but the ``memory`` entry point and the CLI-free test helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plugins.registry import lazy_exports

if TYPE_CHECKING:
    from .conformance import TransportFactory, Vanish, check_transport
    from .memory import MemoryConnection, MemoryListener, MemoryNetwork, MemoryTransport
    from .router_contract import check_router
    from .sim import NetworkConditions, SimNode, Simulation
    from .sim_contract import check_router_simulated

__all__ = [
    "MemoryConnection",
    "MemoryListener",
    "MemoryNetwork",
    "MemoryTransport",
    "NetworkConditions",
    "SimNode",
    "Simulation",
    "TransportFactory",
    "Vanish",
    "check_router",
    "check_router_simulated",
    "check_transport",
]

# Imported on first use: plugin discovery imports this package (the ``memory``
# transport's entry point) at every node start.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["TransportFactory", "Vanish", "check_transport"], "conformance"),
        **dict.fromkeys(["MemoryConnection", "MemoryListener", "MemoryNetwork", "MemoryTransport"], "memory"),
        "check_router": "router_contract",
        "check_router_simulated": "sim_contract",
        **dict.fromkeys(["NetworkConditions", "SimNode", "Simulation"], "sim"),
    },
)
