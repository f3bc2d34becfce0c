"""The router contract, as one async function: :func:`check_router`.

Runs small clusters of real nodes in one process over the in-memory
transport (:class:`~pydevts.testing.MemoryNetwork`; no sockets) with the
router under test, and checks what every router must do, one named rule at a
time, each on a fresh cluster of ``nodes`` nodes (``r0`` ... ``r3``, each
on a host of its own, all joining through ``r0`` unless the rule says)::

    @pytest.mark.anyio
    async def test_my_router_honours_the_contract():
        await check_router(lambda: MyRouter())

The rules, in the order they run (``pydevts/testing/router_rules.py``):

``join``
    every node joins through ``r0``; each sees every node alive and gets one
    ``joined`` event for each other node.
``exactly-once emit``
    each node emits once: every other node gets it exactly once, the sender never.
``send and request``
    ``send`` reaches its destination only, ``request`` is answered, a send
    to an unknown id raises ``UnknownNodeError``.
``graceful leave``
    a node that stops is seen as ``left`` (never ``failed``) by the others.
``join through any member``
    a new node joins through the last member (not ``r0``): everyone sees
    everyone, events flow between all.
``concurrent joins``
    three nodes join at the same moment through three different members:
    one full view, events flow between all.
``per-sender order``
    one node emits ``events`` numbered events (200) and sends as many to
    one member, at full speed: each receiver gets them in order, exactly once.
``crash of a member`` / ``crash of the first node``
    ``r2`` (resp. ``r0``, the node everyone joined through) dies without a
    goodbye: every connection it had is reset, its host is cut off, its
    tasks are cancelled (a killed process). Every survivor marks it
    ``failed`` within ``failure_timeout``; the survivors form one cluster
    (each lists exactly the survivors alive, events flow between all of
    them), and a new node joins through a survivor.
``partition and heal``
    the cluster is split in two halves (frames across vanish, connects fail,
    the connections across are reset); within ``failure_timeout`` each side
    lists only itself alive; after the heal, within ``heal_timeout``, every
    node lists every node alive again and events flow between all.
``restart with the same id``
    ``r1`` crashes and a new node with the same id joins at once: within
    ``failure_timeout`` (plus ``step_timeout``) everyone lists it alive,
    and events flow to and from it.
``link churn``
    the connections between random pairs of members are reset ``resets``
    times (6) while two nodes emit numbered events: every receiver gets each
    sender's events in order, exactly once (resumable links keep this).

``AssertionError`` names the first broken rule and what was seen there, e.g.
``router contract, rule 'join through any member': r4 joined through r3 but
['r0', 'r1', 'r2'] never saw it within 15 s``.

Options (keywords):

- ``failure_timeout`` (10 s): how soon a crashed member, or the other side
  of a partition, must be marked down;
- ``heal_timeout`` (10 s): how soon a healed partition must be one cluster again;
- ``step_timeout`` (15 s): any other wait (joins, deliveries);
- ``events`` (200), ``resets`` (6): the sizes of the order and churn rules;
- ``node_options``: more keyword arguments for every :class:`~pydevts.Node`
  (the contract passes ``merge_interval=1.0`` unless this says otherwise:
  islands are looked for every second);
- ``rules``: run only these rules (names as above), ``skip``: all but these.

Each rule runs under a deadline (the sum of the three timeouts); with the
built-in routers the whole check takes a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import anyio

from ..protocols import Router
from ..routing.machine import RouterMachine
from .conformance import first_leaf as _first_leaf
from .contract_cluster import ContractCluster, ContractOptions
from .router_rules import RULES

__all__ = ["RULE_NAMES", "check_router"]

#: The contract's rules, in the order they run.
RULE_NAMES = tuple(RULES)


async def check_router(
    make: Callable[[], Router | RouterMachine],
    *,
    nodes: int = 4,
    failure_timeout: float = 10.0,
    heal_timeout: float = 10.0,
    step_timeout: float = 15.0,
    events: int = 200,
    resets: int = 6,
    node_options: Mapping[str, Any] | None = None,
    rules: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> None:
    """Check that routers made by ``make()`` honour the contract, on clusters of ``nodes`` nodes.

    Raises ``AssertionError`` naming the first rule broken (see the module
    documentation for the rules and the options).
    """
    if nodes < 3:
        raise ValueError(f"the router contract needs at least 3 nodes, got {nodes}")
    unknown = sorted((set(rules or ()) | set(skip)) - set(RULES))
    if unknown:
        raise ValueError(f"unknown router contract rules {unknown}; the rules are {list(RULES)}")
    options = ContractOptions(
        nodes=nodes,
        failure_timeout=failure_timeout,
        heal_timeout=heal_timeout,
        step_timeout=step_timeout,
        events=events,
        resets=resets,
        node_options=dict(node_options or {}),
    )
    deadline = failure_timeout + heal_timeout + 2 * step_timeout
    for name, rule in RULES.items():
        if (rules is not None and name not in rules) or name in skip:
            continue
        try:
            with anyio.fail_after(deadline):
                async with anyio.create_task_group() as tg:
                    await rule(ContractCluster(make, options, tg))
                    tg.cancel_scope.cancel()  # every node still running stops (gracefully)
        except* AssertionError as group:  # possibly raised inside the nodes' task groups
            raise AssertionError(f"router contract, rule {name!r}: {_first_leaf(group)}") from None
        except* TimeoutError:
            raise AssertionError(f"router contract, rule {name!r}: not done within {deadline:g} s") from None
