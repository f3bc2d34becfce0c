"""``Node.on_unhandled``: a callback for each event no handler takes (what ``--print-events`` uses)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from pydevts import Node, NoHandlerError

pytestmark = pytest.mark.anyio


async def test_events_without_a_handler_reach_the_callback_in_order() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    seen: list[tuple[str, str, Any]] = []
    handled: list[Any] = []

    @b.on_unhandled
    async def unhandled(name: str, sender: str, payload: Any) -> None:
        seen.append((name, sender, payload))
        if payload == "raise":
            raise RuntimeError("a failing callback is logged like a failing handler")

    @b.on("mine")
    async def mine(sender: str, payload: Any) -> None:
        handled.append(payload)

    with anyio.fail_after(15):
        async with cluster(a, b):
            await a.send("b", "one", {"x": 1})
            await a.send("b", "mine", "handled, not seen")
            await a.emit("two", "raise")
            await a.send("b", "three", [3])
            await wait_until(lambda: len(seen) == 3, what="three unhandled events")
            assert seen == [("one", "a", {"x": 1}), ("two", "a", "raise"), ("three", "a", [3])]
            assert handled == ["handled, not seen"]
            stats = b.statistics()
            assert (stats["events_unhandled"], stats["handler_errors"]) == (3, 1)
            with pytest.raises(NoHandlerError):  # requests without a handler are still refused
                await a.request("b", "four", None, timeout=5)
            assert len(seen) == 3


async def test_the_callback_can_be_set_while_the_node_runs() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    seen: list[str] = []
    with anyio.fail_after(15):
        async with cluster(a, b):

            async def unhandled(name: str, sender: str, payload: Any) -> None:
                seen.append(name)

            assert b.on_unhandled(unhandled) is unhandled
            await a.send("b", "late")
            await wait_until(lambda: seen == ["late"], what="the event")
