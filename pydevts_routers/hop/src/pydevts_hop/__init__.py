"""pydevts-hop: a multi-hop router for pydevts, for networks where not every node reaches every other.

The routing logic is the sans-IO :class:`HopState` (link-state adverts,
shortest-path trees, exactly-once broadcasts); :mod:`pydevts_hop.wire` is its
frame format and :mod:`pydevts_hop.simulation` runs many of them in memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    # The IO shell is imported on first use: plugin discovery imports this package at every start.
    if name == "HopRouter":
        return importlib.import_module(".router", __name__).HopRouter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
