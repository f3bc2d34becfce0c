"""The printed table and ``results.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .rows import RowResult

PYDEVTS = "pydevts"
RAW_PING = "raw anyio (1 send/frame)"
GOAL_MSGS = 200_000
GOAL_P50_RATIO = 1.3
ZMQ_ASYNC = "pyzmq asyncio PUSH/PULL"
NATS_PUB = "nats-py pub/sub"
GOAL_ZMQ_ASYNC_RATIO = 1.0  # pydevts msgs/s at least pyzmq (asyncio) msgs/s
GOAL_NATS_RATIO = 1.8  # pydevts msgs/s at least 1.8x nats-py pub/sub msgs/s
HEADERS = ("row", "msgs/s", "RTT p50 (µs)", "RTT p99 (µs)", "pydevts/row msgs/s", "pydevts/row p50", "notes")


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def table(results: Sequence[RowResult]) -> str:
    base = next((r for r in results if r.name == PYDEVTS), None)
    base_msgs = base.msgs_per_s if base else None
    base_p50 = base.p50_us if base else None
    rows: list[tuple[str, ...]] = []
    for r in results:
        failures = [f"SKIPPED: {r.skipped}"] if r.skipped else [f"FAILED {_short(e)}" for e in r.errors]
        notes = "; ".join(filter(None, [r.note, *failures]))
        rows.append((
            r.name, _num(r.msgs_per_s), _num(r.p50_us), _num(r.p99_us),
            _ratio(base_msgs, r.msgs_per_s), _ratio(base_p50, r.p50_us), notes,
        ))  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADERS[:-1])]
    right = {1, 2, 3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  ".join([*out, cells[-1]]).rstrip()

    sep = "  ".join("-" * w for w in widths) + "  " + "-" * 5
    return "\n".join([line(HEADERS), sep, *(line(row) for row in rows)])


def goals(results: Sequence[RowResult]) -> list[str]:
    """Plain statements of pydevts against its goals (where both numbers exist)."""
    by_name = {r.name: r for r in results}
    base, raw = by_name.get(PYDEVTS), by_name.get(RAW_PING)
    out: list[str] = []
    if base is None:
        return out
    if base.msgs_per_s is not None:
        ok = base.msgs_per_s >= GOAL_MSGS
        out.append(
            f"goal one-way >= {GOAL_MSGS:,} events/s: pydevts {base.msgs_per_s:,.0f}/s -> "
            f"{'MET' if ok else 'NOT MET'}"
        )
    if base.p50_us is not None and raw is not None and raw.p50_us:
        ratio = base.p50_us / raw.p50_us
        out.append(
            f"goal RTT p50 <= {GOAL_P50_RATIO}x raw anyio ping-pong: pydevts {base.p50_us:,.0f} µs vs "
            f"raw {raw.p50_us:,.0f} µs = {ratio:.2f}x -> {'MET' if ratio <= GOAL_P50_RATIO else 'NOT MET'}"
        )
    line = _relative_throughput_goal(base, by_name.get(ZMQ_ASYNC), by_name.get(NATS_PUB))
    if line:
        out.append(line)
    return out


def _relative_throughput_goal(base: RowResult, zmq_row: RowResult | None, nats: RowResult | None) -> str:
    """pydevts one-way throughput against pyzmq (asyncio) and nats-py pub/sub.

    Nothing when none of the rows ran (``--only``); a "skipped" line when a row ran without a number.
    """
    label = f"goal one-way >= pyzmq (asyncio) and >= {GOAL_NATS_RATIO}x nats-py pub/sub"
    if zmq_row is None and nats is None:
        return ""
    mine = base.msgs_per_s
    zmq_rate = zmq_row.msgs_per_s if zmq_row else None
    nats_rate = nats.msgs_per_s if nats else None
    if not (mine and zmq_rate and nats_rate):
        rates = ((PYDEVTS, mine), (ZMQ_ASYNC, zmq_rate), (NATS_PUB, nats_rate))
        return f"{label}: skipped (no msgs/s for {', '.join(name for name, rate in rates if not rate)})"
    zmq_ratio, nats_ratio = mine / zmq_rate, mine / nats_rate
    ok = zmq_ratio >= GOAL_ZMQ_ASYNC_RATIO and nats_ratio >= GOAL_NATS_RATIO
    return (
        f"{label}: pydevts {mine:,.0f}/s = {zmq_ratio:.2f}x pyzmq asyncio "
        f"({zmq_rate:,.0f}/s), {nats_ratio:.2f}x nats-py ({nats_rate:,.0f}/s) -> "
        f"{'MET' if ok else 'NOT MET'}"
    )


def write_json(
    path: Path, machine: dict[str, Any], settings: dict[str, Any], results: Sequence[RowResult]
) -> None:
    data = {"machine": machine, "settings": settings, "rows": [asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=2) + "\n")
