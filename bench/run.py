"""Benchmark driver: ``make bench``, or ``.venv/bin/python bench/run.py [--quick] [--backend trio]``.

Runs every row (see ``bench/README.md``) as pairs of separate processes on
loopback, prints one table and writes ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import natsd, report
from benchlib.driver import add_load_options, load_settings, machine
from benchlib.procs import PeerError
from benchlib.rows import ROWS, Row, RowResult, Settings, run_row

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="anyio backend")
    p.add_argument("--uvloop", action="store_true", help="asyncio rows on uvloop")
    p.add_argument("--quick", action="store_true", help="smoke run: small N and few round trips")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run the rows whose name contains NAME (case-insensitive; repeatable)")  # fmt: skip
    add_load_options(p)
    p.add_argument("--profile", action="store_true",
                   help="also profile the pydevts throughput test (cProfile, top 25 by tottime)")  # fmt: skip
    p.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    return p.parse_args()


def make_settings(args: argparse.Namespace) -> Settings:
    return Settings(backend=args.backend, uvloop=args.uvloop, **load_settings(args))


def selected_rows(only: list[str]) -> list[Row]:
    if not only:
        return list(ROWS)
    wanted = [w.lower() for w in only]
    rows = [r for r in ROWS if any(w in r.name.lower() for w in wanted)]
    if not rows:
        sys.exit(f"--only {only}: no such row; rows are: {', '.join(r.name for r in ROWS)}")
    return rows


def machine_info(settings: Settings, nats_version: str) -> dict[str, Any]:
    return machine(("pydevts-core", "anyio", "trio", "pyzmq", "nats-py", "uvloop")) | {
        "backend": settings.backend + (" + uvloop" if settings.uvloop else ""),
        "nats_server": nats_version,
    }


def run_rows(rows: list[Row], settings: Settings) -> list[RowResult]:
    results: list[RowResult] = []
    nats_rows = [r for r in rows if r.kind == "nats"]
    other_rows = [r for r in rows if r.kind != "nats"]
    for row in other_rows:
        results.append(_run_one(row, settings))
    if nats_rows:
        results += _run_nats_rows(nats_rows, settings)
    order = {r.name: i for i, r in enumerate(ROWS)}
    return sorted(results, key=lambda r: order[r.name])


def _run_one(row: Row, settings: Settings) -> RowResult:
    print(f"# running {row.name} ...", flush=True)
    started = time.monotonic()
    result = run_row(row, settings)
    status = "ok" if not result.errors else "FAILED: " + "; ".join(result.errors)
    print(f"#   {row.name}: {time.monotonic() - started:.1f} s, {status}", flush=True)
    return result


def _run_nats_rows(rows: list[Row], settings: Settings) -> list[RowResult]:
    path, reason = natsd.ensure_nats_server()
    if path is None:
        print(f"# skipping nats rows: {reason}", flush=True)
        return [RowResult(r.name, r.note, skipped=reason) for r in rows]
    try:
        with natsd.nats_server(path) as url:
            settings.nats_url = url
            return [_run_one(row, settings) for row in rows]
    except PeerError as exc:
        print(f"# nats rows failed: {exc}", flush=True)
        return [RowResult(r.name, r.note, errors=[str(exc)]) for r in rows]


def main() -> int:
    args = parse_args()
    settings = make_settings(args)
    rows = selected_rows(args.only)
    started = time.monotonic()
    results = run_rows(rows, settings)
    nats_path = shutil.which("nats-server")
    machine = machine_info(settings, natsd.server_version(nats_path) if nats_path else "not installed")
    print()
    print(
        f"pydevts benchmark: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"backend {machine['backend']}, Python {machine['python']}"
    )
    print(
        f"100-byte payloads, two processes on loopback; throughput: N={settings.n:,} "
        f"(a sender stops after {settings.seconds:g} s); RTT: {settings.count:,} sequential round trips "
        f"after {settings.warmup:,} warm-up; median of {settings.repeat} run(s) per test"
    )
    print(report.table(results))
    print(
        "ratios: pydevts/row msgs/s > 1 means pydevts is faster; pydevts/row p50 > 1 means pydevts is slower."
    )
    for line in report.goals(results):
        print(line)
    report.write_json(args.json, machine, asdict(settings), results)
    print(f"total {time.monotonic() - started:.0f} s; results written to {args.json}")
    if args.profile:
        from benchlib.profiling import profile_pydevts

        print()
        try:
            print(profile_pydevts(settings))
        except Exception as exc:  # the table is already out; say why the profile is missing
            print(f"profiling failed: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
