"""QUIC transport for pydevts: frames on one QUIC stream per connection, TLS 1.3.

``pip install pydevts-quic``, then ``Node(..., transport="quic")`` or
``pydevts node --transport quic``. See :class:`QUICTransport` for the options
(certificates, idle timeout, datagram size).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tls import TLSSettings, make_self_signed
    from .transport import ALPN, QUICTransport

__all__ = ["ALPN", "QUICTransport", "TLSSettings", "make_self_signed"]

# Imported on first use: plugin discovery imports this package on every node start.
_WHERE = {"TLSSettings": "tls", "make_self_signed": "tls", "ALPN": "transport", "QUICTransport": "transport"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
