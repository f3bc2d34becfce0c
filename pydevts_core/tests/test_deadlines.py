"""DeadlineClock: a machine's timer runs at its deadlines, woken early by inputs, never spinning."""

from __future__ import annotations

import itertools

import anyio
import pytest
from pydevts.deadlines import DeadlineClock

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


class Machine:
    def __init__(self) -> None:
        self.deadline: float | None = None
        self.ran: list[float] = []

    def next_deadline(self) -> float | None:
        return self.deadline

    def run(self, now: float) -> None:
        self.ran.append(now)
        self.deadline = None  # done until an input sets a new one


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_it_runs_at_the_deadline_not_before_and_sleeps_without_one() -> None:
    machine = Machine()
    clock = DeadlineClock(machine.next_deadline, machine.run)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run)
        await anyio.sleep(0.2)
        assert machine.ran == []  # no deadline: it sleeps, it does not poll
        deadline = machine.deadline = anyio.current_time() + 0.1
        clock.moved()  # the input that set it wakes the sleeper, which sleeps until then
        await wait_for(lambda: machine.ran)
        assert machine.ran[0] >= deadline  # not before its deadline
        await anyio.sleep(0.1)
        assert len(machine.ran) == 1  # and once: the machine said it is done
        clock.stop()


async def test_an_earlier_deadline_wakes_a_long_sleep() -> None:
    machine = Machine()
    clock = DeadlineClock(machine.next_deadline, machine.run)
    machine.deadline = anyio.current_time() + 60  # it sleeps for a minute
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run)
        await anyio.sleep(0.05)
        started = anyio.current_time()
        machine.deadline = started + 0.05
        clock.moved()
        await wait_for(lambda: machine.ran, timeout=5)
        assert machine.ran[0] >= started + 0.05
        clock.stop()


async def test_a_deadline_that_does_not_move_on_cannot_spin() -> None:
    runs: list[float] = []
    stuck = anyio.current_time()  # always in the past: a buggy machine
    clock = DeadlineClock(lambda: stuck, runs.append, min_gap=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run)
        await anyio.sleep(0.5)
        clock.stop()
    assert 2 <= len(runs) <= 0.5 / 0.05 + 2  # about one per min_gap, not thousands
    assert all(b - a >= 0.05 - 1e-3 for a, b in itertools.pairwise(runs))
