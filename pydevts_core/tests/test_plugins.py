"""Plugin discovery: entry points, given plugins, broken plugins, unknown names."""

from __future__ import annotations

import importlib.metadata
import logging
import re
import subprocess
import sys
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pydevts
import pydevts.plugins.registry
import pytest
from pydevts.errors import ConfigurationError, PluginNotFoundError
from pydevts.plugins import AUTOLOAD_ENV, ENTRY_POINT_GROUP, Registry, create_plugin_manager, lazy

INSTALLED = [
    ("transport", "tcp", "pydevts-tcp", "pydevts_tcp.transport", "TCPTransport"),
    ("router", "peer", "pydevts-peer", "pydevts_peer.router", "PeerRouter"),
    ("serializer", "msgpack", "pydevts-msgpack", "pydevts_msgpack", "MsgpackSerializer"),
]


@pytest.fixture(autouse=True)
def _autoload_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's shell must not change what these tests see.
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)


class FakeTransport:
    name = "fake"


class GivenTransports:
    """A plugin given as an object (a class here), not an entry point."""

    @pydevts.hookimpl
    def pydevts_register_transports() -> Mapping[str, Any]:  # type: ignore[misc]
        return {"tcp": FakeTransport, "mem": FakeTransport}


class RaisingPlugin:
    @pydevts.hookimpl
    def pydevts_register_serializers() -> Mapping[str, Any]:  # type: ignore[misc]
        raise RuntimeError("boom in hook")


class GoodSerializers:
    @pydevts.hookimpl
    def pydevts_register_serializers() -> Mapping[str, Any]:  # type: ignore[misc]
        return {"given-ser": object}


# ------------------------------------------------------------------ entry points


def test_installed_entry_points_are_declared() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert {"tcp", "peer", "msgpack"} <= set(eps)


@pytest.mark.parametrize(("kind", "name", "dist", "module", "cls"), INSTALLED)
def test_entry_points_are_discovered(kind: str, name: str, dist: str, module: str, cls: str) -> None:
    registry = Registry()
    assert name in registry.names(kind)
    info = registry.info(kind, name)
    assert info.kind == kind
    assert info.name == name
    assert info.distribution == dist
    assert info.version == "0.3.0"
    assert info.target == f"{module}:{cls}"
    assert registry.broken == []


def test_discovery_imports_no_implementation() -> None:
    """Finding plugins is on every node's start-up path: it must not import aioquic & co."""
    code = (
        "import sys; from pydevts.plugins import Registry; r = Registry(); "
        "assert 'quic' in r.names('transport') and 'hop' in r.names('router'); "
        "print(sorted(m for m in ('aioquic', 'cryptography', 'pydevts_quic.transport', "
        "'pydevts_hop.router', 'pydevts_tcp.transport') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_lazy_factory_imports_on_use_and_names_a_missing_module() -> None:
    made = lazy("pydevts_tcp.transport:TCPTransport")(max_frame_size=4096)
    assert type(made).__name__ == "TCPTransport" and made.max_frame_size == 4096
    with pytest.raises(
        ConfigurationError,
        match=re.escape("cannot load nowhere.at_all:Thing: ModuleNotFoundError: No module named 'nowhere'"),
    ):
        lazy("nowhere.at_all:Thing")()
    with pytest.raises(ValueError, match=re.escape("expected 'package.module:Name'")):
        lazy("no_colon")


def test_registry_all_is_ordered_by_kind_then_name() -> None:
    infos = Registry().all()
    keys = [(pydevts.plugins.KINDS.index(i.kind), i.name) for i in infos]
    assert keys == sorted(keys)
    assert {(i.kind, i.name) for i in infos} >= {(k, n) for k, n, *_ in INSTALLED}


def test_create_instantiates_with_settings() -> None:
    transport = Registry().create("transport", "tcp", max_frame_size=1234)
    assert transport.name == "tcp"
    assert transport.max_frame_size == 1234
    assert isinstance(transport, pydevts.Transport)
    serializer = Registry().create("serializer", "msgpack")
    assert isinstance(serializer, pydevts.Serializer)


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", " on "])
def test_env_var_disables_autoload(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, value)
    registry = Registry(create_plugin_manager())
    assert registry.names("transport") == []
    assert registry.names("router") == []
    assert registry.names("serializer") == []
    assert registry.all() == []


@pytest.mark.parametrize("value", ["", "0", "false", "no", " False "])
def test_env_var_falsy_values_keep_autoload(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, value)
    assert "tcp" in Registry(create_plugin_manager()).names("transport")


def test_explicit_autoload_argument_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert "tcp" in Registry(create_plugin_manager(autoload=True)).names("transport")
    monkeypatch.delenv(AUTOLOAD_ENV)
    assert Registry(create_plugin_manager(autoload=False)).names("transport") == []


# ------------------------------------------------------------------ given plugins


def test_given_plugin_registers_without_autoload() -> None:
    registry = Registry(create_plugin_manager([GivenTransports], autoload=False))
    assert registry.names("transport") == ["mem", "tcp"]
    info = registry.info("transport", "mem")
    assert info.factory is FakeTransport
    assert info.distribution == "(given)"
    assert info.version == ""


def test_given_module_like_object_registers() -> None:
    @pydevts.hookimpl
    def pydevts_register_routers() -> Mapping[str, Any]:
        return {"star": object}

    plugin = SimpleNamespace(__name__="my_routers", pydevts_register_routers=pydevts_register_routers)
    registry = Registry(create_plugin_manager([plugin], autoload=False))
    assert registry.names("router") == ["star"]


def test_given_plugin_adds_names_next_to_entry_points() -> None:
    registry = Registry(create_plugin_manager([GivenTransports]))
    assert {"tcp", "mem"} <= set(registry.names("transport"))
    assert registry.info("transport", "mem").factory is FakeTransport
    assert registry.info("router", "peer").distribution == "pydevts-peer"


def test_given_plugin_wins_over_entry_point_of_same_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pydevts.plugins"):
        registry = Registry(create_plugin_manager([GivenTransports]))
    info = registry.info("transport", "tcp")
    assert info.factory is FakeTransport
    assert info.distribution == "(given)"
    # the entry point's "tcp" is the one reported as ignored
    assert any("from pydevts-tcp ignored" in r.getMessage() for r in caplog.records)


def test_duplicate_name_is_registered_once_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Whichever wins, a name clash keeps one factory and logs the other as ignored."""
    with caplog.at_level(logging.WARNING, logger="pydevts.plugins"):
        registry = Registry(create_plugin_manager([GivenTransports]))
    assert registry.names("transport").count("tcp") == 1
    assert any("'tcp'" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ broken plugins


def test_plugin_whose_hook_raises_is_skipped_and_listed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pydevts.plugins"):
        registry = Registry(create_plugin_manager([RaisingPlugin, GoodSerializers]))
    # the others still work
    assert "given-ser" in registry.names("serializer")
    assert "msgpack" in registry.names("serializer")
    assert "tcp" in registry.names("transport")
    [broken] = registry.broken
    assert broken.name == "RaisingPlugin"
    assert broken.distribution == "(given)"
    assert "pydevts_register_serializers" in broken.reason
    assert "RuntimeError: boom in hook" in broken.reason
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("RaisingPlugin" in m and "boom in hook" in m for m in messages)


def test_hook_returning_none_contributes_nothing() -> None:
    class NonePlugin:
        @pydevts.hookimpl
        def pydevts_register_transports() -> None:  # type: ignore[misc]
            return None

    registry = Registry(create_plugin_manager([NonePlugin], autoload=False))
    assert registry.names("transport") == []
    assert registry.broken == []


class _FakeDist:
    name = "pydevts-broken"
    version = "9.9.9"


class _BrokenEntryPoint:
    name = "broken"
    group = ENTRY_POINT_GROUP
    value = "pydevts_broken_does_not_exist.plugin"
    dist = _FakeDist()

    def load(self) -> Any:
        raise ImportError("No module named 'pydevts_broken_does_not_exist'")


def test_broken_entry_point_is_skipped_with_logged_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    calls: list[dict[str, Any]] = []

    def fake_entry_points(**kwargs: Any) -> list[Any]:
        calls.append(kwargs)
        return [_BrokenEntryPoint(), *real]

    monkeypatch.setattr(pydevts.plugins.registry.importlib.metadata, "entry_points", fake_entry_points)
    with caplog.at_level(logging.WARNING, logger="pydevts.plugins"):
        registry = Registry(create_plugin_manager())
    assert calls == [{"group": ENTRY_POINT_GROUP}]
    [broken] = registry.broken
    assert broken.name == "broken"
    assert broken.distribution == "pydevts-broken"
    assert broken.reason.startswith("ImportError:")
    assert "pydevts_broken_does_not_exist" in broken.reason
    assert any(
        "broken" in r.getMessage() and "pydevts-broken" in r.getMessage() and "ImportError" in r.getMessage()
        for r in caplog.records
    )
    # the healthy plugins are still there
    assert "tcp" in registry.names("transport")
    assert "peer" in registry.names("router")
    assert "msgpack" in registry.names("serializer")


# ------------------------------------------------------------------ unknown names


@pytest.mark.parametrize(
    ("kind", "name", "installed"), [("transport", "udp", "tcp"), ("router", "gossip", "peer")]
)
def test_unknown_name_raises_plugin_not_found(kind: str, name: str, installed: str) -> None:
    registry = Registry()
    with pytest.raises(PluginNotFoundError) as info:
        registry.info(kind, name)
    message = str(info.value)
    assert "not installed or misspelled" in message
    assert "pip install" not in message  # not a name of ours: never suggest installing a typo
    assert installed in message
    assert info.value.kind == kind
    assert info.value.name == name
    assert installed in info.value.available
    assert isinstance(info.value, ConfigurationError)
    with pytest.raises(PluginNotFoundError):
        registry.create(kind, name)


def test_unknown_name_with_nothing_installed_says_none() -> None:
    registry = Registry(create_plugin_manager(autoload=False))
    with pytest.raises(PluginNotFoundError, match=r"installed connection plugins: none") as info:
        registry.info("connection_plugin", "auth")
    assert info.value.kind == "connection plugin"
    assert "pip install" not in str(info.value)


def test_a_lazy_implementation_that_cannot_load_is_a_clear_error_and_listed_broken() -> None:
    class Broken:
        @pydevts.hookimpl
        def pydevts_register_transports(self) -> Mapping[str, Any]:
            return {"gone": lazy("no_such_package.transport:GoneTransport")}

    registry = Registry(create_plugin_manager([Broken()], autoload=False))
    assert "gone" in registry.names("transport")  # discovery imports nothing
    with pytest.raises(
        ConfigurationError, match=re.escape("cannot load no_such_package.transport:GoneTransport")
    ):
        registry.create("transport", "gone", max_frame_size=1024)
    broken = registry.check()
    assert [b.name for b in broken] == ["gone"] and "No module named 'no_such_package'" in broken[0].reason
    assert "gone" not in registry.names("transport")


def test_options_beside_a_plugin_object_are_refused() -> None:
    from pydevts import Node
    from pydevts_peer import PeerRouter

    node = Node(7000, router=PeerRouter(), router_options={"probe_interval": 1})
    with pytest.raises(ConfigurationError, match="router_options apply to a router chosen by name"):
        node._choices.resolve(max_frame_size=node.max_frame_size)


@pytest.mark.parametrize(
    ("kind", "name", "options", "error"),
    [
        ("router", "hop", {"tick_interval": "nan"}, "tick_interval='nan' is not a float"),
        ("router", "hop", {"reorder_wait": "-1"}, "reorder_wait must be a number of seconds, 0 or more"),
        ("router", "hop", {"connect_backoff": "0"}, "connect_backoff must be a positive number"),
        ("router", "peer", {"probe_interval": "0"}, "probe_interval must be a positive number"),
        ("router", "peer", {"max_backoff": "0"}, "max_backoff must be a positive number"),
        ("router", "peer", {"probe_timeout": "2"}, "probe_timeout must be shorter than probe_interval"),
    ],
)
def test_bad_router_option_values_are_configuration_errors(
    kind: str, name: str, options: dict[str, str], error: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(error)):
        Registry().create(kind, name, **options)
