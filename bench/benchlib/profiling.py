"""``--profile``: the pydevts tests (each selected pydevts row) once more, under cProfile in both processes.

Runs after the table, so profiling never slows the measured numbers.
"""

from __future__ import annotations

import io
import pstats
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .rows import PYDEVTS, ROWS, Row, Settings, Test, run_pair

TOP = 25


def profile_pydevts(settings: Settings, names: Sequence[str] = (PYDEVTS,)) -> str:
    """Top functions by tottime of both processes, for the throughput and the round-trip test.

    For each pydevts row named in ``names`` (``pydevts``, ``pydevts, plain links``, ``pydevts + keyring``).
    """
    out: list[str] = []
    for row in ROWS:
        if row.kind != "pydevts" or row.name not in names:
            continue
        for label, test in (("throughput", row.throughput), ("round trips", row.rtt)):
            if test is not None:
                out.append(_profile_test(row, label, test, settings))
    return "\n\n".join(out)


def _profile_test(row: Row, label: str, test: Test, settings: Settings) -> str:
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pydevts-bench-prof-") as tmp:
        folder = Path(tmp)
        want_server = label == "throughput"
        server, client = run_pair(row, test, settings, want_server_result=want_server, profile_dir=folder)
        if want_server:
            summary = f"{server.get('received')} received, {server.get('msgs_per_s', 0):,.0f} msgs/s"
        else:
            summary = f"{client.get('count')} round trips, p50 {client.get('p50_us', 0):,.0f} µs"
        out.append(f"##### {row.name} {label}, profiled (cProfile slows both sides): {summary}")
        for role, side in ((test.server, "server"), (test.client, "client")):
            text = io.StringIO()
            stats = pstats.Stats(str(folder / f"{role}.prof"), stream=text)
            stats.strip_dirs().sort_stats("tottime").print_stats(TOP)
            out.append(
                f"=== {row.name} {label}: {side} ({role}), top {TOP} by tottime ===\n{_trim(text.getvalue())}"
            )
    return "\n\n".join(out)


def _trim(text: str) -> str:
    """Drop pstats' preamble lines up to the summary line."""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if "function calls" in line:
            return "\n".join(lines[i:])
    return "\n".join(lines)
