"""Where the time of a cluster's formation goes (issue 15): a timeline of N node processes.

``.venv/bin/python bench/formation_timeline.py [--nodes 10 --nodes 25] [--runs 3] [--json PATH]``
``.venv/bin/python bench/formation_timeline.py --memory 10,25,50,100``

Process mode (default: N=10 and N=25, one run each): starts N pydevts node
processes on 127.0.0.1 the way ``serf_compare.py`` does (``n0`` first, the
others at once when it is up, each joining through ``n0``), each wrapped by
``formationlib/probe.py`` (no library code is changed), and records per node
when it was launched, imported pydevts, was up, learned of each member (and
from what: ``sync``, ``intro``, SWIM, an incoming link), dialled it (at once,
or through the 3 s safety net), adopted the link, and reported it ``joined``
in its view and to its lifecycle callback. Prints the headline figures, the
start-up phases, the per-pair delay distributions, dials and links, messages,
CPU, the critical path and a chart; writes everything to ``--json``
(default ``formation_results.json`` in the temporary directory).

Memory mode (``--memory``): in one process over ``pydevts.testing.MemoryNetwork``,
a wave of N joins (n0 first, then N-1 at once); counts connects, handshakes
(HELLO frames), router control frames by type, other link frames, SWIM
datagrams by type, and bytes, until every node sees everyone alive and in the
second after; prints how each grows with N and the best fit among N,
N log N, N^2, N^3. See ``formationlib/memory.py``.

Every run is bounded (``--timeout``, default 60 s per run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.driver import machine, version
from formationlib.analysis import Analysis, analyse, fmt_dist
from formationlib.run import run_once

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, action="append", default=[], help="cluster size (repeatable)")
    p.add_argument("--runs", type=int, default=1, help="runs per cluster size (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="bound on one run's formation, s")
    p.add_argument("--settle", type=float, default=1.0, help="wait after formation before collecting, s")
    p.add_argument(
        "--memory", type=str, default="", help="in-memory message counts for these N, e.g. 10,25,50"
    )
    p.add_argument(
        "--memory-relaxed",
        action="store_true",
        help="in-memory waves with probe_interval 5 s, probe_timeout 2.5 s: the protocol's own cost, "
        "without the false suspicions one overloaded process causes",
    )
    p.add_argument("--memory-timeout", type=float, default=120.0, help="bound on one in-memory wave, s")
    p.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "formation_results.json",
        help="where to write every figure and raw record (default: formation_results.json in the temp dir)",
    )
    p.add_argument(
        "--profile", default="", metavar="NODE", help="run NODE (e.g. n12; several: n0,n1) under cProfile"
    )
    p.add_argument(
        "--pycache",
        default="",
        metavar="DIR",
        help="children cache their bytecode in DIR (PYTHONPYCACHEPREFIX; also when PYTHONDONTWRITEBYTECODE "
        "is set, which makes every process compile pydevts from source); warm it with one run first",
    )
    p.add_argument("--brief", action="store_true", help="no per-node table and chart")
    args = p.parse_args()
    if any(n < 2 for n in args.nodes):
        p.error("--nodes must be at least 2")
    return args


def print_analysis(a: Analysis, brief: bool) -> None:
    print(f"\n=== N={a.n}" + ("" if a.ok else f"  INCOMPLETE: {a.error}"))
    if a.missing:
        print(f"  not instrumented (the library changed): {', '.join(a.missing)}")
    for label, value in a.figures.items():
        print(f"  {label:<52} {value:7.3f} s")
    print("  start-up of n1.. (launched together):")
    for label, d in a.phases.items():
        print(f"    {label:<40} {fmt_dist(d)}")
    print("  per (observer, member) pair:")
    for label, d in a.stages.items():
        if "n" in d and isinstance(d.get("n"), int) and "p50" in d:
            print(f"    {label:<30} {fmt_dist(d)}")
        else:
            print(f"    {label:<30} {d}")
    print("  dials and links:")
    for label, value in a.dials.items():
        text = fmt_dist(value) if isinstance(value, dict) else value
        print(f"    {label:<58} {text}")
    print("  messages (summed over nodes; count / bytes / member entries or updates):")
    for group, keys in sorted(a.messages.items()):
        cells = ", ".join(f"{k} {v['count']}/{v['bytes']}/{v['entries']}" for k, v in sorted(keys.items()))
        print(f"    {group:<16} {cells}")
    print("  CPU:")
    for label, value in a.cpu.items():
        print(f"    {label:<56} {value:8.2f}")
    if a.critical:
        print("  critical path (the last callback of the last node to complete, and the reverse pair):")
        for line in a.critical:
            print(f"    {line}")
    if not brief:
        print("  per node (s from n0's launch; counts):")
        for nm, row in a.per_node.items():
            cells = "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            print(f"    {nm:>4} {cells}")
        print("  chart:")
        for line in a.chart:
            print(f"    {line}")


def summarise(results: dict[int, list[Analysis]]) -> None:
    print("\n=== summary (median [min .. max] over runs)")
    for n, analyses in results.items():
        ok = [a for a in analyses if a.figures]
        print(f"  N={n}: {len(ok)}/{len(analyses)} runs complete")
        if not ok:
            continue
        for label in ok[0].figures:
            vals = [a.figures[label] for a in ok]
            print(f"    {label:<52} {statistics.median(vals):6.2f} [{min(vals):.2f} .. {max(vals):.2f}] s")
        for label in ("dials by the 3 s safety net (PeerState.tick)", "reconnect loops"):
            print(f"    {label:<52} {[a.dials.get(label) for a in ok]}")
        cpu = [a.cpu.get("node CPU / (cores x launch..complete)", float("nan")) for a in ok]
        print(f"    {'node CPU / (cores x launch..complete)':<52} {[round(c, 2) for c in cpu]}")
        other = [round(a.cpu["other processes' share of the cores, launch .. dump"], 2) for a in ok]
        print(f"    {'other processes: share of the cores (noise)':<52} {other}")


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    out: dict[str, Any] = {"machine": machine() | {"pydevts_core": version("pydevts-core")}}
    if args.memory:
        from formationlib.memory import print_counts, run_counts

        sizes = [int(x) for x in args.memory.split(",") if x.strip()]
        counts = run_counts(sizes, timeout=args.memory_timeout, relaxed=args.memory_relaxed)
        print_counts(counts)
        out["memory"] = counts
    sizes = args.nodes or ([] if args.memory else [10, 25])
    results: dict[int, list[Analysis]] = {}
    raw: list[dict[str, Any]] = []
    for n in sizes:
        for i in range(args.runs):
            print(f"# N={n} run {i + 1}/{args.runs} ...", flush=True)
            rec = run_once(
                n, timeout=args.timeout, settle=args.settle, profile=args.profile, pycache=args.pycache
            )
            a = analyse(rec)
            for name in filter(None, args.profile.split(",")):
                prof = rec.dumps.get(name, {}).get("milestones", {}).get("profile")
                if prof:
                    print(f"--- cProfile (CPU time) of {name}, from its imports to complete:\n{prof}")
            results.setdefault(n, []).append(a)
            raw.append({"record": rec.to_json(), "analysis": a.to_json()})
            print_analysis(a, args.brief)
    if results:
        summarise(results)
    out["runs"] = raw
    args.json.write_text(json.dumps(out, default=repr))
    print(f"\ntotal {time.monotonic() - started:.0f} s; results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
