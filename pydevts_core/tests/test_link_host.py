"""The link host: a router machine's bug costs one input, never the node."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydevts import Node
from pydevts.routing import Action
from pydevts.testing import MemoryNetwork, MemoryTransport
from pydevts_litemesh import LiteMeshRouter

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Buggy(LiteMeshRouter):
    """litemesh with a bug in link_down and in next_deadline."""

    broken = False

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        raise RuntimeError("bug in link_down")

    def next_deadline(self) -> float | None:
        if self.broken:
            raise RuntimeError("bug in next_deadline")
        return super().next_deadline()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_an_exception_from_a_machine_input_costs_that_input_only(anyio_backend: str) -> None:
    network = MemoryNetwork(seed=1)
    routers = {i: Buggy() for i in "ab"}
    a, b = (
        Node(7000, node_id=i, host=i, cluster_host="a", transport=MemoryTransport(network, host=i), router=r)
        for i, r in routers.items()
    )
    got: list[int] = []

    async def on_n(sender: str, payload: int) -> None:
        got.append(payload)

    b.add_handler("n", on_n)
    async with a, b:
        await wait_for(lambda: {m.id for m in a.members if m.alive} == {"a", "b"})
        assert network.reset("a", "b") + network.reset("b", "a") > 0  # link_down raises at both ends
        routers["a"].broken = True  # and next_deadline, from every input on
        await wait_for(lambda: a.statistics()["router.input_errors"] >= 2)
        await wait_for(lambda: "b" in a._ctx.router.links)  # type: ignore[attr-defined]  # redialled
        await a.send("b", "n", 1)  # the node still serves
        await wait_for(lambda: got == [1])
