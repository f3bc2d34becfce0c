"""Registers the ``quic`` transport with pydevts (entry point ``pydevts:quic``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl


@hookimpl
def pydevts_register_transports() -> Mapping[str, Any]:
    from .transport import QUICTransport

    return {"quic": QUICTransport}
