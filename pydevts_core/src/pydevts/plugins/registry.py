"""Finding transports, routers, serializers and connection plugins.

Nothing is loaded at import time. :func:`create_plugin_manager` loads the
``pydevts`` entry points (unless ``PYDEVTS_DISABLE_PLUGIN_AUTOLOAD`` is set)
plus any plugin objects given to it; a plugin that fails to import or whose
hook raises is skipped with a logged reason. :class:`Registry` answers "which
factory is called NAME" and "what is installed".
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from ..errors import ConfigurationError, PluginNotFoundError
from . import hookspecs

if TYPE_CHECKING:
    pass

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "BrokenPlugin",
    "PluginInfo",
    "Registry",
    "create_plugin_manager",
    "lazy",
    "lazy_exports",
]

log = logging.getLogger("pydevts.plugins")

ENTRY_POINT_GROUP = "pydevts"
AUTOLOAD_ENV = "PYDEVTS_DISABLE_PLUGIN_AUTOLOAD"
KINDS = ("transport", "router", "serializer", "connection_plugin")
_HOOKS = {
    "transport": "pydevts_register_transports",
    "router": "pydevts_register_routers",
    "serializer": "pydevts_register_serializers",
    "connection_plugin": "pydevts_register_connection_plugins",
}
#: Names the pydevts project publishes, and their distributions: only for these (or a plugin
#: whose distribution is known) does a missing name get a ``pip install`` hint.
_OURS: dict[str, dict[str, str]] = {
    "transport": {"tcp": "pydevts-tcp", "quic": "pydevts-quic"},
    "router": {"peer": "pydevts-peer", "hop": "pydevts-hop"},
    "serializer": {"msgpack": "pydevts-msgpack", "pickle": "pydevts-pickle"},
    "connection_plugin": {"prometheus": "pydevts-prometheus", "otel": "pydevts-otel"},
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered implementation."""

    kind: str
    name: str
    distribution: str
    version: str
    factory: Any

    @property
    def target(self) -> str:
        """``"package.module:Name"`` of what the factory makes (without importing a lazy one)."""
        target = getattr(self.factory, "target", None)
        if isinstance(target, str):
            return target
        module = getattr(self.factory, "__module__", "?")
        return f"{module}:{getattr(self.factory, '__qualname__', repr(self.factory))}"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that was skipped, and why."""

    name: str
    distribution: str
    reason: str


def _autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def create_plugin_manager(
    plugins: Iterable[object] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """Build a plugin manager with the pydevts hookspecs.

    ``plugins`` are registered first (and win over entry points that register
    the same name). ``autoload=None`` loads entry points unless the
    ``PYDEVTS_DISABLE_PLUGIN_AUTOLOAD`` environment variable is set.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.pydevts_dists = {}  # type: ignore[attr-defined]
    pm.pydevts_broken = []  # type: ignore[attr-defined]
    for plugin in plugins:
        name = pm.register(plugin)
        if name is not None:
            pm.pydevts_dists[name] = ("(given)", "")  # type: ignore[attr-defined]
    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else ""
        plugin_name = f"{dist}:{ep.name}"
        if pm.has_plugin(plugin_name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=plugin_name)
        except Exception as exc:  # a broken plugin must not break the node
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("skipping pydevts plugin %s from %s: %s", ep.name, dist, reason)
            pm.pydevts_broken.append(BrokenPlugin(ep.name, dist, reason))  # type: ignore[attr-defined]
            continue
        pm.pydevts_dists[plugin_name] = (dist, version)  # type: ignore[attr-defined]


class lazy:
    """A factory that imports ``"package.module:Name"`` only when first called.

    Registration hooks run whenever plugins are discovered (every node start,
    ``pydevts plugins``); returning ``{"quic": lazy("pydevts_quic.transport:QUICTransport")}``
    keeps heavy imports (aioquic, cryptography) out of that path until the
    implementation is really used. An import failure is a ConfigurationError
    naming the module.
    """

    def __init__(self, target: str) -> None:
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise ValueError(f"lazy({target!r}): expected 'package.module:Name'")
        self.target = target

    def load(self) -> Any:
        """Import and return the implementation; ConfigurationError (naming it) if that fails."""
        module_name, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # ImportError, or anything its import raises
            raise ConfigurationError(
                f"cannot load {self.target}: {type(exc).__name__}: {exc} "
                "(is its distribution installed whole?)"
            ) from exc

    def __call__(self, **settings: Any) -> Any:
        return self.load()(**settings)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that import each exported name from
    its submodule (``where``: name -> submodule) on first use.

    For plugin packages: discovery imports the package of every plugin at
    each node start, so its ``__init__`` should import nothing heavy::

        __getattr__, __dir__ = lazy_exports(__name__, {"MyTransport": "transport"})
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


class Registry:
    """Names to factories, per kind, gathered from a plugin manager's hooks."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else create_plugin_manager()
        self._infos: dict[str, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
        self.broken: list[BrokenPlugin] = list(getattr(self.pm, "pydevts_broken", []))
        dists: Mapping[str, tuple[str, str]] = getattr(self.pm, "pydevts_dists", {})
        for kind, hook_name in _HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            # Registration order is "given plugins, then entry points"; the
            # first to register a name keeps it, so given plugins win.
            for impl in hook.get_hookimpls():
                dist, version = dists.get(impl.plugin_name, (impl.plugin_name, ""))
                try:
                    found = impl.function()
                    items = dict(found or {})
                except Exception as exc:
                    reason = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    log.warning("skipping pydevts plugin %s: %s", impl.plugin_name, reason)
                    self.broken.append(BrokenPlugin(impl.plugin_name, dist, reason))
                    continue
                for name, factory in items.items():
                    known = self._infos[kind].get(name)
                    if known is not None:
                        log.warning(
                            "%s %r from %s ignored: already provided by %s",
                            kind,
                            name,
                            dist,
                            known.distribution,
                        )
                        continue
                    self._infos[kind][name] = PluginInfo(kind, name, dist, version, factory)

    def names(self, kind: str) -> list[str]:
        return sorted(self._infos[kind])

    def info(self, kind: str, name: str) -> PluginInfo:
        """Return the implementation ``name`` of ``kind``, or raise PluginNotFoundError."""
        try:
            return self._infos[kind][name]
        except KeyError:
            raise self._not_found(kind, name) from None

    def _not_found(self, kind: str, name: str) -> PluginNotFoundError:
        """The error for a missing name: the closest working name, and what to install if known."""
        self._check_kind(kind)  # a plugin that cannot load is neither offered nor suggested
        label, available, ours = kind.replace("_", " "), self.names(kind), _OURS.get(kind, {})
        elsewhere = any(name in names for k, names in _OURS.items() if k != kind)
        for b in self.broken:
            if b.name.rpartition(":")[2] == name and not elsewhere:
                dist = ours.get(name) or (None if b.distribution in ("?", "(given)") else b.distribution)
                return PluginNotFoundError(label, name, available, install=dist, broken=b.reason)
        if name in ours:
            return PluginNotFoundError(label, name, available, install=ours[name])
        unusable = {b.name.rpartition(":")[2] for b in self.broken}
        candidates = {c.lower(): c for c in [*ours, *available] if c not in unusable}
        close = difflib.get_close_matches(name.lower(), list(candidates), n=1, cutoff=0.6)
        hint = candidates[close[0]] if close else None
        dist = ours.get(hint) if hint and hint not in available else None
        return PluginNotFoundError(label, name, available, suggestion=hint, install=dist)

    def create(self, kind: str, name: str, /, **settings: Any) -> Any:
        """Instantiate the implementation ``name`` of ``kind`` with ``settings``.

        Settings the implementation does not take are a ConfigurationError
        naming them and the ones it does take; a string given for a parameter
        whose default is a bool, int or float is converted (command-line options).
        """
        return self._make(kind, name, settings, {})

    def _make(self, kind: str, name: str, options: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
        """Make ``name`` with the user's ``options`` and the node's own ``settings``."""
        info = self.info(kind, name)
        factory = info.factory.load() if isinstance(info.factory, lazy) else info.factory
        what = f"{kind.replace('_', ' ')} {name!r} from {info.distribution}"
        checked = _checked_options(what, factory, options, settings)
        try:
            return factory(**checked, **settings)
        except (TypeError, ValueError) as exc:  # bad settings
            given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "its defaults"
            raise ConfigurationError(f"{what} cannot be made with {given}: {exc}") from exc

    def check(self) -> list[BrokenPlugin]:
        """Import every lazily registered implementation; those that fail are moved to ``broken``.

        Discovery does not import implementations (start-up time); ``pydevts
        plugins`` calls this so that a plugin missing a dependency shows up.
        """
        for kind in KINDS:
            self._check_kind(kind)
        return self.broken

    def _check_kind(self, kind: str) -> None:
        for name, info in list(self._infos[kind].items()):
            if isinstance(info.factory, lazy):
                try:
                    info.factory.load()
                except ConfigurationError as exc:
                    del self._infos[kind][name]
                    self.broken.append(BrokenPlugin(name, info.distribution, str(exc)))

    def all(self) -> list[PluginInfo]:
        """Every registered implementation, ordered by kind then name."""
        return [self._infos[kind][name] for kind in KINDS for name in self.names(kind)]


def _checked_options(
    what: str, factory: Any, options: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """``options`` checked against ``factory``'s signature, strings converted to its defaults' types."""
    clash = sorted(set(options) & set(settings))
    if clash:
        raise ConfigurationError(f"{what}: {', '.join(clash)} is set by the node, not as an option")
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return dict(options)
    named = {
        p.name: p.default
        for p in parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - set(named))
    if unknown and not takes_any:  # a factory taking **options checks them itself
        accepted = ", ".join(sorted(set(named) - set(settings))) or "none"
        raise ConfigurationError(f"{what}: unknown option(s): {', '.join(unknown)} (accepted: {accepted})")
    return {k: _converted(what, k, v, named.get(k)) for k, v in options.items()}


def _converted(what: str, key: str, value: Any, default: Any) -> Any:
    """A string ``value`` as the type of ``default`` when that is bool, int or float."""
    kind = type(default)
    if not isinstance(value, str) or kind not in (bool, int, float):
        return value
    text = value.strip().lower()
    if kind is bool and text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return text in ("1", "true", "yes", "on")
    if kind is not bool:
        try:
            number = kind(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    article = "an" if kind is int else "a"
    raise ConfigurationError(f"{what}: option {key}={value!r} is not {article} {kind.__name__}")
