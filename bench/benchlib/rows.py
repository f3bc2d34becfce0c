"""The rows of the table and how one test of a row runs: a server process, then a client process.

A throughput test starts the receiver, waits for its ``ready``, starts the
sender, and takes ``msgs/s`` from the receiver (first to last message
received). A round-trip test starts the responder, then the client, and takes
the percentiles from the client. Both processes are always stopped at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import PeerError, free_port, spawn

PEERS_SCRIPT = Path(__file__).resolve().parent.parent / "peers.py"
READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0  # profiled runs: time for a peer to leave and write its stats


@dataclass(frozen=True)
class Test:
    server: str  # role started first (receiver / responder)
    client: str  # role started once the server is ready (sender / requester)
    extra: tuple[str, ...] = ()
    n_factor: int = 1  # the sender sends n_factor * N (for rows so fast that N alone takes milliseconds)


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # peer module: raw, pydevts, zmq, zmq_asyncio, nats
    throughput: Test | None
    rtt: Test | None
    note: str = ""


ROWS: list[Row] = [
    Row("pydevts", "pydevts", Test("recv", "send"), Test("recv", "ping"), "send() / request()"),
    Row("raw anyio (1 send/frame)", "raw", Test("recv", "send"), Test("echo", "ping"), "RTT: ping-pong"),
    Row("raw anyio (64 KiB batches)", "raw", Test("recv", "send", ("--batch", "65536"), n_factor=10), None),
    Row("pyzmq PUSH/PULL", "zmq", Test("pull", "push"), None, "blocking pyzmq"),
    Row("pyzmq REQ/REP", "zmq", None, Test("rep", "req"), "blocking pyzmq"),
    Row("pyzmq asyncio PUSH/PULL", "zmq_asyncio", Test("pull", "push"), None, "asyncio; zmq.asyncio"),
    Row("pyzmq asyncio REQ/REP", "zmq_asyncio", None, Test("rep", "req"), "asyncio; zmq.asyncio"),
    Row("nats-py pub/sub", "nats", Test("sub", "pub"), None, "asyncio; nats-server"),
    Row("nats-py request/reply", "nats", None, Test("reply", "request"), "asyncio; nats-server"),
]


@dataclass
class Settings:
    backend: str = "asyncio"
    uvloop: bool = False
    n: int = 200_000
    seconds: float = 10.0
    count: int = 2000
    warmup: int = 200
    repeat: int = 3  # runs of each test; the median is shown
    deadline: float = 40.0  # per process
    nats_url: str = ""
    python: str = sys.executable


@dataclass
class RowResult:
    name: str
    note: str = ""
    msgs_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: list[str] = field(default_factory=list)
    skipped: str = ""
    throughput: dict[str, Any] = field(default_factory=dict)
    rtt: dict[str, Any] = field(default_factory=dict)


def _argv(row: Row, role: str, settings: Settings, extra: list[str]) -> list[str]:
    argv = [settings.python, str(PEERS_SCRIPT), row.kind, role, "--backend", settings.backend]
    argv += ["--n", str(settings.n), "--seconds", str(settings.seconds)]
    argv += ["--count", str(settings.count), "--warmup", str(settings.warmup)]
    argv += ["--deadline", str(settings.deadline)]
    if settings.uvloop:
        argv.append("--uvloop")
    if row.kind == "nats":
        argv += ["--url", settings.nats_url]
    return argv + extra


def run_pair(
    row: Row, test: Test, settings: Settings, *, want_server_result: bool, profile_dir: Path | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one server/client pair; return (server result or {}, client result)."""
    server_extra = list(test.extra)
    client_extra = [*test.extra, "--n", str(settings.n * test.n_factor)]
    cluster_port = free_port() if row.kind == "pydevts" else 0
    if cluster_port:
        server_extra += ["--port", str(cluster_port)]  # the receiver owns the new cluster
    if profile_dir is not None:
        server_extra += ["--profile", str(profile_dir / f"{test.server}.prof")]
        client_extra += ["--profile", str(profile_dir / f"{test.client}.prof")]
    with ExitStack() as stack:
        server = stack.enter_context(
            spawn(f"{row.kind} {test.server}", _argv(row, test.server, settings, server_extra))
        )
        info = server.message("ready", READY_TIMEOUT)
        if row.kind == "pydevts":
            client_extra += [
                "--port",
                server_extra[server_extra.index("--port") + 1],
                "--peer-id",
                info["id"],
            ]
        elif "port" in info:
            client_extra += ["--port", str(info["port"])]
        client = stack.enter_context(
            spawn(f"{row.kind} {test.client}", _argv(row, test.client, settings, client_extra))
        )
        client_result = client.message("result", settings.deadline + READY_TIMEOUT)
        server_result = server.message("result", settings.deadline) if want_server_result else {}
        if profile_dir is not None:
            for peer in (client, server):
                if peer.wait_exit(EXIT_TIMEOUT) is None:
                    raise PeerError(f"{peer.name} did not exit to write its profile")
    return server_result, client_result


def run_row(row: Row, settings: Settings) -> RowResult:
    """Both tests of ``row``, ``settings.repeat`` times each; the run with the median result is shown.

    A failing run is recorded in ``errors``; the other runs and the other test still go on.
    """
    result = RowResult(row.name, row.note)
    thr_test, rtt_test = row.throughput, row.rtt
    if thr_test is not None:
        runs = _repeat(
            result, "throughput", settings.repeat, lambda: _throughput_run(row, thr_test, settings)
        )
        if runs:
            best = _median(runs, "msgs_per_s")
            result.throughput = {**best, "runs_msgs_per_s": [r["msgs_per_s"] for r in runs]}
            result.msgs_per_s = best["msgs_per_s"] or None
            _throughput_notes(result, best["receiver"], best["sender"], settings.n)
            if len(runs) > 1:
                rates = [r["msgs_per_s"] for r in runs]
                result.note = _join(result.note, f"runs {_k(min(rates))}-{_k(max(rates))}/s")
    if rtt_test is not None:
        runs = _repeat(
            result,
            "rtt",
            settings.repeat,
            lambda: run_pair(row, rtt_test, settings, want_server_result=False)[1],
        )
        if runs:
            best = _median(runs, "p50_us")
            result.rtt = {**best, "runs_p50_us": [r.get("p50_us") for r in runs]}
            result.p50_us = best.get("p50_us")
            result.p99_us = best.get("p99_us")
            p50s = [r["p50_us"] for r in runs if r.get("p50_us") is not None]
            if len(p50s) > 1:
                result.note = _join(result.note, f"p50 runs {min(p50s):.0f}-{max(p50s):.0f} µs")
    return result


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _k(rate: float) -> str:
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"


def _throughput_run(row: Row, test: Test, settings: Settings) -> dict[str, Any]:
    recv, sent = run_pair(row, test, settings, want_server_result=True)
    return {"msgs_per_s": recv["msgs_per_s"], "receiver": recv, "sender": sent}


def _repeat(
    result: RowResult, label: str, times: int, run: Callable[[], dict[str, Any]]
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for _ in range(max(1, times)):
        try:
            runs.append(run())
        except Exception as exc:  # a failed run is reported, the benchmark goes on
            result.errors.append(f"{label}: {_describe(exc)}")
    return runs


def _median(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.get(key) or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def _throughput_notes(result: RowResult, recv: dict[str, Any], sent: dict[str, Any], settings_n: int) -> None:
    notes = [result.note] if result.note else []
    if sent.get("target") != settings_n:
        notes.append(f"N={sent.get('target'):,}")
    if sent.get("time_limited"):
        notes.append(f"time-limited: {sent['sent']} sent")
    if recv.get("received", 0) < sent.get("sent", 0):
        notes.append(f"lost {sent['sent'] - recv['received']}")
    if not recv.get("ended", True):
        notes.append("receiver timed out")
    result.note = "; ".join(notes)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 600 else text[:600] + "..."
