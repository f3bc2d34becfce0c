"""The simulated cluster the contract's rules run on (internal to :mod:`pydevts.testing.sim_contract`).

A :class:`SimCluster` is one fresh :class:`~pydevts.testing.sim.Simulation`
of nodes ``r0``, ``r1``, ... running the router under test, with the waits
and the checks the rules share; each failed wait or check raises
``AssertionError`` saying what was seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...routing.machine import RouterMachine
from ..sim import NetworkConditions, SimNode, Simulation, SimulationTimeout

__all__ = ["SimCluster", "SimOptions", "first_difference"]


@dataclass(frozen=True)
class SimOptions:
    """The bounds and sizes of one :func:`~pydevts.testing.check_router_simulated` run (see there)."""

    nodes: int = 5
    failure_timeout: float = 10.0
    heal_timeout: float = 10.0
    step_timeout: float = 15.0
    settle: float = 1.0
    events: int = 200
    resets: int = 6
    merge_interval: float | None = 1.0
    conditions: NetworkConditions | None = None


class SimCluster:
    """One rule's simulation, seeded with ``seed``; ``hosts`` are the node ids a rule may use."""

    def __init__(self, make: Callable[[], RouterMachine], options: SimOptions, seed: int) -> None:
        self.make = make
        self.options = options
        self.sim = Simulation(seed=seed, conditions=options.conditions, merge_interval=options.merge_interval)
        self.rng = random.Random(seed)  # the rule's own choices (victims of churn, their times)
        self.hosts = [f"r{i}" for i in range(options.nodes + 4)]

    def __getitem__(self, node_id: str) -> SimNode:
        return self.sim[node_id]

    # ------------------------------------------------------------ nodes

    def start(self, node_id: str, *, via: str | None) -> None:
        """Start ``node_id`` (again, as a new incarnation, if it ran before), joining through ``via``."""
        if node_id in self.sim.nodes:
            self.sim.restart(node_id, via=via)
        else:
            self.sim.add_node(node_id, self.make)
            if via is not None:
                self.sim.join(node_id, via=via)

    def form(self, count: int) -> list[str]:
        """Start ``r0`` .. ``r{count-1}`` at once, each joining through ``r0``; wait for the full view."""
        ids = self.hosts[:count]
        for node_id in ids:
            self.start(node_id, via=None if node_id == ids[0] else ids[0])
        self.until_whole(ids, self.options.step_timeout, f"full view as {ids} joined through {ids[0]}")
        return ids

    def alive(self, node_id: str) -> set[str]:
        node = self.sim[node_id]
        return node.alive_members() if node.running else set()

    def events(self, node_id: str, kind: str, member: str, since: float = 0.0) -> list[float]:
        """When ``node_id`` recorded a lifecycle event ``kind`` about ``member`` (at or after ``since``)."""
        return [
            t
            for t, e in self.sim[node_id].member_events
            if t >= since and e.kind == kind and e.member.id == member
        ]

    # ------------------------------------------------------------ waiting

    def until(self, predicate: Callable[[], bool], timeout: float, seen: Callable[[], str]) -> None:
        """Run until ``predicate()``; AssertionError with ``seen()`` if not within ``timeout`` virtual s."""
        try:
            self.sim.run_until(predicate, timeout)
        except SimulationTimeout:
            raise AssertionError(seen()) from None

    def until_whole(self, ids: Iterable[str], timeout: float, what: str) -> None:
        """Run until each of ``ids`` is running and lists exactly ``ids`` alive."""
        want = set(ids)

        def whole() -> bool:
            return all(self.alive(i) == want for i in want)

        self.until(whole, timeout, lambda: f"no {what} within {timeout:g} s: {self.views(want)}")

    def views(self, ids: Iterable[str]) -> str:
        """What each of ``ids`` lists alive, for a failure message."""
        return "; ".join(
            f"{i} lists {sorted(self.alive(i))} alive" if self.sim[i].running else f"{i} is not running"
            for i in sorted(ids, key=_order)
        )

    # ------------------------------------------------------------ events

    def got(self, node_id: str, name: str, since: float = 0.0) -> list[tuple[str, Any]]:
        """``(author, payload)`` of the events ``name`` handed to ``node_id``'s application."""
        return [
            (d.author, d.payload) for d in self.sim[node_id].deliveries if d.name == name and d.time >= since
        ]

    def exchange(self, ids: list[str], tag: str, timeout: float) -> None:
        """Each of ``ids`` broadcasts one event; each other one must get it exactly once (not itself)."""
        sim, since = self.sim, self.sim.now
        for node_id in ids:
            sim[node_id].broadcast("contract.emit", tag)

        def senders(node_id: str) -> list[str]:
            return sorted((a for a, p in self.got(node_id, "contract.emit", since) if p == tag), key=_order)

        def complete() -> bool:
            return all(set(senders(i)) >= set(ids) - {i} for i in ids)

        def seen() -> str:
            missing = {i: sorted(set(ids) - {i} - set(senders(i)), key=_order) for i in ids}
            lost = "; ".join(f"{i} never got the events of {m}" for i, m in missing.items() if m)
            return f"events do not flow between {ids} within {timeout:g} s: {lost} ({self.views(ids)})"

        self.until(complete, timeout, seen)
        sim.run_for(self.options.settle)  # room for a duplicate to show up
        for node_id in ids:
            got = senders(node_id)
            if got != sorted(set(ids) - {node_id}, key=_order):
                raise AssertionError(
                    f"{node_id} got {tag!r} events from {got}: each of the others exactly once, never itself"
                )
        wrong = [
            f"{i} got {d.author}'s event {d.name!r} as from {d.origin}"
            for i in ids
            for d in sim[i].deliveries
            if d.time >= since and d.author and d.origin != d.author
        ]
        if wrong:
            raise AssertionError("events handed up with the wrong origin: " + "; ".join(wrong[:5]))

    def numbers(self, node_id: str, name: str, author: str, since: float = 0.0) -> list[int]:
        """The numbered payloads of ``author``'s events ``name`` that ``node_id`` got, in order."""
        return [p for a, p in self.got(node_id, name, since) if a == author and isinstance(p, int)]

    def final_checks(self) -> None:
        """After every rule: each node got each author's events in order; no router refused a frame."""
        self.sim.check_order()
        errors = self.sim.protocol_errors
        if errors:
            shown = "; ".join(
                f"{e.node} refused a frame from {e.peer} at t={e.time:.3f}: {e.error}" for e in errors[:3]
            )
            raise AssertionError(f"the router refused its own frames ({len(errors)} times): {shown}")


def _order(node_id: str) -> tuple[int, str]:
    """``r10`` after ``r9``."""
    digits = node_id[1:]
    return (int(digits), node_id) if digits.isdigit() else (1 << 30, node_id)


def first_difference(got: list[int], count: int) -> str:
    """How ``got`` differs from ``0 .. count-1``, for a failure message."""
    if len(got) != count:
        return f"{len(got)} times for {count} sent (not exactly once)"
    at = next(k for k, (a, b) in enumerate(zip(got, range(count), strict=True)) if a != b)
    return f"out of order: #{at} was {got[at]} ({got[max(0, at - 2) : at + 3]}...)"
