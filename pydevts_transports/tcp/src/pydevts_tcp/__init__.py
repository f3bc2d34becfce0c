"""pydevts-tcp: the TCP transport for pydevts (length-prefixed frames over anyio sockets)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport import TCPConnection, TCPListener, TCPTransport

__version__ = "0.3.0"

__all__ = ["TCPConnection", "TCPListener", "TCPTransport"]

# Imported on first use: plugin discovery imports this package on every node start.
_WHERE = {"TCPConnection": "transport", "TCPListener": "transport", "TCPTransport": "transport"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
