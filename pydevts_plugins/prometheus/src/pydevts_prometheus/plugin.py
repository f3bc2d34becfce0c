"""Registers the ``prometheus`` connection plugin with pydevts (entry point ``pydevts:prometheus``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl
from pydevts.plugins import lazy


@hookimpl
def pydevts_register_connection_plugins() -> Mapping[str, Any]:
    # Imported when a node enables it, not when plugins are discovered (node start-up time).
    return {"prometheus": lazy("pydevts_prometheus.exporter:PrometheusPlugin")}
