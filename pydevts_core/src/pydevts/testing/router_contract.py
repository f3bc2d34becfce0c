"""The router contract, as one async function: :func:`check_router`.

Runs a small cluster of real nodes in one process over the in-memory
transport (no sockets) with the router under test, and checks what every
router must do::

    @pytest.mark.anyio
    async def test_my_router_honours_the_contract():
        await check_router(lambda: MyRouter())

It raises ``AssertionError`` naming the first broken rule.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio

from ..errors import UnknownNodeError
from ..members import MemberEvent
from ..node import Node
from ..protocols import Router
from .conformance import first_leaf as _first_leaf
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["check_router"]

STEP_TIMEOUT = 15.0


async def check_router(make: Callable[[], Router], *, nodes: int = 4) -> None:
    """Check that routers made by ``make()`` honour the contract, on ``nodes`` nodes."""
    try:
        await _run(make, nodes)
    except* AssertionError as group:  # raised inside the nodes' task groups
        raise _first_leaf(group) from None


async def _run(make: Callable[[], Router], nodes: int) -> None:
    network = MemoryNetwork(seed=7)
    ids = [f"r{i}" for i in range(nodes)]
    cluster = [
        Node(
            7000,
            node_id=i,
            host=i,
            cluster_host=ids[0],
            transport=MemoryTransport(network, host=i),
            router=make(),
        )
        for i in ids
    ]
    got: dict[str, list[tuple[str, str, Any]]] = {i: [] for i in ids}
    events: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for node in cluster:
        _instrument(node, got[node.id], events[node.id])

    async with AsyncExitStack() as stack:
        for node in cluster:  # each join is bounded by the node's own join_timeout
            await stack.enter_async_context(node)
        await _until(lambda: all(_alive(n) == set(ids) for n in cluster), "every node sees every node alive")

        def joined(node: Node) -> set[str]:
            return {m for kind, m in events[node.id] if kind == "joined"}

        # Lifecycle callbacks run in their own task, a moment after the view changed.
        await _until(
            lambda: all(joined(n) >= set(ids) - {n.id} for n in cluster),
            "a joined event on every node for every other node",
        )
        for node in cluster:
            _check(
                joined(node) == set(ids) - {node.id},
                f"{node.id} got joined events for {sorted(joined(node))}",
            )

        with anyio.fail_after(STEP_TIMEOUT):
            for sender in cluster:
                await sender.emit("contract.emit", sender.id)
            expected = (nodes - 1) * nodes
            await _until(lambda: sum(len(v) for v in got.values()) >= expected, f"{expected} emitted events")
            await _settle()
        for node in cluster:
            senders = sorted(s for name, s, _ in got[node.id] if name == "contract.emit")
            _check(
                senders == sorted(set(ids) - {node.id}),
                f"emit: {node.id} got events from {senders} (each other node exactly once, never itself)",
            )
            got[node.id].clear()

        with anyio.fail_after(STEP_TIMEOUT):
            await cluster[0].send(ids[-1], "contract.send", "one")
            await _until(lambda: bool(got[ids[-1]]), "a sent event")
            await _settle()
            _check(
                [g for v in got.values() for g in v] == [("contract.send", ids[0], "one")],
                f"send reached {[(k, v) for k, v in got.items() if v]} instead of only {ids[-1]}",
            )
            reply = await cluster[1].request(ids[0], "contract.echo", [1, 2], timeout=5)
            _check(reply == {"from": ids[0], "echo": [1, 2]}, f"request got {reply!r}")
            try:
                await cluster[0].send("no-such-node", "contract.send", None)
            except UnknownNodeError:
                pass
            else:
                raise AssertionError("send to an unknown node id did not raise UnknownNodeError")

        with anyio.fail_after(STEP_TIMEOUT):
            leaver = cluster[-1]
            await leaver.stop()
            rest = cluster[:-1]
            await _until(
                lambda: all(("left", leaver.id) in events[n.id] for n in rest),
                "every other node to see a leave",
            )
            for node in rest:
                _check(
                    ("failed", leaver.id) not in events[node.id],
                    f"{node.id} reported a graceful leave as a failure",
                )
                _check(
                    leaver.id not in _alive(node), f"{node.id} still lists {leaver.id} alive after it left"
                )


def _instrument(node: Node, got: list[tuple[str, str, Any]], events: list[tuple[str, str]]) -> None:
    async def on_emit(sender: str, payload: Any) -> None:
        got.append(("contract.emit", sender, payload))

    async def on_send(sender: str, payload: Any) -> None:
        got.append(("contract.send", sender, payload))

    async def on_echo(sender: str, payload: Any) -> dict[str, Any]:
        return {"from": node.id, "echo": payload}

    async def on_lifecycle(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    node.add_handler("contract.emit", on_emit)
    node.add_handler("contract.send", on_send)
    node.add_handler("contract.echo", on_echo)
    node.on_lifecycle(on_lifecycle)


def _alive(node: Node) -> set[str]:
    return {m.id for m in node.members if m.alive}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"router contract: {message}")


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    with anyio.move_on_after(timeout):
        while not predicate():  # noqa: ASYNC110 - polling other tasks' results
            await anyio.sleep(0.01)
        return
    raise AssertionError(f"router contract: no {what} within {timeout:g} s")


async def _settle() -> None:
    """Give anything extra (a duplicate) time to show up before checking exactly-once."""
    await anyio.sleep(0.2)
