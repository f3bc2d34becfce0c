"""Checks over a simulation's records, for tests: each raises ``AssertionError`` saying what it saw."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .node import SimNode
from .records import Sent

__all__ = ["check_exactly_once", "check_failed_by_all", "check_order", "converged"]

_SHOWN = 10  # problems listed in a message


def _fail(problems: list[str], what: str) -> None:
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise AssertionError(f"{what}: " + "; ".join(problems[:_SHOWN]) + more)


def check_exactly_once(
    nodes: Mapping[str, SimNode], sent: Iterable[Sent], among: Iterable[str], since: float = 0.0
) -> None:
    """Every event sent at or after ``since`` by a node of ``among`` reached each of its
    receivers in ``among`` exactly once (a broadcast: every other node of ``among``), and
    named its author as its origin; no node got any event twice.
    """
    group = list(among)
    members = set(group)
    problems: list[str] = []
    counts: dict[str, Counter[tuple[str, int]]] = {}
    for node_id, node in nodes.items():
        counts[node_id] = Counter((d.author, d.seq) for d in node.deliveries if d.author)
        for (author, seq), n in counts[node_id].items():
            if n > 1:
                problems.append(f"{node_id} got {author}#{seq} {n} times")
        problems += [
            f"{node_id} got {d.author}#{d.seq} ({d.name!r}) with origin {d.origin!r}"
            for d in node.deliveries
            if d.author and d.origin != d.author
        ]
    for s in sent:
        if s.time < since or s.author not in members:
            continue
        receivers = [s.dest] if s.dest is not None else [n for n in group if n != s.author]
        problems += [
            f"{r} never got {s.author}#{s.seq} ({s.name!r}, sent at t={s.time:.3f})"
            for r in receivers
            if r in members and counts.get(r, Counter())[(s.author, s.seq)] == 0
        ]
    _fail(problems, "not exactly once")


def check_order(nodes: Mapping[str, SimNode]) -> None:
    """Each node got each author's events in the order they were sent."""
    problems = []
    for node_id, node in nodes.items():
        last: dict[str, int] = {}
        for d in node.deliveries:
            if d.author and d.seq <= last.get(d.author, 0):
                problems.append(f"{node_id} got {d.author}#{d.seq} after #{last[d.author]}")
            last[d.author] = max(d.seq, last.get(d.author, 0))
    _fail(problems, "out of order")


def converged(nodes: Mapping[str, SimNode]) -> bool:
    """Every running node sees exactly the running nodes alive (itself included)."""
    live = {node_id for node_id, node in nodes.items() if node.running}
    return all(nodes[node_id].alive_members() == live for node_id in live)


def check_failed_by_all(
    nodes: Mapping[str, SimNode], node_id: str, down_at: float, within: float
) -> dict[str, float]:
    """Every running node (but ``node_id``) recorded ``node_id`` failed or left within ``within``
    seconds of ``down_at``; return how long each took.
    """
    took: dict[str, float] = {}
    problems = []
    for observer_id, observer in nodes.items():
        if observer_id == node_id or not observer.running:
            continue
        when = next(
            (
                t
                for t, event in observer.member_events
                if t >= down_at and event.member.id == node_id and event.kind in ("failed", "left")
            ),
            None,
        )
        if when is None:
            problems.append(f"{observer_id} never saw it go")
        elif when - down_at > within:
            problems.append(f"{observer_id} saw it go after {when - down_at:.3f} s")
        else:
            took[observer_id] = when - down_at
    _fail(problems, f"{node_id} (down at t={down_at:.3f}) not seen failed by all within {within:g} s")
    return took
