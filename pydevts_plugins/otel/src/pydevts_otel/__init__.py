"""pydevts-otel: OpenTelemetry tracing for pydevts nodes (the ``otel`` connection plugin).

``Node(connection_plugins=["otel"])`` (spans go to the global tracer
provider) or ``Node(connection_plugins=[OtelPlugin(tracer_provider=...)])``;
see :mod:`pydevts_otel.tracer` for the spans it makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

from ._version import __version__

if TYPE_CHECKING:
    from .tracer import INSTRUMENTATION_NAME, OtelPlugin

__all__ = ["INSTRUMENTATION_NAME", "OtelPlugin", "__version__"]

# OpenTelemetry is imported on first use, not when pydevts discovers plugins.
__getattr__, __dir__ = lazy_exports(__name__, {"OtelPlugin": "tracer", "INSTRUMENTATION_NAME": "tracer"})
