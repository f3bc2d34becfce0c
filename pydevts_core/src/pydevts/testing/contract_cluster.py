"""The cluster the router contract runs its rules on (internal to :mod:`pydevts.testing`).

A :class:`ContractCluster` starts real :class:`~pydevts.Node` s in one
process over a :class:`~pydevts.testing.MemoryNetwork`, each on a host of its
own named like the node (``r0``, ``r1``, ...) and listening on port
:data:`PORT` there, so that any member can be joined through
(``cluster_host=<its id>``). It records what each node receives and every
lifecycle event, and can stop a node gracefully or crash it (no goodbye).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..members import MemberEvent
from ..node.core import Node
from ..protocols import Router
from ..routing.machine import RouterMachine
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["PORT", "ContractCluster", "ContractOptions", "alive"]

PORT = 7000

#: What the contract's nodes get unless ``node_options`` says otherwise: islands (after a
#: partition, or a router that lost a member) are looked for every second, not every 30 s.
DEFAULT_NODE_OPTIONS: Mapping[str, Any] = {"merge_interval": 1.0}


@dataclass(frozen=True)
class ContractOptions:
    """The bounds and sizes of one :func:`~pydevts.testing.check_router` run (see there)."""

    nodes: int = 4
    failure_timeout: float = 10.0
    heal_timeout: float = 10.0
    step_timeout: float = 15.0
    events: int = 200
    resets: int = 6
    node_options: Mapping[str, Any] = field(default_factory=dict)


def alive(node: Node) -> set[str]:
    return {m.id for m in node.members if m.alive}


class ContractCluster:
    """Nodes of one rule, run in ``tg``; ``nodes[id]`` are the ones running now."""

    def __init__(
        self, make: Callable[[], Router | RouterMachine], options: ContractOptions, tg: TaskGroup
    ) -> None:
        self.make = make
        self.options = options
        self.tg = tg
        self.network = MemoryNetwork(seed=7)
        self.nodes: dict[str, Node] = {}
        self.got: dict[str, list[tuple[str, str, Any]]] = {}  # (event name, sender, payload)
        self.events: dict[str, list[tuple[str, str]]] = {}  # (lifecycle kind, member id)
        self._done: dict[str, anyio.Event] = {}  # set once that node's task has ended
        # Every host a rule may use: a crashed host is cut off from all of them.
        self.hosts = [f"r{i}" for i in range(options.nodes + 4)]

    @property
    def ids(self) -> list[str]:
        return sorted(self.nodes, key=lambda i: int(i[1:]))

    async def form(self, count: int) -> list[str]:
        """Start ``r0`` .. ``r{count-1}``, each joining through ``r0``; wait for the full view."""
        ids = self.hosts[:count]
        for node_id in ids:
            await self.start(node_id, via=ids[0])
        await self.until_whole(ids, self.options.step_timeout, "the cluster to form")
        return ids

    async def start(self, node_id: str, *, via: str) -> Node:
        """Start a node with id and host ``node_id`` that joins through member ``via``."""
        options = {**DEFAULT_NODE_OPTIONS, **self.options.node_options}
        node = Node(
            PORT,
            node_id=node_id,
            host=node_id,
            port=PORT,
            cluster_host=via,
            transport=MemoryTransport(self.network, host=node_id),
            router=self.make(),
            **options,
        )
        self.got[node_id], self.events[node_id] = [], []  # a restarted node starts afresh
        _instrument(node, self.got[node_id], self.events[node_id])
        await self.tg.start(self._run, node)
        return node

    async def _run(self, node: Node, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        done = self._done[node.id] = anyio.Event()
        try:
            async with node:  # a graceful stop on the way out (a crashed node's goodbye goes nowhere)
                self.nodes[node.id] = node
                task_status.started()
                await anyio.sleep_forever()
        finally:
            if self.nodes.get(node.id) is node:
                del self.nodes[node.id]
            done.set()

    async def stop(self, node_id: str) -> None:
        """Stop a node gracefully (it says goodbye) and wait until it is gone."""
        node = self.nodes[node_id]
        await node.stop()
        if node._tg is not None:
            node._tg.cancel_scope.cancel()  # ends _run's sleep (the stop is done: nothing else to cancel)
        await self._done[node_id].wait()

    async def crash(self, node_id: str) -> None:
        """Kill a node the way a killed process goes: no goodbye, every connection reset.

        Its host is cut off from every host (nothing it still sends arrives,
        no connect to or from it succeeds), every connection it has is reset
        (both ends see it closed, as when the kernel of a killed process
        closes its sockets), and the node's tasks are cancelled. Returns when
        its task has ended (its listener is closed); the host stays cut off
        until :meth:`revive`.
        """
        node = self.nodes[node_id]
        self.network.partition([node_id], self.hosts)
        self.network.reset(node_id)
        tg = node._tg  # the node's own task group: cancelling it kills every task of the node
        assert tg is not None
        tg.cancel_scope.cancel()
        await self._done[node_id].wait()

    def revive(self) -> None:
        """Let crashed hosts talk again (their nodes are gone: connects to them are refused)."""
        self.network.heal()

    # ----------------------------------------------------------- waiting

    async def until(self, predicate: Callable[[], bool], timeout: float, seen: Callable[[], str]) -> None:
        """Wait until ``predicate()``; AssertionError with ``seen()`` (what was seen) after ``timeout``."""
        with anyio.move_on_after(timeout):
            while not predicate():  # noqa: ASYNC110 - polling other tasks' results
                await anyio.sleep(0.01)
            return
        raise AssertionError(seen())

    async def until_whole(self, ids: Iterable[str], timeout: float, what: str) -> None:
        """Wait until each of ``ids`` lists exactly ``ids`` alive."""
        want = set(ids)

        def whole() -> bool:
            return all(i in self.nodes and alive(self.nodes[i]) == want for i in want)

        await self.until(whole, timeout, lambda: f"no {what} within {timeout:g} s: {self.views(want)}")

    def views(self, ids: Iterable[str]) -> str:
        """What each of ``ids`` lists alive, for a failure message."""
        parts = []
        for i in sorted(ids):
            node = self.nodes.get(i)
            parts.append(f"{i} lists {sorted(alive(node))} alive" if node else f"{i} is not running")
        return "; ".join(parts)

    async def exchange(self, ids: list[str], tag: str, timeout: float) -> None:
        """Each of ``ids`` emits one event; each other one must get it exactly once (not itself)."""
        for node_id in ids:
            await self.nodes[node_id].emit("contract.emit", [tag, node_id])

        def senders(node_id: str) -> list[str]:
            return sorted(p[1] for n, _, p in self.got[node_id] if n == "contract.emit" and p[0] == tag)

        def complete() -> bool:
            return all(set(senders(i)) >= set(ids) - {i} for i in ids)

        def seen() -> str:
            missing = {i: sorted(set(ids) - {i} - set(senders(i))) for i in ids}
            lost = "; ".join(f"{i} never got the events of {m}" for i, m in missing.items() if m)
            return f"events do not flow between {ids} within {timeout:g} s: {lost} ({self.views(ids)})"

        await self.until(complete, timeout, seen)
        await anyio.sleep(0.2)  # room for a duplicate to show up
        for node_id in ids:
            got = senders(node_id)
            if got != sorted(set(ids) - {node_id}):
                raise AssertionError(
                    f"{node_id} got events from {got}: each of the others exactly once, never itself"
                )


def _instrument(node: Node, got: list[tuple[str, str, Any]], events: list[tuple[str, str]]) -> None:
    def record(name: str) -> Callable[[str, Any], Any]:
        async def handler(sender: str, payload: Any) -> None:
            got.append((name, sender, payload))

        return handler

    async def on_echo(sender: str, payload: Any) -> dict[str, Any]:
        return {"from": node.id, "echo": payload}

    async def on_lifecycle(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    for name in ("contract.emit", "contract.send", "contract.seq"):
        node.add_handler(name, record(name))
    node.add_handler("contract.echo", on_echo)
    node.on_lifecycle(on_lifecycle)
