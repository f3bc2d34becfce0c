"""QUIC transport for pydevts: frames on one QUIC stream per connection, TLS 1.3.

``pip install pydevts-quic``, then ``Node(..., transport="quic")`` or
``pydevts node --transport quic``. See :class:`QUICTransport` for the options
(certificates, idle timeout, datagram size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .tls import TLSSettings, make_self_signed
    from .transport import ALPN, QUICTransport

__all__ = ["ALPN", "QUICTransport", "TLSSettings", "make_self_signed"]

# Imported on first use: plugin discovery imports this package on every node start.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {"TLSSettings": "tls", "make_self_signed": "tls", "ALPN": "transport", "QUICTransport": "transport"},
)
