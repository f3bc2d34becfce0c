"""Three litemesh nodes in one process over real TCP on loopback, found by name."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from pydevts import MemberEvent, Node, Registry, UnknownNodeError
from pydevts_litemesh import LiteMeshRouter

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def alive(node: Node) -> set[str]:
    return {m.id for m in node.members if m.alive}


class Recorder:
    """Events, sends and lifecycle changes one node saw."""

    def __init__(self, node: Node) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.lifecycle: list[tuple[str, str]] = []

        @node.on("note")
        async def note(sender: str, payload: Any) -> None:
            self.events.append(("note", sender, payload))

        @node.on("sum")
        async def add(sender: str, payload: list[int]) -> dict[str, Any]:
            return {"by": node.id, "sum": sum(payload)}

        @node.on_lifecycle
        async def changed(event: MemberEvent) -> None:
            self.lifecycle.append((event.kind, event.member.id))


def test_the_entry_point_registers_litemesh() -> None:
    info = Registry().info("router", "litemesh")
    assert info.distribution == "pydevts-litemesh"
    assert isinstance(Registry().create("router", "litemesh"), LiteMeshRouter)


async def test_three_nodes_over_tcp(anyio_backend: str) -> None:
    port = free_port()
    a, b, c = (Node(port, node_id=i, router="litemesh") for i in "abc")
    rec = {n.id: Recorder(n) for n in (a, b, c)}
    with anyio.fail_after(30):
        async with a, b:
            async with c:
                await wait_until(lambda: all(alive(n) == {"a", "b", "c"} for n in (a, b, c)))

                def joined(node: Node) -> set[str]:
                    return {m for k, m in rec[node.id].lifecycle if k == "joined"}

                # lifecycle callbacks run in their own task, a moment after the view changed
                await wait_until(lambda: all(joined(n) >= {"a", "b", "c"} - {n.id} for n in (a, b, c)))
                for node in (a, b, c):
                    assert joined(node) == {"a", "b", "c"} - {node.id}

                # emit: every other node once, never the sender
                await c.emit("note", "from c")
                await wait_until(lambda: len(rec["a"].events) == 1 and len(rec["b"].events) == 1)
                assert rec["a"].events == rec["b"].events == [("note", "c", "from c")]
                assert rec["c"].events == []

                # send: only the target, in order
                for i in range(20):
                    await a.send("c", "note", i)
                await wait_until(lambda: len(rec["c"].events) == 20)
                assert rec["c"].events == [("note", "a", i) for i in range(20)]
                assert len(rec["b"].events) == 1

                # request, both ways through the mesh
                assert await b.request("c", "sum", [1, 2, 3], timeout=5) == {"by": "c", "sum": 6}
                assert await c.request("a", "sum", [4], timeout=5) == {"by": "a", "sum": 4}
                with pytest.raises(UnknownNodeError):
                    await a.send("nobody", "note", None)

                # tags travel as an `updated` event
                b.set_tags(role="db")
                await wait_until(lambda: all(m.tags.get("role") == "db" for m in a.members if m.id == "b"))
                await wait_until(lambda: ("updated", "b") in rec["c"].lifecycle)

            # c stopped gracefully: left, never failed
            await wait_until(lambda: all(("left", "c") in rec[n].lifecycle for n in "ab"))
            for n in "ab":
                assert ("failed", "c") not in rec[n].lifecycle
            assert alive(a) == alive(b) == {"a", "b"}
            with pytest.raises(UnknownNodeError):
                await a.send("c", "note", None)
            assert await a.request("b", "sum", [5, 5], timeout=5) == {"by": "b", "sum": 10}


async def test_a_member_gone_without_leave_fails(anyio_backend: str) -> None:
    """No failure detector of its own: a link closed for good without a ``leave`` is the evidence."""
    port = free_port()
    routers = {i: LiteMeshRouter(redial_for=1.0) for i in "abc"}
    a, b, c = (Node(port, node_id=i, router=routers[i]) for i in "abc")
    rec = {n.id: Recorder(n) for n in (a, b, c)}
    with anyio.fail_after(30):
        async with a, b:
            async with c:
                await wait_until(lambda: all(alive(n) == {"a", "b", "c"} for n in (a, b, c)))
                # c's node goes without a goodbye: its links close, nothing listens at its port
                c._tg.cancel_scope.cancel()
            await wait_until(
                lambda: ("failed", "c") in rec["a"].lifecycle and ("failed", "c") in rec["b"].lifecycle
            )
            assert alive(a) == alive(b) == {"a", "b"}
            with pytest.raises(UnknownNodeError):
                await a.send("c", "note", None)
            assert await a.request("b", "sum", [1], timeout=5) == {"by": "b", "sum": 1}
