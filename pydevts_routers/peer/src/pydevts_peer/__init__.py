"""pydevts-peer: the full-mesh ("everyone knows everyone") router for pydevts."""

from __future__ import annotations

from .router import PeerRouter
from .state import PeerState

__version__ = "0.3.0"

__all__ = ["PeerRouter", "PeerState"]
