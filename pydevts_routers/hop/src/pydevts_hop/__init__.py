"""pydevts-hop: a multi-hop router for pydevts, for networks where not every node reaches every other.

The routing logic is the sans-IO :class:`HopState` (link-state adverts,
shortest-path trees, exactly-once broadcasts); :mod:`pydevts_hop.wire` is its
frame format and :mod:`pydevts_hop.simulation` runs many of them in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .actions import CloseLink, Connect, Deliver, HopConfig, HopStatistics, MemberChange, Send
    from .router import HopRouter
    from .state import HopState
    from .wire import HopWireError

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

# Imported on first use: plugin discovery imports this package at every node start.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["CloseLink", "Connect", "Deliver", "HopConfig", "HopStatistics"], "actions"),
        **dict.fromkeys(["MemberChange", "Send"], "actions"),
        "HopRouter": "router",
        "HopState": "state",
        "HopWireError": "wire",
    },
)
