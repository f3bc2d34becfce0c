"""Ordered hand-over to the node per origin, whatever the scheduler does (both backends)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydevts_hop.outbox import BACKLOG, Outboxes

pytestmark = pytest.mark.anyio


class Node:
    """A stand-in for RouterContext.deliver that blocks until told to go on."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.gate = anyio.Event()

    async def deliver(self, origin: str, frames: list[bytes]) -> Any:
        await self.gate.wait()
        self.got += [(origin, f) for f in frames]
        return None


async def test_frames_of_one_origin_from_many_tasks_are_handed_over_in_queue_order() -> None:
    node = Node()
    async with anyio.create_task_group() as tg:
        boxes = Outboxes(node.deliver, tg.start_soon)
        tg.start_soon(boxes.deliver, "x", [b"1"])  # becomes the pump, blocks in deliver
        await anyio.wait_all_tasks_blocked()
        for i in range(2, 6):  # other readers: they only queue, in this order
            boxes.enqueue("x", [str(i).encode()])
            tg.start_soon(boxes.flush, "x")
        boxes.deliver_soon("y", [b"a"])
        await anyio.wait_all_tasks_blocked()
        node.gate.set()
    assert [f for o, f in node.got if o == "x"] == [b"1", b"2", b"3", b"4", b"5"]
    assert ("y", b"a") in node.got


async def test_a_slow_node_pushes_back_on_every_feeding_task() -> None:
    node = Node()
    async with anyio.create_task_group() as tg:
        boxes = Outboxes(node.deliver, tg.start_soon)
        tg.start_soon(boxes.deliver, "x", [b"0"])
        await anyio.wait_all_tasks_blocked()
        returned = 0
        queued: list[int] = []  # the order the tasks queued in (the scheduler picks it)

        async def feed(i: int) -> None:
            nonlocal returned
            queued.append(i)  # deliver queues before it first awaits
            await boxes.deliver("x", [str(i).encode()])
            returned += 1

        for i in range(1, BACKLOG + 11):
            tg.start_soon(feed, i)
        await anyio.wait_all_tasks_blocked()
        assert returned == BACKLOG  # the rest wait for room while the node is stuck
        node.gate.set()
    assert [int(f) for _, f in node.got] == [0, *queued]
    assert sorted(queued) == list(range(1, BACKLOG + 11))
