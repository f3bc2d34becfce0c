"""Views agree: a node that joins late lists the members that went down before it came (views.py)."""

from __future__ import annotations

import anyio
import pytest
from inproc import free_port, wait_for_mesh, wait_until
from pydevts import MemberEvent, Node

pytestmark = pytest.mark.anyio


def states(node: Node) -> dict[str, str]:
    return {m.id: m.state.value for m in node.members}


async def test_a_node_that_joins_late_lists_a_member_that_left_before_it_came() -> None:
    port = free_port()
    a, b, c = (Node(port, node_id=n, merge_interval=0) for n in "abc")
    events: list[tuple[str, str]] = []

    @c.on_lifecycle
    async def record(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    with anyio.fail_after(20):
        async with a:
            async with b:
                await wait_for_mesh([a, b])
            await wait_until(lambda: states(a).get("b") == "left", 5, "b to leave")
            async with c:
                await wait_for_mesh([a, c])
                await wait_until(lambda: states(c).get("b") == "left", 5, "c to list b as left")
                assert states(c) == states(a) == {"a": "alive", "b": "left", "c": "alive"}
                # recorded without a lifecycle event: nothing happened to b while c was there
                await c._ctx.drain_lifecycle()
                assert all(member != "b" for _, member in events), events
                # and reaped about when a reaps it (the answer says how long b has been down)
                down_a, down_c = a._ctx.members.down_for("b"), c._ctx.members.down_for("b")
                assert down_a is not None and down_c is not None and abs(down_a - down_c) < 1.0


async def test_a_recorded_member_that_comes_back_is_reported_as_joined() -> None:
    port = free_port()
    a, b = Node(port, node_id="a", merge_interval=0), Node(port, node_id="b", merge_interval=0)
    with anyio.fail_after(30):
        async with a:
            async with b:
                await wait_for_mesh([a, b])
            await wait_until(lambda: states(a).get("b") == "left", 5, "b to leave")
            c = Node(port, node_id="c", merge_interval=0)
            async with c:
                await wait_until(lambda: states(c).get("b") == states(a)["b"], 5, "c to list b as a does")
                joined: list[str] = []

                @c.on_lifecycle
                async def record(event: MemberEvent) -> None:
                    if event.kind == "joined":
                        joined.append(event.member.id)

                async with Node(port, node_id="b", merge_interval=0) as b2:
                    await wait_for_mesh([a, b2, c])
                    await wait_until(lambda: "b" in joined, 5, "b joined again, seen by c")
