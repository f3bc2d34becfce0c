"""Registers the ``otel`` connection plugin with pydevts (entry point ``pydevts:otel``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl
from pydevts.plugins import lazy


@hookimpl
def pydevts_register_connection_plugins() -> Mapping[str, Any]:
    # Imported when first used, not when plugins are discovered (node start-up time).
    return {"otel": lazy("pydevts_otel.tracer:OtelPlugin")}
