"""pydevts-tcp: the TCP transport for pydevts (length-prefixed frames over anyio sockets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .transport import TCPConnection, TCPListener, TCPTransport

__version__ = "0.3.0"

__all__ = ["TCPConnection", "TCPListener", "TCPTransport"]

# Imported on first use: plugin discovery imports this package on every node start.
__getattr__, __dir__ = lazy_exports(
    __name__, {"TCPConnection": "transport", "TCPListener": "transport", "TCPTransport": "transport"}
)
