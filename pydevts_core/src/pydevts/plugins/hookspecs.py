"""Every pydevts hook, in one module.

A plugin is a module (or object) with functions marked ``@pydevts.hookimpl``,
declared under the ``pydevts`` entry-point group of its distribution::

    [project.entry-points.pydevts]
    tcp = "pydevts_tcp.plugin"

Hooks contribute things by name; they run synchronously, once, when a plugin
manager is asked what is installed, and must do no IO. pydevts' own
transports, routers and serializers register through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "pydevts"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# A factory takes keyword settings (e.g. ``max_frame_size``) and returns an
# implementation of the matching protocol in :mod:`pydevts.protocols`.
Factory = Callable[..., Any]


# ---------------------------------------------------------------- registration


@hookspec
def pydevts_register_transports() -> Mapping[str, Factory]:  # type: ignore[empty-body]
    """Return ``{name: factory}`` of :class:`~pydevts.protocols.Transport` implementations.

    The factory is called with keyword settings: ``max_frame_size`` (int).
    """


@hookspec
def pydevts_register_routers() -> Mapping[str, Factory]:  # type: ignore[empty-body]
    """Return ``{name: factory}`` of routers.

    The factory is called with the router options the user gave as keyword
    arguments (``Node(router_options=...)``, ``--router-option``) and returns
    a :class:`~pydevts.routing.RouterMachine` (core runs it on its links) or,
    for a router with IO of its own, a :class:`~pydevts.protocols.Router`.
    """


@hookspec
def pydevts_register_serializers() -> Mapping[str, Factory]:  # type: ignore[empty-body]
    """Return ``{name: factory}`` of :class:`~pydevts.protocols.Serializer` implementations.

    The factory is called with keyword options given by the user
    (``trusted=True`` for serializers that need it).
    """


@hookspec
def pydevts_register_connection_plugins() -> Mapping[str, Factory]:  # type: ignore[empty-body]
    """Return ``{name: factory}`` of :class:`~pydevts.protocols.ConnectionPlugin` implementations.

    Connection plugins are found here but enabled only when a node names
    them (``Node(connection_plugins=[...])`` or ``pydevts node --plugin``).
    """
