"""The QUIC transport next to raw aioquic and to TCP: ``.venv/bin/python bench/quic_compare.py [--quick]``.

Runs every test as separate processes on loopback (127.0.0.1), prints one
table and writes ``bench/quic_results.json``; see the section "QUIC transport"
of ``bench/README.md``. ``quic_compare.py peer KIND ROLE ...`` is one side of a
test (started by the driver; see ``benchlib/quic_peers.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.driver import add_load_options, load_settings, machine

HERE = Path(__file__).resolve().parent
TESTS = ("raw", "throughput", "rtt", "connect", "join", "memory")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio",
                   help="anyio backend of the pydevts processes (raw aioquic is always asyncio)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="smoke run (well under a minute)")
    p.add_argument("--only", action="append", default=[], choices=TESTS,
                   help="run only these tests (repeatable)")  # fmt: skip
    add_load_options(p)
    p.add_argument("--connects", type=int, help="timed cold connects per transport (default 50; quick 20)")
    p.add_argument("--joins", type=int, help="joining processes per transport and kind (default 5; quick 1)")
    p.add_argument(
        "--mem-seconds", type=float, help="how long the slow-receiver flood lasts (default 10; quick 3)"
    )
    p.add_argument("--json", type=Path, default=HERE / "quic_results.json", help="where to write the results")
    return p.parse_args()


def make_settings(args: argparse.Namespace) -> Any:
    from benchlib.quic_rows import QSettings

    quick = args.quick
    return QSettings(
        backend=args.backend,
        connects=args.connects or (20 if quick else 50),
        connect_warmup=2 if quick else 5,
        joins=args.joins or (1 if quick else 5),
        mem_seconds=args.mem_seconds or (3.0 if quick else 10.0),
        **load_settings(args),
    )


def machine_info(backend: str) -> dict[str, Any]:
    dists = ("pydevts-core", "pydevts-quic", "pydevts-tcp", "aioquic", "cryptography", "anyio", "trio")
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return machine(dists) | {"load_average": load, "backend": backend}


def run_tests(settings: Any, only: list[str]) -> dict[str, Any]:
    from benchlib import quic_rows as q

    s = settings
    plan: list[tuple[str, str, Any]] = [
        ("raw", "raw_1", lambda: q.raw_aioquic(s, 0, s.n)),
        ("raw", "raw_64k", lambda: q.raw_aioquic(s, 65536, 2 * s.n)),
        ("throughput", "thr_quic", lambda: q.pydevts_throughput(s, "quic")),
        ("throughput", "thr_tcp", lambda: q.pydevts_throughput(s, "tcp")),
        ("rtt", "rtt_quic", lambda: q.pydevts_rtt(s, "quic")),
        ("rtt", "rtt_tcp", lambda: q.pydevts_rtt(s, "tcp")),
        ("connect", "conn_quic", lambda: q.cold_connects(s, "quic")),
        ("connect", "conn_tcp", lambda: q.cold_connects(s, "tcp")),
        ("join", "join_quic", lambda: q.joins(s, "quic")),
        ("join", "join_tcp", lambda: q.joins(s, "tcp")),
        ("memory", "mem_quic", lambda: q.slow_receiver(s, "quic")),
        ("memory", "mem_tcp", lambda: q.slow_receiver(s, "tcp")),
    ]
    results: dict[str, Any] = {}
    for test, key, run in plan:
        if only and test not in only:
            continue
        print(f"# running {key} ...", flush=True)
        started = time.monotonic()
        result = run()
        status = "ok" if not result.errors else "FAILED: " + "; ".join(result.errors)
        print(f"#   {key}: {time.monotonic() - started:.1f} s, {status}", flush=True)
        results[key] = result
    return results


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    from benchlib import quic_report

    settings = make_settings(args)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _terminated)  # unwind, so that every child is stopped
    try:
        results = run_tests(settings, args.only)
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped; no results written", flush=True)
        return 130
    machine = machine_info(settings.backend)
    machine["load_average_before"] = load_before
    v = machine["versions"]
    load = machine["load_average"]
    print()
    print(
        f"QUIC transport benchmark: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"backend {settings.backend}, Python {machine['python']}, aioquic {v['aioquic']}"
        + (
            f"; load average before {load_before:.2f}, after {load[0]:.2f}"
            if load and load_before is not None
            else ""
        )
    )
    print(
        f"two processes on loopback, 100-byte payloads; throughput N={settings.n:,} (a sender stops after "
        f"{settings.seconds:g} s), RTT {settings.count:,} round trips after {settings.warmup:,} warm-up; "
        f"median of {settings.repeat} run(s)"
    )
    print(quic_report.table(results, asdict(settings)))
    for line in quic_report.goals(results):
        print(line)
    quic_report.write_json(args.json, machine, asdict(settings), results)
    print(f"total {time.monotonic() - started:.0f} s; results written to {args.json}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        from benchlib.quic_peers import main as peer_main

        sys.exit(peer_main(sys.argv[2:]))
    sys.exit(main())
