"""Reaping: members that left or failed leave the view after ``reap_after`` (both backends).

Nodes run in one process over the in-memory transport; the routers are the
real peer (SWIM) and hop routers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import pytest
from inproc import alive_ids, wait_until
from pydevts import MemberEvent, Node
from pydevts.errors import ConfigurationError
from pydevts.protocols import Router
from pydevts.testing import MemoryNetwork, MemoryTransport
from pydevts_hop import HopConfig, HopRouter
from pydevts_peer import PeerRouter

pytestmark = pytest.mark.anyio


class Events(list[tuple[str, str, str]]):
    """(observer, kind, member) of every lifecycle event, and when each was last seen."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[tuple[str, str, str], float] = {}


REAP = 1.5
HOP = HopConfig(tick_interval=0.05, keepalive_interval=0.1, dead_interval=0.4, settle_time=0.3)


def make_node(
    network: MemoryNetwork,
    host: str,
    events: Events,
    router: Callable[[], Router | str] = lambda: "peer",
) -> Node:
    node = Node(
        7000,
        node_id=host,
        host=host,
        cluster_host="n0",
        transport=MemoryTransport(network, host=host),
        router=router(),
        reap_after=REAP,
    )

    @node.on_lifecycle
    async def record(event: MemberEvent) -> None:
        events.append((node.id, event.kind, event.member.id))
        events.at[events[-1]] = anyio.current_time()

    return node


def reaped(events: list[tuple[str, str, str]], observer: str, member: str) -> int:
    return events.count((observer, "reaped", member))


async def test_a_member_that_left_is_reaped_forgotten_and_can_join_again() -> None:
    network = MemoryNetwork(seed=3)
    events = Events()
    n0, n1, n2 = (make_node(network, f"n{i}", events) for i in range(3))
    with anyio.fail_after(30):
        async with n0, n1:
            async with n2:
                await wait_until(lambda: all(alive_ids(n) == {"n0", "n1", "n2"} for n in (n0, n1, n2)), 10)
            for node in (n0, n1):
                await wait_until(lambda node=node: (node.id, "left", "n2") in events, 5, "n2 left")
                assert "n2" in {m.id for m in node.members}  # still listed, as left
            for node in (n0, n1):
                await wait_until(lambda node=node: reaped(events, node.id, "n2") == 1, 5, "n2 reaped")
                assert "n2" not in {m.id for m in node.members}
                router = node.plugin("peer")
                assert isinstance(router, PeerRouter)
                assert "n2" not in router.detector.swim.members
                assert "n2" not in node._ctx.dispatcher._departed
                # not before its time (callbacks may lag the view a little, hence the slack)
                assert events.at[(node.id, "reaped", "n2")] - events.at[(node.id, "left", "n2")] >= REAP / 2
            # the same id comes back: a newcomer, joined everywhere
            again = make_node(network, "n2", events)
            async with again:
                await wait_until(lambda: all(alive_ids(n) == {"n0", "n1", "n2"} for n in (n0, n1)), 10)
                for node in (n0, n1):
                    await wait_until(
                        lambda node=node: events.count((node.id, "joined", "n2")) == 2, 5, "joined again"
                    )
                    assert reaped(events, node.id, "n2") == 1


async def test_failed_members_are_reaped_on_both_sides_of_a_partition() -> None:
    network = MemoryNetwork(seed=4)
    events = Events()
    nodes = [make_node(network, f"n{i}", events) for i in range(3)]
    with anyio.fail_after(40):
        async with AsyncExitStack() as stack:
            for node in nodes:
                await stack.enter_async_context(node)
            await wait_until(lambda: all(alive_ids(n) == {"n0", "n1", "n2"} for n in nodes), 10)
            network.partition({"n2"}, {"n0", "n1"})
            for observer, member in (("n0", "n2"), ("n1", "n2"), ("n2", "n0"), ("n2", "n1")):
                await wait_until(
                    lambda o=observer, m=member: reaped(events, o, m) == 1, 20, f"{observer} reaps {member}"
                )
                assert (observer, "failed", member) in events
            assert {m.id for m in nodes[2].members} == {"n2"}
            assert {m.id for m in nodes[0].members} == {"n0", "n1"}


async def test_the_hop_router_reports_a_reaped_member_once() -> None:
    network = MemoryNetwork(seed=5)
    events = Events()
    hop = lambda: HopRouter(config=HOP)  # noqa: E731
    n0, n1, n2 = (make_node(network, f"n{i}", events, hop) for i in range(3))
    with anyio.fail_after(30):
        async with n0, n1:
            async with n2:
                await wait_until(lambda: all(alive_ids(n) == {"n0", "n1", "n2"} for n in (n0, n1, n2)), 10)
            for node in (n0, n1):
                await wait_until(lambda node=node: reaped(events, node.id, "n2") == 1, 5, "n2 reaped")
                assert "n2" not in {m.id for m in node.members}
            await anyio.sleep(2 * REAP)  # ticks go on: the member must not come back, nor be reaped twice
            for node in (n0, n1):
                assert "n2" not in {m.id for m in node.members}
                assert reaped(events, node.id, "n2") == 1


class Keeping(PeerRouter):
    """A router that refuses to forget, or fails to."""

    def __init__(self, answer: bool | None) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[str] = []

    def forget(self, peer_id: str) -> bool:
        self.asked.append(peer_id)
        if self.answer is None:
            raise RuntimeError("a bug in forget")
        return self.answer


@pytest.mark.parametrize("answer", [False, None], ids=["refuses", "raises"])
async def test_a_router_can_keep_a_member_and_a_failing_forget_does_not_stop_the_node(
    answer: bool | None,
) -> None:
    network = MemoryNetwork(seed=6)
    events = Events()
    routers: list[Keeping] = []

    def router() -> Keeping:
        routers.append(Keeping(answer))
        return routers[-1]

    n0, n1 = (make_node(network, f"n{i}", events, router) for i in range(2))
    with anyio.fail_after(30):
        async with n0:
            async with n1:
                await wait_until(lambda: alive_ids(n0) == {"n0", "n1"}, 10)
            await wait_until(
                lambda: routers[0].asked.count("n1") >= 2 or ("n0", "reaped", "n1") in events, 10
            )
            if answer is False:  # asked again each pass, kept each time
                assert "n1" in {m.id for m in n0.members} and ("n0", "reaped", "n1") not in events
            else:  # the router's bug is logged; the member is reaped and the node goes on
                await wait_until(lambda: ("n0", "reaped", "n1") in events, 5)
                assert "n1" not in {m.id for m in n0.members}
                await n0.emit("still", "serving")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_reap_after_must_be_a_positive_number_of_seconds(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="reap_after must be a positive number of seconds"):
        Node(7000, reap_after=bad)
