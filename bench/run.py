"""Benchmark driver: ``make bench``, or ``.venv/bin/python bench/run.py [--quick] [--backend trio]``.

Runs every row (see ``bench/README.md``) as pairs of separate processes on
loopback, prints one table and writes ``bench/results.json``. The ``pydevts``,
``pydevts, plain links`` (sessions off) and ``pydevts + keyring`` rows run
interleaved (a temporary keyring file is written for the run), followed by the
keyring join test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import natsd, report
from benchlib.driver import add_load_options, load_settings, machine
from benchlib.keyring_join import NAME as JOIN_TEST
from benchlib.keyring_join import JoinResult, run_join_test
from benchlib.procs import PeerError
from benchlib.rows import ROWS, Row, RowResult, Settings, run_group

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="anyio backend")
    p.add_argument("--uvloop", action="store_true", help="asyncio rows on uvloop")
    p.add_argument("--quick", action="store_true", help="smoke run: small N and few round trips")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run the rows whose name contains NAME (case-insensitive; repeatable)")  # fmt: skip
    add_load_options(p)
    p.add_argument("--joins", type=int,
                   help="keyring join test: pairs of new processes joining (default 5; quick 2)")  # fmt: skip
    p.add_argument("--warm-joins", type=int,
                   help="keyring join test: pairs of joins and of handshakes in one process "
                        "(default 100; quick 30; 0: none)")  # fmt: skip
    p.add_argument("--profile", action="store_true",
                   help="also profile the selected pydevts rows' tests (resumable links, plain links, "
                        "keyring; cProfile, top 25 by tottime)")  # fmt: skip
    p.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    return p.parse_args()


def make_settings(args: argparse.Namespace) -> Settings:
    return Settings(
        backend=args.backend,
        uvloop=args.uvloop,
        joins=args.joins if args.joins is not None else (2 if args.quick else 5),
        warm_joins=args.warm_joins if args.warm_joins is not None else (30 if args.quick else 100),
        **load_settings(args),
    )


def selected(only: list[str]) -> tuple[list[Row], bool]:
    """The rows to run, and whether to run the keyring join test.

    A row of a group brings the group's first row (``pydevts``) and its
    ``reference`` row: the keyring row is compared with the open ``pydevts``
    row of the same run, and ``pydevts`` (resumable links) with ``pydevts,
    plain links``; so ``--only plain`` runs just that pair.
    """
    if not only:
        return list(ROWS), True
    wanted = [w.lower() for w in only]
    names = {r.name for r in ROWS if any(w in r.name.lower() for w in wanted)}
    join = any(w in JOIN_TEST.lower() for w in wanted)
    if not names and not join:
        sys.exit(f"--only {only}: no such row; rows are: {', '.join(r.name for r in ROWS)}, {JOIN_TEST}")
    for row in [r for r in ROWS if r.name in names and r.group]:
        names.add(next(r.name for r in ROWS if r.group == row.group))
        if row.reference:
            names.add(row.reference)
    return [r for r in ROWS if r.name in names], join


@contextmanager
def temporary_keyring() -> Iterator[str]:
    """A keyring file with one new key, removed at the end."""
    from pydevts.wire.keyring import generate_key

    with tempfile.TemporaryDirectory(prefix="pydevts-bench-keyring-") as tmp:
        path = Path(tmp) / "keyring"
        path.touch(mode=0o600)
        path.write_text(generate_key() + "\n")
        yield str(path)


def machine_info(settings: Settings, nats_version: str) -> dict[str, Any]:
    return machine(("pydevts-core", "anyio", "trio", "pyzmq", "nats-py", "uvloop")) | {
        "backend": settings.backend + (" + uvloop" if settings.uvloop else ""),
        "nats_server": nats_version,
    }


def run_rows(rows: list[Row], settings: Settings) -> list[RowResult]:
    results: list[RowResult] = []
    nats_rows = [r for r in rows if r.kind == "nats"]
    other_rows = [r for r in rows if r.kind != "nats"]
    done: set[str] = set()
    for row in other_rows:
        if row.name in done:
            continue
        group = [r for r in other_rows if r.group == row.group] if row.group else [row]
        results += _run_group(group, settings)
        done.update(r.name for r in group)
    if nats_rows:
        results += _run_nats_rows(nats_rows, settings)
    order = {r.name: i for i, r in enumerate(ROWS)}
    return sorted(results, key=lambda r: order[r.name])


def _run_one(row: Row, settings: Settings) -> RowResult:
    return _run_group([row], settings)[0]


def _run_group(rows: list[Row], settings: Settings) -> list[RowResult]:
    names = ", ".join(r.name for r in rows)
    print(f"# running {names}{' (interleaved)' if len(rows) > 1 else ''} ...", flush=True)
    started = time.monotonic()
    results = run_group(rows, settings)
    for result in results:
        status = "ok" if not result.errors else "FAILED: " + "; ".join(result.errors)
        print(f"#   {result.name}: {status}", flush=True)
    print(f"#   {time.monotonic() - started:.1f} s", flush=True)
    return results


def _run_join_test(settings: Settings) -> JoinResult:
    print(f"# running {JOIN_TEST} ...", flush=True)
    started = time.monotonic()
    result = run_join_test(settings)
    status = "ok" if not result.errors else "FAILED: " + "; ".join(result.errors)
    print(f"#   {JOIN_TEST}: {time.monotonic() - started:.1f} s, {status}", flush=True)
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
    rows, with_join = selected(args.only)
    with temporary_keyring() as keyring:
        settings.keyring = keyring
        return _main(args, settings, rows, with_join)


def _main(args: argparse.Namespace, settings: Settings, rows: list[Row], with_join: bool) -> int:
    started = time.monotonic()
    results = run_rows(rows, settings)
    join = _run_join_test(settings) if with_join else None
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
    if results:
        print(report.table(results))
        print(
            "ratios: pydevts/row msgs/s > 1 means pydevts is faster; "
            "pydevts/row p50 > 1 means pydevts is slower."
        )
    if join is not None:
        print()
        print(report.join_table(join))
        print()
    for line in report.goals(results):
        print(line)
    if join is not None:
        print(report.join_goal(join))
    report.write_json(args.json, machine, asdict(settings), results, join)
    print(f"total {time.monotonic() - started:.0f} s; results written to {args.json}")
    profiled = [r.name for r in rows if r.kind == "pydevts"]
    if args.profile and profiled:
        from benchlib.profiling import profile_pydevts

        print()
        try:
            print(profile_pydevts(settings, profiled))
        except Exception as exc:  # the table is already out; say why the profile is missing
            print(f"profiling failed: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
