"""pydevts membership and failure detection next to HashiCorp Serf, in the same run, on loopback.

``.venv/bin/python bench/serf_compare.py [--quick] [--nodes N] [--also-25]``

For each N, each system runs on its own (never both at once): N node processes
on 127.0.0.1, then (a) launch -> every node sees N alive members, (b) one event
from n0 -> every other node, (c) SIGKILL of a node -> every other node marks it
failed, (d) the same after SIGSTOP (no socket closed), and, on a fresh cluster,
(e) false failure detections during a CPU hog pinned to core 0. Prints one
table per N with the ratios pydevts/Serf and writes ``bench/serf_results.json``.
Installs Serf (Debian package ``serf``) with apt-get if it is missing and this
is root; otherwise the Serf column says why it was skipped. See bench/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.driver import machine, version
from serflib import report
from serflib.clusters import Cluster, PydevtsCluster, SerfCluster
from serflib.install import ensure_serf, serf_version
from serflib.scenario import Settings, SystemResult, run_system

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="smoke run: N=5, 15 s hog, 3 events, 15 s fail timeout"
    )
    p.add_argument("--nodes", type=int, help="cluster size N (default 10; quick 5)")
    p.add_argument("--also-25", action="store_true", help="then run everything again with N=25")
    p.add_argument("--hog-seconds", type=float, help="length of the CPU hog in (e) (default 60; quick 15)")
    p.add_argument("--fail-timeout", type=float, help="bound on (c) and (d), seconds (default 30; quick 15)")
    p.add_argument("--events", type=int, help="events sent one at a time in (b) (default 5; quick 3)")
    p.add_argument("--start-timeout", type=float, default=60.0, help="bound on (a), seconds (default 60)")
    p.add_argument(
        "--hog-grace",
        type=float,
        default=5.0,
        help="(e) also counts failures this long after the hog (default 5)",
    )
    p.add_argument(
        "--only",
        choices=["pydevts", "serf"],
        action="append",
        default=[],
        help="run only this system (repeatable)",
    )
    p.add_argument("--json", type=Path, default=HERE / "serf_results.json", help="where to write the results")
    args = p.parse_args()
    if args.nodes is not None and args.nodes < 3:
        p.error("--nodes must be at least 3 (one node is killed in (c) and one stopped in (d))")
    return args


def make_settings(args: argparse.Namespace, nodes: int) -> Settings:
    quick = args.quick
    return Settings(
        nodes=nodes,
        events=args.events or (3 if quick else 5),
        event_timeout=10.0,
        fail_timeout=args.fail_timeout or (15.0 if quick else 30.0),
        start_timeout=args.start_timeout,
        hog_seconds=args.hog_seconds or (15.0 if quick else 60.0),
        hog_grace=args.hog_grace,
    )


def debian_version(package: str) -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() if done.returncode == 0 else "?"


def machine_info(serf_path: str | None, serf_reason: str) -> dict[str, Any]:
    return machine() | {
        "pydevts_core": version("pydevts-core"),
        "serf": serf_path,
        "serf_version": serf_version(serf_path) if serf_path else None,
        "serf_debian_package": debian_version("serf") if serf_path else None,
        "serf_skipped": serf_reason,
    }


def run_n(
    settings: Settings, systems: list[str], serf_path: str | None, serf_reason: str
) -> dict[str, SystemResult]:
    results: dict[str, SystemResult] = {}
    if "pydevts" in systems:

        def make_pydevts() -> Cluster:
            return PydevtsCluster(settings.nodes, sys.executable)

        results["pydevts"] = run_system(make_pydevts, settings, "pydevts")
    if "serf" in systems:
        if serf_path is None:
            print(f"# skipping Serf: {serf_reason}", flush=True)
            results["serf"] = SystemResult("Serf", settings.nodes, skipped=serf_reason)
        else:
            path = serf_path

            def make_serf() -> Cluster:
                return SerfCluster(settings.nodes, path)

            results["serf"] = run_system(make_serf, settings, "Serf")
    return results


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    systems = args.only or ["pydevts", "serf"]
    serf_path, serf_reason = ensure_serf() if "serf" in systems else (None, "not selected (--only)")
    if serf_path is None and "serf" in systems:
        print(f"# Serf unavailable, its rows are skipped: {serf_reason}", flush=True)
    machine = machine_info(serf_path, serf_reason)
    sizes = [args.nodes or (5 if args.quick else 10)]
    if args.also_25 and 25 not in sizes:
        sizes.append(25)
    runs: list[dict[str, SystemResult]] = []
    tables: list[str] = []
    for n in sizes:
        settings = make_settings(args, n)
        results = run_n(settings, systems, serf_path, serf_reason)
        runs.append(results)
        serf_desc = (
            f"Serf {machine['serf_version']} (Debian {machine['serf_debian_package']}, LAN profile)"
            if serf_path
            else f"Serf skipped: {serf_reason}"
        )
        text = [
            "",
            f"pydevts {machine['pydevts_core']} vs {serf_desc}",
            f"N={n} nodes on 127.0.0.1, {machine['cores']} cores ({machine['usable_cores']} usable), "
            f"Python {machine['python']}; (b): median of {settings.events} events; "
            f"(c)/(d) bounded by {settings.fail_timeout:g} s",
            report.table(results.get("pydevts"), results.get("serf"), settings),
        ]
        note_lines = [line for r in results.values() for line in report.notes(r)]
        if note_lines:
            text.append("notes:")
            text += [f"  {line}" for line in note_lines]
        tables.append("\n".join(text))
        print(tables[-1], flush=True)
    total = time.monotonic() - started
    report.write_json(args.json, machine, make_settings(args, sizes[0]), runs, total)
    if len(tables) > 1:
        print("\n".join(["", "# all tables again:", *tables]))
    print(f"\ntotal {total:.0f} s; results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
