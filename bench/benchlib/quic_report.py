"""The table, the goal lines and ``bench/quic_results.json`` of ``bench/quic_compare.py``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .quic_rows import TestResult

THROUGHPUT_GOAL = 0.8  # pydevts QUIC events/s / raw aioquic (64 KiB writes) msgs/s
MEMORY_GOAL_MIB = 32.0  # "a few tens of MB at most": peak RSS growth of each side under a slow receiver

Results = dict[str, TestResult]


def _num(x: float | None, unit: str = "", digits: int = 0) -> str:
    if x is None:
        return "-"
    if unit == "/s":
        if x >= 1e6:
            return f"{x / 1e6:.2f} M/s"
        if x >= 1e3:
            return f"{x / 1e3:.1f} k/s"
        return f"{x:.0f} /s"
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def _get(results: Results, key: str, *path: str) -> Any:
    r = results.get(key)
    if r is None:
        return None
    value: Any = r.value
    for p in path:
        if not isinstance(value, dict):
            return None
        value = value.get(p)
    return value


def _errors(results: Results, *keys: str) -> str:
    errs = [f"{results[k].name}: {e}" for k in keys if k in results for e in results[k].errors]
    return ("ERROR " + "; ".join(errs)) if errs else ""


def _drops(results: Results, *keys: str) -> str:
    """Kernel UDP buffer drops during these tests (machine-wide counter), if any."""
    parts = []
    for key in keys:
        r = results.get(key)
        if r is None:
            continue
        total = sum(run.get("udp_drops") or 0 for run in r.runs)
        if total:
            name = "QUIC" if key.endswith("quic") else r.name
            parts.append(f"{name}: {total} UDP datagrams dropped by the kernel")
    return "; ".join(parts)


def _range_note(results: Results, key: str, field: str, fmt: str) -> str:
    r = results.get(key)
    if r is None or len(r.runs) < 2:
        return ""
    values = [run.get(field) for run in r.runs if run.get(field)]
    if len(values) < 2:
        return ""
    return f"runs {fmt.format(min(values))}-{fmt.format(max(values))}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def table(results: Results, settings: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def add(label: str, quic: str, tcp: str, ratio: str, note: str = "") -> None:
        rows.append((label, quic, tcp, ratio, note))

    for key, label in (
        ("raw_1", "1a raw aioquic, 1 write/message"),
        ("raw_64k", "1b raw aioquic, 64 KiB writes"),
    ):
        if key in results:
            rate = _get(results, key, "msgs_per_s")
            mb = _get(results, key, "mb_per_s")
            sent = _get(results, key, "sender") or {}
            note = _join(
                "asyncio (aioquic API)",
                f"{_num(mb, 'MB/s', 1)} payload" if mb else "",
                f"N={sent.get('target', 0):,}" if sent else "",
                "time-limited" if sent.get("time_limited") else "",
                _range_note(results, key, "msgs_per_s", "{:,.0f}"),
                _drops(results, key),
                _errors(results, key),
            )
            add(label + ": msgs/s", _num(rate, "/s"), "-", "-", note)

    if "thr_quic" in results or "thr_tcp" in results:
        q, t = _get(results, "thr_quic", "msgs_per_s"), _get(results, "thr_tcp", "msgs_per_s")
        add("2  pydevts node->node one-way: events/s", _num(q, "/s"), _num(t, "/s"), _ratio(q, t),
            _join(_lost(results, "thr_quic"), _lost(results, "thr_tcp"),
                  _range_note(results, "thr_quic", "msgs_per_s", "{:,.0f}"),
                  _drops(results, "thr_quic"), _errors(results, "thr_quic", "thr_tcp")))  # fmt: skip
    if "rtt_quic" in results or "rtt_tcp" in results:
        for pct in ("p50", "p99"):
            q, t = _get(results, "rtt_quic", f"{pct}_us"), _get(results, "rtt_tcp", f"{pct}_us")
            add(f"2  pydevts request/reply RTT {pct}", _num(q, "µs"), _num(t, "µs"), _ratio(q, t),
                _join(_range_note(results, "rtt_quic", f"{pct}_us", "{:.0f}"), _drops(results, "rtt_quic"),
                      _errors(results, "rtt_quic", "rtt_tcp")) if pct == "p50" else "")  # fmt: skip
    if "conn_quic" in results or "conn_tcp" in results:
        for pct in ("p50", "p90"):
            q, t = _get(results, "conn_quic", f"{pct}_ms"), _get(results, "conn_tcp", f"{pct}_ms")
            n = _get(results, "conn_quic", "count") or _get(results, "conn_tcp", "count")
            add(f"3  cold transport.connect() {pct}", _num(q, "ms", 2), _num(t, "ms", 2), _ratio(q, t),
                _join(f"{n} connects, new transport each" if pct == "p50" and n else "",
                      _drops(results, "conn_quic") if pct == "p50" else "",
                      _errors(results, "conn_quic", "conn_tcp") if pct == "p50" else ""))  # fmt: skip
    if "join_quic" in results or "join_tcp" in results:
        q, t = _get(results, "join_quic", "join_ms"), _get(results, "join_tcp", "join_ms")
        reg = _get(results, "join_tcp", "registry_ms") or _get(results, "join_quic", "registry_ms")
        n = _get(results, "join_quic", "joins") or _get(results, "join_tcp", "joins")
        add("3  new node joins 1-node cluster, median", _num(q, "ms", 1), _num(t, "ms", 1), _ratio(q, t),
            _join(f"{n} processes each" if n else "", _errors(results, "join_quic", "join_tcp")))  # fmt: skip
        q, t = _get(results, "join_quic", "prebuilt_join_ms"), _get(results, "join_tcp", "prebuilt_join_ms")
        add(
            "3  ... same, plugins found before timing",
            _num(q, "ms", 1),
            _num(t, "ms", 1),
            _ratio(q, t),
            f"plugin discovery alone: {reg:.0f} ms" if reg else "",
        )
    if "mem_quic" in results or "mem_tcp" in results:
        _memory_rows(results, add, settings)

    headers = ("measure", "QUIC", "TCP", "QUIC/TCP", "notes")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    widths[4] = len(headers[4])

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(headers), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _lost(results: Results, key: str) -> str:
    recv = _get(results, key, "receiver") or {}
    sent = _get(results, key, "sender") or {}
    missing = sent.get("sent", 0) - recv.get("received", 0)
    name = "QUIC" if key.endswith("quic") else "TCP"
    notes = []
    if sent.get("time_limited"):
        notes.append(f"{name} time-limited")
    if missing > 0:
        notes.append(f"{name} lost {missing}")
    return "; ".join(notes)


def _memory_rows(results: Results, add: Any, settings: dict[str, Any]) -> None:
    def side(key: str, who: str, field: str) -> float | None:
        v = _get(results, key, who, field)
        return float(v) if v is not None else None

    payload = settings.get("mem_payload", 0)
    sleep_ms = settings.get("mem_handler_sleep", 0) * 1e3
    for who, label in (("sender", "sender"), ("receiver", "receiver")):
        q, t = side("mem_quic", who, "growth_mib"), side("mem_tcp", who, "growth_mib")
        note = ""
        if who == "sender":
            note = (
                f"{payload // 1024} KiB events as fast as possible, at most "
                f"{settings.get('mem_max_bytes', 0) / 1e6:.0f} MB / {settings.get('mem_seconds', 0):g} s"
            )
        else:
            note = f"handler sleeps {sleep_ms:g} ms per event; peak of VmRSS samples and VmHWM"
        add(f"4  slow receiver: {label} peak RSS growth", _num(q, "MiB", 1), _num(t, "MiB", 1),
            _ratio(q, t), note)  # fmt: skip
    q, t = side("mem_quic", "sender", "sent_per_s"), side("mem_tcp", "sender", "sent_per_s")
    lq, lt = side("mem_quic", "sender", "longest_send_ms"), side("mem_tcp", "sender", "longest_send_ms")
    add("4  slow receiver: sender events/s (flood)", _num(q, "/s"), _num(t, "/s"), _ratio(q, t),
        _join(f"longest send() QUIC {lq:.0f} ms" if lq is not None else "",
              f"TCP {lt:.0f} ms" if lt is not None else ""))  # fmt: skip
    q, t = side("mem_quic", "receiver", "msgs_per_s"), side("mem_tcp", "receiver", "msgs_per_s")
    add("4  slow receiver: delivered events/s", _num(q, "/s"), _num(t, "/s"), _ratio(q, t))
    q, t = side("mem_quic", "sender", "drain_s"), side("mem_tcp", "sender", "drain_s")
    backlog = []
    for key, name in (("mem_quic", "QUIC"), ("mem_tcp", "TCP")):
        d, r = side(key, "sender", "drain_s"), side(key, "receiver", "msgs_per_s")
        if d is not None and r:
            backlog.append(f"{name} ≈{d * r * payload / 2**20:.0f} MiB")
    add("4  slow receiver: drain after the flood", _num(q, "s", 1), _num(t, "s", 1), _ratio(q, t),
        _join("in flight when the flood stopped: " + ", ".join(backlog) if backlog else "",
              _mem_problems(results)))  # fmt: skip


def _mem_problems(results: Results) -> str:
    notes = []
    for key, name in (("mem_quic", "QUIC"), ("mem_tcp", "TCP")):
        if key not in results:
            continue
        sent = _get(results, key, "sender") or {}
        recv = _get(results, key, "receiver") or {}
        if sent.get("error"):
            notes.append(f"{name} sender: {sent['error']}")
        if sent and recv and recv.get("received") != sent.get("sent"):
            notes.append(f"{name}: {sent.get('sent')} sent, {recv.get('received')} handled")
        notes += [f"{name}: ERROR {e}" for e in results[key].errors]
    drops = _drops(results, "mem_quic")
    return "; ".join([*notes, drops] if drops else notes)


def goals(results: Results) -> list[str]:
    lines = []
    quic = _get(results, "thr_quic", "msgs_per_s")
    raw = _get(results, "raw_64k", "msgs_per_s")
    tcp = _get(results, "thr_tcp", "msgs_per_s")
    if quic and raw:
        r = quic / raw
        verdict = "met" if r >= THROUGHPUT_GOAL else "NOT met"
        lines.append(
            f"QUIC events/s / raw aioquic 64 KiB-write msgs/s = {r:.2f} "
            f"(goal >= {THROUGHPUT_GOAL}: {verdict}); vs 1 write/message: "
            f"{_ratio(quic, _get(results, 'raw_1', 'msgs_per_s'))}"
        )
    if quic and tcp:
        lines.append(f"QUIC events/s / TCP events/s = {quic / tcp:.2f}")
    qp, tp = _get(results, "rtt_quic", "p50_us"), _get(results, "rtt_tcp", "p50_us")
    if qp and tp:
        lines.append(f"QUIC RTT p50 / TCP RTT p50 = {qp / tp:.2f} (above 1: QUIC is slower)")
    s, r = (
        _get(results, "mem_quic", "sender", "growth_mib"),
        _get(results, "mem_quic", "receiver", "growth_mib"),
    )
    if s is not None and r is not None:
        worst = max(s, r)
        verdict = "met" if worst <= MEMORY_GOAL_MIB else "NOT met"
        lines.append(
            f"QUIC slow receiver: peak RSS growth sender {s:.1f} MiB, receiver {r:.1f} MiB "
            f"(goal: bounded, <= {MEMORY_GOAL_MIB:g} MiB each: {verdict})"
        )
    return lines


def write_json(path: Path, machine: dict[str, Any], settings: dict[str, Any], results: Results) -> None:
    data = {
        "machine": machine,
        "settings": settings,
        "goals": goals(results),
        "results": {key: asdict(r) for key, r in results.items()},
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
