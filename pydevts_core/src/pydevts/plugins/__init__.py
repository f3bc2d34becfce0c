"""The plugin system: finding transports, routers, serializers and connection plugins.

:mod:`~pydevts.plugins.registry` (``create_plugin_manager``, :class:`Registry`,
``lazy``, ``lazy_exports``; re-exported here, so ``from pydevts.plugins import
Registry`` is the plugin API), :mod:`~pydevts.plugins.hookspecs` (the pluggy
hooks a distribution implements: ``hookimpl``) and
:mod:`~pydevts.plugins.choices` (a node's transport, router and serializer,
picked by name).

Layer: imports only the top-level vocabulary (at load time); the node, the
client and the CLI use it, not the other way round.
"""

from __future__ import annotations

from .registry import (
    AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    KINDS,
    BrokenPlugin,
    PluginInfo,
    Registry,
    create_plugin_manager,
    lazy,
    lazy_exports,
)

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "BrokenPlugin",
    "create_plugin_manager",
    "lazy",
    "lazy_exports",
    "PluginInfo",
    "Registry",
]
