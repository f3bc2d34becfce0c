"""pydevts-tcp: the TCP transport for pydevts (length-prefixed frames over anyio sockets)."""

from __future__ import annotations

from .transport import TCPConnection, TCPListener, TCPTransport

__version__ = "0.3.0"

__all__ = ["TCPConnection", "TCPListener", "TCPTransport"]
