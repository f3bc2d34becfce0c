"""QUIC transport for pydevts: frames on one QUIC stream per connection, TLS 1.3.

``pip install pydevts-quic``, then ``Node(..., transport="quic")`` or
``pydevts node --transport quic``. See :class:`QUICTransport` for the options
(certificates, idle timeout, datagram size).
"""

from .tls import TLSSettings, make_self_signed
from .transport import ALPN, QUICTransport

__all__ = ["ALPN", "QUICTransport", "TLSSettings", "make_self_signed"]
