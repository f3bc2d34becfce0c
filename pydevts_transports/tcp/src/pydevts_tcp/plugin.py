"""Registers the ``tcp`` transport with pydevts (entry point ``pydevts:tcp``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl
from pydevts.plugins import lazy


@hookimpl
def pydevts_register_transports() -> Mapping[str, Any]:
    # Imported when first used, not when plugins are discovered (node start-up time).
    return {"tcp": lazy("pydevts_tcp.transport:TCPTransport")}
