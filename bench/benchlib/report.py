"""The printed table and ``results.json``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rows import PYDEVTS, PYDEVTS_KEYRING, PYDEVTS_PLAIN, RowResult

if TYPE_CHECKING:
    from .keyring_join import JoinResult

RAW_PING = "raw anyio (1 send/frame)"
GOAL_MSGS = 200_000
GOAL_P50_RATIO = 1.3
ZMQ_ASYNC = "pyzmq asyncio PUSH/PULL"
NATS_PUB = "nats-py pub/sub"
GOAL_ZMQ_ASYNC_RATIO = 1.0  # pydevts msgs/s at least pyzmq (asyncio) msgs/s
GOAL_NATS_RATIO = 1.8  # pydevts msgs/s at least 1.8x nats-py pub/sub msgs/s
GOAL_KEYRING_MSGS_RATIO = 0.7  # with a keyring: events/s at least 0.7x the same run's open pydevts row
GOAL_KEYRING_P50_RATIO = 1.2  # with a keyring: request p50 at most 1.2x the same run's open pydevts row
GOAL_KEYRING_JOIN_MS = 2.0  # the keyring handshake adds at most 2 ms to a join
GOAL_SESSIONS_MSGS_RATIO = 0.9  # resumable links: events/s at least 0.9x the same run's plain links
GOAL_SESSIONS_P50_RATIO = 1.1  # resumable links: request p50 at most 1.1x the same run's plain links
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
    plain = by_name.get(PYDEVTS_PLAIN)
    if plain is not None:
        out += _sessions_goals(base, plain)
    keyed = by_name.get(PYDEVTS_KEYRING)
    if keyed is not None:
        out += _keyring_goals(base, keyed)
    return out


def _spread(values: Sequence[float | None], digits: int = 2, *, median: bool = False) -> str:
    """`` (per run 0.61-0.66)`` from the run-by-run ratios, when there are two or more.

    With ``median``: `` (per run 0.61-0.66, median 0.63)``.
    """
    kept = [v for v in values if v is not None]
    if len(kept) < 2:
        return ""
    mid = f", median {statistics.median(kept):.{digits}f}" if median else ""
    return f" (per run {min(kept):.{digits}f}-{max(kept):.{digits}f}{mid})"


def _keyring_goals(base: RowResult, keyed: RowResult) -> list[str]:
    """The keyring row against the open pydevts row of the same run (interleaved runs)."""
    return _paired_goals("keyring", "without", keyed, base, GOAL_KEYRING_MSGS_RATIO, GOAL_KEYRING_P50_RATIO)


def _sessions_goals(base: RowResult, plain: RowResult) -> list[str]:
    """The ``pydevts`` row (resumable links) against plain links in the same run (interleaved runs).

    A summary line (``resumable links vs plain links: events/s ..x, request
    p50 ..x``: ratios of the medians, with the spread and median of the
    per-run ratios), then the two goal lines.
    """
    lines = _paired_goals(
        "resumable links", "plain links", base, plain, GOAL_SESSIONS_MSGS_RATIO, GOAL_SESSIONS_P50_RATIO
    )
    parts = []
    for label, attr, key in (
        ("events/s", "e2e_msgs_per_s", "e2e_ratio_runs"),
        ("table msgs/s", "msgs_per_s", "msgs_ratio_runs"),
        ("request p50", "p50_us", "p50_ratio_runs"),
    ):
        mine, ref = getattr(base, attr), getattr(plain, attr)
        if mine and ref:
            parts.append(f"{label} {mine / ref:.2f}x{_spread(_runs(base, plain, key), median=True)}")
    if parts:
        lines.insert(0, f"resumable links vs plain links (paired, same run): {', '.join(parts)}")
    cpu = _cpu_line(base, plain)
    if cpu:
        lines.insert(1 if parts else 0, cpu)
    return lines


def _cpu_line(base: RowResult, plain: RowResult) -> str:
    """Process CPU µs per event (sender, receiver) and per round trip (client), medians of the runs.

    CPU time moves less with the load of a shared machine than wall-clock rates do.
    """
    parts = []
    for label, part, key in (
        ("sender", "throughput", "runs_sender_cpu_us"),
        ("receiver", "throughput", "runs_receiver_cpu_us"),
        ("request client", "rtt", "runs_client_cpu_us"),
    ):
        mine, ref = _median_of(getattr(base, part).get(key)), _median_of(getattr(plain, part).get(key))
        if mine and ref:
            parts.append(f"{label} {mine:.2f} vs {ref:.2f} µs = {mine / ref:.2f}x")
    return (
        f"  CPU per event / round trip (median of runs), resumable vs plain: {', '.join(parts)}"
        if parts
        else ""
    )


def _median_of(values: Sequence[float | None] | None) -> float | None:
    kept = [v for v in values or () if v is not None]
    return statistics.median(kept) if kept else None


def _runs(row: RowResult, ref: RowResult, key: str) -> list[float | None]:
    """``row``'s per-run ratios to ``ref`` (empty unless ``ref`` is the row's paired reference)."""
    runs: list[float | None] = row.paired.get(key, []) if row.paired.get("reference") == ref.name else []
    return runs


def _paired_goals(
    what: str, ref_what: str, row: RowResult, ref: RowResult, msgs_goal: float, p50_goal: float
) -> list[str]:
    """``row`` against its reference row ``ref`` of the same run: one-way events/s and request p50."""
    out: list[str] = []
    label = f"goal {what} one-way >= {msgs_goal}x {ref_what}"
    if ref.e2e_msgs_per_s and row.e2e_msgs_per_s:
        # From first send to last receive: a keyring receiver gets its events in records of up to
        # 1 MiB, so its first-to-last msgs/s (the table's) leaves out the wait for the first one.
        ratio = row.e2e_msgs_per_s / ref.e2e_msgs_per_s
        ok = ratio >= msgs_goal
        table_ratio = (
            f"; table msgs/s {row.msgs_per_s / ref.msgs_per_s:.2f}x"
            if row.msgs_per_s and ref.msgs_per_s
            else ""
        )
        out.append(
            f"{label}: from first send to last receive {row.e2e_msgs_per_s:,.0f}/s vs "
            f"{ref.e2e_msgs_per_s:,.0f}/s = {ratio:.2f}x{_spread(_runs(row, ref, 'e2e_ratio_runs'))}"
            f"{table_ratio} -> {'MET' if ok else 'NOT MET'}"
        )
    else:
        out.append(f"{label}: skipped (no msgs/s for {_missing(ref, row, 'e2e_msgs_per_s')})")
    label = f"goal {what} request p50 <= {p50_goal}x {ref_what}"
    if ref.p50_us and row.p50_us:
        ratio = row.p50_us / ref.p50_us
        ok = ratio <= p50_goal
        out.append(
            f"{label}: {row.p50_us:,.0f} µs vs {ref.p50_us:,.0f} µs = {ratio:.2f}x"
            f"{_spread(_runs(row, ref, 'p50_ratio_runs'))} -> {'MET' if ok else 'NOT MET'}"
        )
    else:
        out.append(f"{label}: skipped (no p50 for {_missing(ref, row, 'p50_us')})")
    return out


def _missing(base: RowResult, other: RowResult, attr: str) -> str:
    return ", ".join(r.name for r in (base, other) if not getattr(r, attr))


def _ms(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "-"
    return f"{stats['median']:.2f} [{stats['min']:.2f}-{stats['max']:.2f}]"


JOIN_MEASURES = (
    ("warm_join", "join, running process", "pairs, one node after the other"),
    ("warm_hs", "connect + handshake", "pairs of NodeClient connections, running process"),
    ("cold_join", "join, new process", "processes each; cold: varies more than the keyring adds"),
    ("cold_construct", "Node(...), new process", "processes each; keyring: reads the file, imports AES-GCM"),
)


def join_table(join: JoinResult) -> str:
    """The keyring join test: open and keyring medians [min-max] and what the keyring adds (ms)."""
    summary = join.summary
    headers = ("ms", "open median [min-max]", "keyring median [min-max]", "added")
    rows: list[tuple[str, ...]] = []
    for key, label, what in JOIN_MEASURES:
        m = summary.get(key)
        if not m:
            continue
        note = f"{m['open']['count']} {what}"
        if "paired" in m:
            d = m["paired"]
            note += "; keyring - open per pair: "
            note += f"median {d['median']:+.2f}, p10 {d['p10']:+.2f}, p90 {d['p90']:+.2f}"
        rows.append((label, _ms(m["open"]), _ms(m["keyring"]), f"{m['added']:+.2f}", note))
    lines = [f"{join.name}: a new node joins a one-node cluster, open or with a keyring, alternately"]
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

        def fmt(cells: Sequence[str]) -> str:
            pairs = enumerate(zip(cells, widths, strict=False))
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

        lines += [fmt(headers) + "  notes", "  ".join("-" * w for w in widths) + "  -----"]
        lines += [(fmt(r[:-1]) + "  " + r[-1]).rstrip() for r in rows]
    imported, first_key = summary.get("crypto_import"), summary.get("crypto_first_key")
    if imported and first_key:
        lines.append(
            f"once per keyring process (timed in the open processes, after their join): "
            f"require_cryptography() {_ms(imported)} ms (in Node(...)); then the first AES-GCM key "
            f"{_ms(first_key)} ms (in the first handshake)"
        )
    lines += [f"FAILED {_short(e)}" for e in join.errors]
    return "\n".join(lines)


def join_goal(join: JoinResult) -> str:
    """The keyring handshake's cost on a join against its goal: every join, and a new process's first.

    Every join: the median of the paired differences in a running process. The
    first join of a new process also makes the process's first AES-GCM key;
    its cost is timed on its own, since cold joins vary by more than 2 ms.
    """
    label = f"goal keyring adds <= {GOAL_KEYRING_JOIN_MS:g} ms to a join"
    warm, first = join.summary.get("warm_join"), join.summary.get("first_join_added")
    if not warm:
        return f"{label}: skipped (no joins in a running process)"
    added = warm["paired"]["median"]
    text = f"{label}: {added:+.2f} ms (running process, median of {warm['paired']['count']} pairs)"
    ok = added <= GOAL_KEYRING_JOIN_MS
    if first is not None:
        key = join.summary["crypto_first_key"]["median"]
        text += f", {first:+.2f} ms for a new process's first join (+ its first AES-GCM key, {key:.2f} ms)"
        ok = ok and first <= GOAL_KEYRING_JOIN_MS
    return f"{text} -> {'MET' if ok else 'NOT MET'}"


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
    path: Path,
    machine: dict[str, Any],
    settings: dict[str, Any],
    results: Sequence[RowResult],
    join: JoinResult | None = None,
) -> None:
    data: dict[str, Any] = {"machine": machine, "settings": settings, "rows": [asdict(r) for r in results]}
    if join is not None:
        data["keyring_join"] = asdict(join)
    path.write_text(json.dumps(data, indent=2) + "\n")
