"""The router contract (pydevts.testing.check_router) catches a hub-and-spoke router.

``hubspoke.HubSpokeRouter`` was written from the docs alone and passes the
easy rules; the contract must fail it, naming the rule it breaks.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anyio
import pytest
from pydevts.testing import check_router
from pydevts.testing.router_contract import RULE_NAMES


def _load_helper(name: str) -> object:
    """A helper module beside this file (the suite imports in importlib mode: no sys.path entry)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


HubSpokeRouter = _load_helper("hubspoke").HubSpokeRouter  # type: ignore[attr-defined]

pytestmark = pytest.mark.anyio

FAST_FAIL = {"failure_timeout": 3.0, "heal_timeout": 3.0, "step_timeout": 3.0}


async def test_the_hub_and_spoke_router_passes_the_easy_rules() -> None:
    easy = ["join", "exactly-once emit", "send and request", "graceful leave", "per-sender order"]
    with anyio.fail_after(30):
        await check_router(HubSpokeRouter, rules=easy)


async def test_the_contract_fails_it_on_a_join_through_a_spoke() -> None:
    with anyio.fail_after(30), pytest.raises(AssertionError) as caught:
        await check_router(HubSpokeRouter, **FAST_FAIL)  # every rule: the first broken one is named
    assert str(caught.value) == (
        "router contract, rule 'join through any member': "
        "r4 joined through r3 but ['r0', 'r1', 'r2'] never saw it within 3 s"
    )


async def test_the_contract_fails_it_when_the_hub_crashes() -> None:
    with anyio.fail_after(30), pytest.raises(AssertionError) as caught:
        await check_router(HubSpokeRouter, rules=["crash of the first node"], **FAST_FAIL)
    message = str(caught.value)
    assert message.startswith("router contract, rule 'crash of the first node': ")
    assert "no one cluster of the survivors ['r1', 'r2', 'r3'] after r0 crashed within 3 s" in message
    assert "r1 lists ['r1'] alive" in message


async def test_unknown_rules_and_too_few_nodes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown router contract rules"):
        await check_router(HubSpokeRouter, rules=["no such rule"])
    with pytest.raises(ValueError, match="at least 3 nodes"):
        await check_router(HubSpokeRouter, nodes=2)
    assert RULE_NAMES[0] == "join" and "link churn" in RULE_NAMES
