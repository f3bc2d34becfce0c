"""Registers the in-memory transport as ``memory`` (entry point ``pydevts:memory`` of pydevts-core)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plugins.hookspecs import hookimpl
from ..plugins.registry import lazy


@hookimpl
def pydevts_register_transports() -> Mapping[str, Any]:
    return {"memory": lazy("pydevts.testing.memory:MemoryTransport")}
