"""pydevts-peer: the full-mesh ("everyone knows everyone") router for pydevts."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .router import PeerRouter
    from .state import PeerState

__version__ = "0.3.0"

__all__ = ["PeerRouter", "PeerState"]

# Imported on first use: plugin discovery imports this package on every node start.
_WHERE = {"PeerRouter": "router", "PeerState": "state"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
