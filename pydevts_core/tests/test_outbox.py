"""Ordered hand-over to the node per origin, whatever the scheduler does (both backends)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydevts.routing.outbox import BACKLOG, Outboxes

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
    chunk = b"z" * 65_536
    size = len(chunk) + 8  # what the outbox counts per frame
    fits = BACKLOG // size  # batches that may wait beyond the one being handed over
    async with anyio.create_task_group() as tg:
        try:
            boxes = Outboxes(node.deliver, tg.start_soon)
            tg.start_soon(boxes.deliver, "x", [b"0"])
            await anyio.wait_all_tasks_blocked()
            returned = 0
            queued: list[int] = []  # the order the tasks queued in (the scheduler picks it)

            async def feed(i: int) -> None:
                nonlocal returned
                queued.append(i)  # deliver queues before it first awaits
                await boxes.deliver("x", [chunk + str(i).encode()])
                returned += 1

            for i in range(1, fits + 11):
                tg.start_soon(feed, i)
            await anyio.wait_all_tasks_blocked()
            assert returned == fits  # the rest wait for room while the node is stuck
        finally:
            node.gate.set()
    assert [int(f[len(chunk) :] or b"0") for _, f in node.got] == [0, *queued]
    assert sorted(queued) == list(range(1, fits + 11))


async def test_a_reader_hands_over_its_own_frames_only_and_the_rest_gets_a_task() -> None:
    """The reader that found nobody handing over must not stay stuck with another origin's stream."""
    node = Node()
    async with anyio.create_task_group() as tg:
        boxes = Outboxes(node.deliver, tg.start_soon)
        reader_done = anyio.Event()

        async def reader() -> None:
            await boxes.deliver("y", [b"mine"])
            reader_done.set()

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        for i in range(5):  # meanwhile other links bring more of y
            boxes.enqueue("y", [f"later{i}".encode()])
            tg.start_soon(boxes.flush, "y")
        await anyio.wait_all_tasks_blocked()
        node.gate.set()
        with anyio.fail_after(5):
            await reader_done.wait()
    assert [f for _, f in node.got] == [b"mine", *(f"later{i}".encode() for i in range(5))]


async def test_a_failing_hand_over_does_not_strand_what_is_queued_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[bytes] = []

    async def deliver(origin: str, frames: list[bytes]) -> Any:
        await anyio.lowlevel.checkpoint()
        if frames == [b"bad"]:
            raise RuntimeError("a bug below")
        got.extend(frames)
        return None

    async with anyio.create_task_group() as tg:
        boxes = Outboxes(deliver, tg.start_soon)
        boxes.enqueue("x", [b"bad"])
        boxes.enqueue("x", [b"after"])
        await boxes.flush("x")
        with anyio.fail_after(5):
            while got != [b"after"]:
                await anyio.sleep(0.01)
    assert boxes.failed == 1 and "handing 1 frames from x to the node failed" in caplog.text
