"""pydevts-peer: the full-mesh ("everyone knows everyone") router for pydevts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .router import PeerRouter
    from .state import PeerState

__version__ = "0.3.0"

__all__ = ["PeerRouter", "PeerState"]

# Imported on first use: plugin discovery imports this package on every node start.
__getattr__, __dir__ = lazy_exports(__name__, {"PeerRouter": "router", "PeerState": "state"})
