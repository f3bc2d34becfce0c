"""The table (pydevts, Serf, pydevts/Serf for rows (a)-(e)), its notes, and serf_results.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .scenario import Measure, Settings, SystemResult, fmt_seconds


def row_labels(n: int, hog_seconds: float) -> dict[str, str]:
    return {
        "a": f"(a) launch -> all {n} see {n} alive",
        "b": f"(b) 1 event -> all {n - 1} others",
        "c": "(c) SIGKILL -> all mark it failed",
        "d": "(d) SIGSTOP -> all mark it failed",
        "e": f"(e) false failures, {hog_seconds:g} s CPU hog",
    }


def cell(row: str, m: Measure | None) -> str:
    if m is None:
        return "-"
    if m.value is None:
        return m.error
    return f"{m.value:.0f}" if row == "e" else fmt_seconds(m.value)


def column(result: SystemResult | None, row: str) -> str:
    if result is None:
        return "not run"
    if result.skipped:
        return "skipped"
    return cell(row, result.rows.get(row))


def ratio(row: str, p: Measure | None, s: Measure | None, fail_timeout: float) -> str:
    if p is None or s is None or s.value is None:
        return "n/a"
    if row == "e":
        if p.value is None:
            return "n/a"
        if s.value == 0:
            return "n/a (both 0)" if p.value == 0 else "n/a (Serf 0)"
        return fmt_ratio(p.value / s.value)
    if p.value is None:
        # not detected in time: pydevts took at least the timeout
        return f"> {fail_timeout / s.value:.1f}" if p.error.startswith("not detected") else "n/a"
    return fmt_ratio(p.value / s.value) if s.value > 0 else "n/a"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def table(pydevts: SystemResult | None, serf: SystemResult | None, settings: Settings) -> str:
    labels = row_labels(settings.nodes, settings.hog_seconds)
    header = ("measurement", "pydevts", "Serf", "pydevts/Serf")
    lines: list[tuple[str, ...]] = []
    for row, label in labels.items():
        p = pydevts.rows.get(row) if pydevts else None
        s = serf.rows.get(row) if serf else None
        lines.append(
            (label, column(pydevts, row), column(serf, row), ratio(row, p, s, settings.fail_timeout))
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(4)]
    sep = "+".join("-" * (w + 2) for w in widths)
    out = [_line(header, widths), sep]
    out += [_line(r, widths) for r in lines]
    return "\n".join(out)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    first = f" {cells[0]:<{widths[0]}} "
    rest = [f" {c:>{w}} " for c, w in zip(cells[1:], widths[1:], strict=True)]
    return "|".join([first, *rest])


def notes(result: SystemResult) -> list[str]:
    """One line per row with what the cell does not show."""
    out: list[str] = []
    name = result.system
    if result.skipped:
        return [f"{name}: skipped: {result.skipped}"]
    a, b, c, d, e = (result.rows.get(r) for r in ("a", "b", "c", "d", "e"))
    if a and a.value is not None:
        out.append(
            f"{name} (a): first node up after {fmt_seconds(a.detail['first_node_up_s'])}, "
            f"all {result.n} launched after {fmt_seconds(a.detail['launch_span_s'])}; "
            f"complete views {fmt_seconds(a.detail['after_last_launch_s'])} after the last launch"
            + (
                f", {fmt_seconds(a.detail['after_last_up_s'])} after the last node was up "
                f"(at {fmt_seconds(a.detail['last_up_s'])})"
                if "after_last_up_s" in a.detail
                else ""
            )
        )
    if b and b.value is not None:
        line = (
            f"{name} (b): median of {len(b.detail['events'])} events (range "
            f"{fmt_seconds(b.detail['min_all_s'])} - {fmt_seconds(b.detail['max_all_s'])}); "
            f"median receiver {fmt_seconds(b.detail['median_receiver_s'])}"
        )
        if "sender_own_s" in b.detail:
            own = fmt_seconds(b.detail["sender_own_s"])
            line += f"; the sending agent logged it {own} after `serf event` started"
        out.append(line)
    for row, m in (("c", c), ("d", d)):
        if m and m.detail:
            parts = [f"{m.detail['detected_by']}/{m.detail['observers']} observers detected it"]
            if "first_s" in m.detail:
                parts.append(f"first after {fmt_seconds(m.detail['first_s'])}")
            if m.detail.get("suspicions_logged"):
                parts.append(f"{m.detail['suspicions_logged']} suspicions logged")
            if m.detail.get("reported_left_by"):
                parts.append(f"reported 'left' (not failed) by {len(m.detail['reported_left_by'])}")
            out.append(f"{name} ({row}): {m.detail['signal']} {m.detail['victim']}: " + ", ".join(parts))
    false_run1 = result.notes.get("false_failures_run1")
    if false_run1:
        out.append(
            f"{name}: false failures in run 1 (no hog): {len(false_run1)}: {', '.join(false_run1[:5])}"
        )
    if e and e.detail:
        parts = [f"counted from hog start to {e.detail['grace_s']:g} s after its end"]
        if e.detail.get("hog_cpu_s") is not None:
            parts.append(f"the hog used {e.detail['hog_cpu_s']:.1f} s CPU on cores {e.detail['hog_cores']}")
        if e.detail.get("suspicions_logged"):
            parts.append(f"{e.detail['suspicions_logged']} suspicions logged")
        if e.detail.get("failed"):
            parts.append("failed: " + ", ".join(e.detail["failed"][:5]))
        if e.detail.get("left"):
            parts.append(f"{len(e.detail['left'])} 'left' events")
        out.append(f"{name} (e): " + "; ".join(parts))
    errors = result.notes.get("node_errors_run1")
    if errors:
        out.append(f"{name}: node errors: {'; '.join(errors[:3])}")
    return out


def write_json(
    path: Path, machine: dict[str, Any], settings: Settings, runs: list[dict[str, SystemResult]], total: float
) -> None:
    data = {
        "machine": machine,
        "settings": asdict(settings),
        "runs": [{name: asdict(r) for name, r in run.items()} for run in runs],
        "total_seconds": total,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
