"""The router contract on the simulator (pydevts.testing.check_router_simulated).

litemesh (and the peer router) must pass every rule for seeds 0..2; the
hub-and-spoke machine (``hubspoke_machine.py``, written from the machine docs)
passes the easy rules and must fail, naming the rule and the seed.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydevts.members import Member
from pydevts.routing.actions import Action
from pydevts.routing.machine import RouterMachine
from pydevts.testing import check_router_simulated
from pydevts.testing.sim_contract import SIM_RULE_NAMES

pytestmark = pytest.mark.timeout(30)


def _load_helper(name: str) -> Any:
    """A helper module beside this file (the suite imports in importlib mode: no sys.path entry)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


HubSpokeMachine = _load_helper("hubspoke_machine").HubSpokeMachine
EASY = ["join", "exactly-once emit", "send and request", "graceful leave", "per-sender order", "link churn"]


def _machine(module: str, name: str) -> type[RouterMachine]:
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, RouterMachine), f"{module}.{name} is not a RouterMachine"
    return cls


def _seeded(cls: type[RouterMachine]) -> Callable[[], RouterMachine]:
    """Machines that draw their own randomness, seeded 0, 1, 2, ...: the whole run is reproducible."""
    counter = itertools.count()
    return lambda: cls(seed=next(counter))  # type: ignore[call-arg]


def _failure(make: Callable[[], RouterMachine], **options: Any) -> str:
    with pytest.raises(AssertionError) as caught:
        check_router_simulated(make, **options)
    return str(caught.value)


# ---------------------------------------------------------------- routers that pass


def test_litemesh_passes_every_rule_for_three_seeds() -> None:
    check_router_simulated(_machine("pydevts_litemesh.router", "LiteMeshRouter"), seed=0, seeds=3)


def test_peer_passes_every_rule_for_three_seeds() -> None:
    check_router_simulated(_seeded(_machine("pydevts_peer.router", "PeerRouter")), seeds=3)


def test_hop_passes_every_rule_for_three_seeds() -> None:
    # It once failed "crash of the first node" (a node whose only link was r0 stayed alone):
    # an isolated hop node now dials the members it knows (pydevts_hop/dialer.py).
    check_router_simulated(_seeded(_machine("pydevts_hop.router", "HopRouter")), seeds=3)


# ---------------------------------------------------------------- the hub and spoke


def test_the_hub_and_spoke_machine_passes_the_easy_rules() -> None:
    check_router_simulated(HubSpokeMachine, rules=EASY)


def test_the_contract_fails_it_on_a_join_through_a_spoke() -> None:
    assert _failure(HubSpokeMachine) == (  # every rule: the first broken one is named, with its seed
        "router contract (simulated, seed 0), rule 'join through any member': "
        "r5 joined through r4 but ['r0', 'r1', 'r2', 'r3'] never saw it within 15 s"
    )


def test_the_contract_fails_it_when_the_hub_crashes() -> None:
    message = _failure(HubSpokeMachine, seed=4, rules=["crash of the first node"], step_timeout=3.0)
    assert message.startswith("router contract (simulated, seed 4), rule 'crash of the first node': ")
    assert "no one cluster of the survivors ['r1', 'r2', 'r3', 'r4'] after r0 crashed within 3 s" in message
    assert "r1 lists ['r1'] alive" in message


def test_the_contract_fails_it_when_a_spoke_crashes_and_says_what_it_saw() -> None:
    message = _failure(HubSpokeMachine, rules=["crash of a member"])
    assert message == (
        "router contract (simulated, seed 0), rule 'crash of a member': r3 crashed but "
        "['r1', 'r2', 'r4'] did not mark it failed within failure_timeout (10 s) "
        "(r1 saw it left, r2 saw it left, r4 saw it left): "
        "r0 lists ['r0', 'r1', 'r2', 'r4'] alive; r1 lists ['r0', 'r1', 'r2', 'r4'] alive; "
        "r2 lists ['r0', 'r1', 'r2', 'r4'] alive; r4 lists ['r0', 'r1', 'r2', 'r4'] alive"
    )
    split = _failure(HubSpokeMachine, rules=["partition and heal"], failure_timeout=2.0)
    assert split.startswith(
        "router contract (simulated, seed 0), rule 'partition and heal': ['r0', 'r1'] | ['r2', 'r3', 'r4'] "
        "partitioned, but not each side saw the other go within failure_timeout (2 s)"
    )


def test_a_failure_replays_from_its_seed() -> None:
    options: dict[str, Any] = {"rules": ["concurrent joins"], "step_timeout": 2.0}
    first = _failure(HubSpokeMachine, seed=7, **options)
    assert "(simulated, seed 7), rule 'concurrent joins'" in first
    assert _failure(HubSpokeMachine, seed=7, seeds=1, **options) == first


# ---------------------------------------------------------------- options and errors


def test_silent_crash_runs_for_a_router_that_claims_to_detect_silence() -> None:
    litemesh = _machine("pydevts_litemesh.router", "LiteMeshRouter")

    class SaysItHears(litemesh):  # type: ignore[valid-type,misc]
        """litemesh claiming a failure detector (``hears``) it does not have."""

        hears = True

    message = _failure(SaysItHears, skip=["link churn", "per-sender order"], failure_timeout=3.0)
    assert message.startswith(
        "router contract (simulated, seed 0), rule 'silent crash': r3 crashed silently (no reset) but "
        "['r0', 'r1', 'r2', 'r4'] did not mark it failed within failure_timeout (3 s)"
    )
    check_router_simulated(SaysItHears, detects_silence=False)  # every rule but that one
    assert "rule 'silent crash'" in _failure(litemesh, rules=["silent crash"], seeds=1, failure_timeout=2.0)


def test_islands_merge_only_with_merge_interval() -> None:
    litemesh = _machine("pydevts_litemesh.router", "LiteMeshRouter")
    message = _failure(litemesh, rules=["partition and heal"], merge_interval=None, seeds=1, heal_timeout=5.0)
    assert "no single view after ['r0', 'r1'] | ['r2', 'r3', 'r4'] healed within 5 s" in message


class Broken(RouterMachine):
    """Raises on its third link."""

    def __init__(self) -> None:
        self.ups = 0

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.ups += 1
        if self.ups == 3:
            raise RuntimeError("bug in link_up")
        return []


def test_an_exception_from_the_machine_fails_the_rule_chained() -> None:
    with pytest.raises(AssertionError) as caught:
        check_router_simulated(Broken, rules=["join"])
    assert str(caught.value).startswith(
        "router contract (simulated, seed 0), rule 'join': RuntimeError at t="
    ) and str(caught.value).endswith(": bug in link_up")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_unknown_rules_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown router contract rules"):
        check_router_simulated(HubSpokeMachine, rules=["no such rule"])
    with pytest.raises(ValueError, match="at least 3 nodes"):
        check_router_simulated(HubSpokeMachine, nodes=2)
    with pytest.raises(ValueError, match="seeds"):
        check_router_simulated(HubSpokeMachine, seeds=0)
    assert SIM_RULE_NAMES[0] == "join" and "link churn" in SIM_RULE_NAMES and "silent crash" in SIM_RULE_NAMES
