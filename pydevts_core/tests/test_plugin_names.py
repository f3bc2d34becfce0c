"""Asking for a plugin by a wrong name, or with wrong options: what the error says.

A typo gets the closest working name ("did you mean 'quic'?"); a ``pip
install`` hint names only a distribution pydevts knows (one of its own, or a
broken plugin's); a broken plugin is never offered as installed. Options a
plugin does not take are named with the ones it does take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydevts
import pytest
from pydevts.errors import ConfigurationError, PluginNotFoundError
from pydevts.plugins import AUTOLOAD_ENV, Registry, create_plugin_manager, lazy
from pydevts.plugins.choices import Choices


@pytest.fixture(autouse=True)
def _autoload_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)


class Transport:
    name = "t"

    def __init__(
        self, *, max_frame_size: int = 1024, timeout: float = 5.0, retries: int = 1, fast: bool = False
    ):
        self.max_frame_size, self.timeout, self.retries, self.fast = max_frame_size, timeout, retries, fast


class Transports:
    @pydevts.hookimpl
    def pydevts_register_transports(self) -> Mapping[str, Any]:
        return {
            "tcp": Transport,
            "quic": Transport,
            "anything": lambda **settings: settings,  # takes any option: checks them itself
            "fancy": lazy("no_such_package.transport:Fancy"),  # installed, but cannot load
        }


def registry(*plugins: object) -> Registry:
    return Registry(create_plugin_manager(plugins, autoload=False))


def not_found(reg: Registry, kind: str, name: str) -> PluginNotFoundError:
    with pytest.raises(PluginNotFoundError) as info:
        reg.info(kind, name)
    assert isinstance(info.value, ConfigurationError)
    return info.value


def test_a_typo_of_an_installed_name_suggests_it_and_no_install() -> None:
    error = not_found(registry(Transports()), "transport", "qiuc")
    assert error.suggestion == "quic" and error.install is None
    assert "did you mean 'quic'?" in str(error)
    assert "pip install" not in str(error)


def test_case_does_not_hide_the_suggestion() -> None:
    assert not_found(registry(Transports()), "transport", "TCP").suggestion == "tcp"


def test_a_name_of_ours_that_is_not_installed_names_its_distribution() -> None:
    error = not_found(registry(), "transport", "quic")
    assert error.install == "pydevts-quic" and error.suggestion is None
    assert "transport 'quic' is not installed or misspelled — try `pip install pydevts-quic`" in str(error)
    assert "(installed transports: none)" in str(error)
    assert not_found(registry(), "router", "hop").install == "pydevts-hop"
    assert not_found(registry(), "serializer", "pickle").install == "pydevts-pickle"


def test_a_typo_of_a_name_of_ours_that_is_not_installed_suggests_both() -> None:
    error = not_found(registry(), "router", "hopp")
    assert (error.suggestion, error.install) == ("hop", "pydevts-hop")
    assert "did you mean 'hop' (not installed: `pip install pydevts-hop`)?" in str(error)


def test_an_unknown_name_gets_no_install_hint_and_no_far_fetched_suggestion() -> None:
    error = not_found(registry(Transports()), "transport", "udp")
    assert error.suggestion is None and error.install is None
    assert "pip install" not in str(error) and "did you mean" not in str(error)
    assert "transport 'udp' is not installed or misspelled" in str(error)


def test_a_name_of_another_kind_is_not_suggested() -> None:
    error = not_found(registry(Transports()), "router", "tcpp")
    assert error.suggestion is None and "tcp" not in error.available


def test_a_broken_plugin_is_neither_listed_nor_suggested() -> None:
    reg = registry(Transports())
    assert "fancy" in reg.names("transport")  # discovery imports nothing
    error = not_found(reg, "transport", "fancyy")
    assert "fancy" not in error.available and error.suggestion is None
    assert "did you mean" not in str(error) and "(installed transports: anything, quic, tcp)" in str(error)
    broken = not_found(reg, "transport", "fancy")  # asked for by its name: say why it cannot be used
    assert broken.broken is not None and "no_such_package" in broken.broken
    assert "transport 'fancy' is installed but broken" in str(broken)
    assert broken.install is None  # given as an object: no distribution to reinstall


def test_a_broken_plugin_of_ours_says_what_to_reinstall() -> None:
    class BrokenQuic:
        @pydevts.hookimpl
        def pydevts_register_transports(self) -> Mapping[str, Any]:
            return {"quic": lazy("no_such_package.quic:QUICTransport")}

    reg = registry(BrokenQuic())
    error = not_found(reg, "transport", "qiuc")
    assert error.suggestion is None  # broken: not offered
    error = not_found(reg, "transport", "quic")  # now known to be broken
    assert "is installed but broken" in str(error)
    assert "pip install --force-reinstall pydevts-quic" in str(error)


# ------------------------------------------------------------------ options


def test_unknown_options_are_named_with_the_accepted_ones() -> None:
    reg = registry(Transports())
    with pytest.raises(ConfigurationError) as info:
        reg.create("transport", "tcp", bogus="1", other=2)
    assert str(info.value) == (
        "transport 'tcp' from (given): unknown option(s): bogus, other "
        "(accepted: fast, max_frame_size, retries, timeout)"
    )


def test_options_from_a_node_leave_out_what_the_node_sets() -> None:
    choices = Choices("tcp", "peer", "msgpack", [], {"transport": {"bogus": "1"}}, registry(Transports()))
    with pytest.raises(
        ConfigurationError, match=r"unknown option\(s\): bogus \(accepted: fast, retries, timeout\)"
    ):
        choices.resolve(max_frame_size=2048)
    choices.options["transport"] = {"max_frame_size": "1"}
    with pytest.raises(ConfigurationError, match="max_frame_size is set by the node"):
        choices.resolve(max_frame_size=2048)


def test_string_options_become_the_type_of_their_default() -> None:
    made = registry(Transports()).create("transport", "tcp", timeout="2.5", retries="3", fast="yes")
    assert (made.timeout, made.retries, made.fast) == (2.5, 3, True)
    assert registry(Transports()).create("transport", "tcp", fast="off").fast is False
    for option, value, kind in [
        ("timeout", "soon", "a float"),
        ("timeout", "nan", "a float"),
        ("retries", "1.5", "an int"),
        ("fast", "maybe", "a bool"),
    ]:
        with pytest.raises(ConfigurationError, match=f"option {option}='{value}' is not {kind}"):
            registry(Transports()).create("transport", "tcp", **{option: value})


def test_a_factory_taking_any_option_gets_them_as_given() -> None:
    assert registry(Transports()).create("transport", "anything", bogus="1") == {"bogus": "1"}
