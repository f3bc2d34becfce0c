"""The old home of :mod:`pydevts.node.inspect`, kept only for the ``latencies`` entry point.

``pydevts_core/pyproject.toml`` names ``pydevts.node.inspect``; an install made before
the core was regrouped still names ``pydevts.inspect`` until it is reinstalled, and
this module keeps that entry point loading. Nothing in pydevts imports it.
"""

from __future__ import annotations

from .node.inspect import pydevts_register_connection_plugins

__all__ = ["pydevts_register_connection_plugins"]
