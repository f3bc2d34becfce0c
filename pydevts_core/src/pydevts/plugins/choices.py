"""A node's choice of plugins (names or objects) and their options, made into implementations."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .registry import Registry

if TYPE_CHECKING:
    from ..protocols import ConnectionPlugin, Router, Serializer, Transport
    from ..routing.machine import RouterMachine

__all__ = ["Choices", "resolve"]


def resolve(
    registry: Registry | None,
    kind: str,
    choice: Any,
    options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Any:
    """``choice`` itself, or — when it is a name — the implementation the registry makes.

    ``options`` (a user's ``*_options``) configure a plugin chosen by name
    only; given beside an object they are refused.
    """
    _check_options(kind, choice, options)
    if isinstance(choice, str):
        assert registry is not None, "a registry is needed to resolve names"
        return registry._make(kind, choice, options or {}, settings)
    return choice


def _check_options(kind: str, choice: Any, options: Mapping[str, Any] | None) -> None:
    if options and not isinstance(choice, str):
        raise ConfigurationError(
            f"{kind}_options apply to a {kind} chosen by name; configure the {kind} object itself"
        )


@dataclass
class Choices:
    """A node's plugin choices (names or objects) and the options for those chosen by name.

    ``by_name`` are options keyed by plugin *name*, for any kind
    (``Node(plugin_options={"prometheus": {"port": 9464}})``); they join a
    kind's own ``*_options``. A name that is not chosen is an error naming
    what is.
    """

    transport: Any
    router: Any
    serializer: Any
    connection_plugins: list[Any]
    options: dict[str, Mapping[str, Any]]  # kind -> the user's ``*_options``
    registry: Registry | None = None
    by_name: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def _by_name(self) -> dict[int, dict[str, Any]]:
        """The options by name, as {index in the chosen list: options}; checked first."""
        chosen = [self.transport, self.router, self.serializer, *self.connection_plugins]
        names = [c for c in chosen if isinstance(c, str)]
        found: dict[int, dict[str, Any]] = {}
        for name, options in self.by_name.items():
            if not isinstance(options, Mapping):
                raise ConfigurationError(f"plugin_options[{name!r}] must be a mapping of option to value")
            if name not in names:
                objects = [_plugin_name(c) for c in chosen if not isinstance(c, str)]
                hint = (
                    f" (given as objects, configure them directly: {', '.join(objects)})" if objects else ""
                )
                raise ConfigurationError(
                    f"plugin_options name {name!r}, which this node does not use; "
                    f"it uses {', '.join(names) or 'no plugin chosen by name'}{hint}"
                )
            for i, c in enumerate(chosen):
                if c == name:
                    found[i] = dict(options)
        return found

    def resolve(
        self, **transport_settings: Any
    ) -> tuple[Transport, Router | RouterMachine, Serializer, list[ConnectionPlugin]]:
        """Make the transport, router, serializer and plugins (a registry only if a name needs one)."""
        chosen = (self.transport, self.router, self.serializer, *self.connection_plugins)
        for kind, options in self.options.items():  # every check before anything is made
            _check_options(kind, getattr(self, kind), options)
        named = self._by_name()
        if self.registry is None and any(isinstance(c, str) for c in chosen):
            self.registry = Registry()
        pick = functools.partial(resolve, self.registry)

        def opts(i: int, kind: str) -> dict[str, Any]:
            return {**(self.options.get(kind) or {}), **named.get(i, {})}

        return (
            pick("transport", self.transport, opts(0, "transport"), **transport_settings),
            pick("router", self.router, opts(1, "router")),
            pick("serializer", self.serializer, opts(2, "serializer")),
            [pick("connection_plugin", p, named.get(3 + i)) for i, p in enumerate(self.connection_plugins)],
        )


def _plugin_name(plugin: Any) -> str:
    return str(getattr(plugin, "name", type(plugin).__name__))
