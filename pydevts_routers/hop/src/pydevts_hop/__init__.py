"""pydevts-hop: a multi-hop router for pydevts, for networks where not every node reaches every other.

The routing logic is the sans-IO :class:`HopState` (link-state adverts,
shortest-path trees, exactly-once broadcasts); :mod:`pydevts_hop.wire` is its
frame format and :mod:`pydevts_hop.simulation` runs many of them in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

from .actions import CloseLink, Connect, Deliver, HopConfig, HopStatistics, MemberChange, Send
from .state import HopState
from .wire import HopWireError

if TYPE_CHECKING:
    from .router import HopRouter

__version__ = "0.3.0"

__all__ = [
    "CloseLink",
    "Connect",
    "Deliver",
    "HopConfig",
    "HopRouter",
    "HopState",
    "HopStatistics",
    "HopWireError",
    "MemberChange",
    "Send",
]

# The IO shell is imported on first use: plugin discovery imports this package at every start.
__getattr__, __dir__ = lazy_exports(__name__, {"HopRouter": "router"})
