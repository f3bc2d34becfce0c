"""The rows of the table and how one test of a row runs: a server process, then a client process.

A throughput test starts the receiver, waits for its ``ready``, starts the
sender, and takes ``msgs/s`` from the receiver (first to last message
received). A round-trip test starts the responder, then the client, and takes
the percentiles from the client. Both processes are always stopped at the end.

Rows run one after the other, except the rows of a group (``pydevts``,
``pydevts, plain links`` and ``pydevts + keyring``): their runs are
interleaved (each round runs every row once, in order, the next round in
reverse), so that all see the same load of a shared machine, and a row that
names a ``reference`` row of its group gets its ratios to that row, run by run
(``paired``): the keyring row to ``pydevts``, and ``pydevts`` (resumable links)
to ``pydevts, plain links``.
"""

from __future__ import annotations

import statistics
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
    keyring: bool = False  # pydevts: both nodes get --keyring (Settings.keyring)
    plain_links: bool = False  # pydevts: both nodes get --plain-links (sessions off: wire.session.ENABLED)
    group: str = ""  # rows of one group run interleaved
    # The row of the same group this row is paired with (ratios: this row / the reference, run by run).
    reference: str = ""


PYDEVTS = "pydevts"
PYDEVTS_PLAIN = "pydevts, plain links"
PYDEVTS_KEYRING = "pydevts + keyring"

ROWS: list[Row] = [
    Row(
        PYDEVTS,
        "pydevts",
        Test("recv", "send"),
        Test("recv", "ping"),
        "send() / request(); resumable links",
        group="pydevts",
        reference=PYDEVTS_PLAIN,
    ),
    Row(
        PYDEVTS_PLAIN,
        "pydevts",
        Test("recv", "send"),
        Test("recv", "ping"),
        "sessions off: no numbering, retransmit buffer or ACKs",
        plain_links=True,
        group="pydevts",
    ),
    Row(
        PYDEVTS_KEYRING,
        "pydevts",
        Test("recv", "send"),
        Test("recv", "ping"),
        "keyring: AES-256-GCM links",
        keyring=True,
        group="pydevts",
        reference=PYDEVTS,
    ),
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
    keyring: str = ""  # keyring file of the keyring rows (the driver writes a temporary one)
    joins: int = 5  # keyring join test: pairs of new processes joining (open, keyring)
    warm_joins: int = 100  # keyring join test: pairs of joins (and of handshakes) in one running process
    python: str = sys.executable


@dataclass
class RowResult:
    name: str
    note: str = ""
    msgs_per_s: float | None = None
    e2e_msgs_per_s: float | None = None  # median over the runs of received / (last received - first sent)
    p50_us: float | None = None
    p99_us: float | None = None
    errors: list[str] = field(default_factory=list)
    skipped: str = ""
    throughput: dict[str, Any] = field(default_factory=dict)
    rtt: dict[str, Any] = field(default_factory=dict)
    paired: dict[str, Any] = field(default_factory=dict)  # against the row's reference row, run by run


def _argv(row: Row, role: str, settings: Settings, extra: list[str]) -> list[str]:
    argv = [settings.python, str(PEERS_SCRIPT), row.kind, role, "--backend", settings.backend]
    argv += ["--n", str(settings.n), "--seconds", str(settings.seconds)]
    argv += ["--count", str(settings.count), "--warmup", str(settings.warmup)]
    argv += ["--deadline", str(settings.deadline)]
    if settings.uvloop:
        argv.append("--uvloop")
    if row.kind == "nats":
        argv += ["--url", settings.nats_url]
    if row.keyring:
        if not settings.keyring:
            raise PeerError(f"{row.name}: no keyring file (Settings.keyring)")
        argv += ["--keyring", settings.keyring]
    if row.plain_links:
        argv.append("--plain-links")
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
    """Both tests of ``row``, ``settings.repeat`` times each; the run with the median result is shown."""
    return run_group([row], settings)[0]


def run_group(rows: list[Row], settings: Settings) -> list[RowResult]:
    """The tests of ``rows``, interleaved: each repetition runs every row once, in order.

    Throughput first (``settings.repeat`` rounds), then round trips. A failing
    run is recorded in its row's ``errors``; the other runs and tests still go
    on. Each row whose ``reference`` row is among ``rows`` gets ``paired``:
    its msgs/s, its rate from first send (``e2e_msgs_per_s``) and its p50
    divided by the reference row's of the same round (``None`` where a run
    failed).
    """
    results = [RowResult(row.name, row.note) for row in rows]
    thr: list[list[dict[str, Any] | None]] = [[] for _ in rows]
    rtt: list[list[dict[str, Any] | None]] = [[] for _ in rows]
    rounds = max(1, settings.repeat)
    for r in range(rounds):
        for i in _order(len(rows), r):
            test = rows[i].throughput
            if test is not None:
                thr[i].append(_attempt(results[i], "throughput", _throughput_run, rows[i], test, settings))
    for r in range(rounds):
        for i in _order(len(rows), r):
            test = rows[i].rtt
            if test is not None:
                rtt[i].append(_attempt(results[i], "rtt", _rtt_run, rows[i], test, settings))
    for i, result in enumerate(results):
        _summarise(
            result, [r for r in thr[i] if r is not None], [r for r in rtt[i] if r is not None], settings
        )
        if len(rows) > 1 and result.e2e_msgs_per_s:
            result.note = _join(result.note, f"from first send {_k(result.e2e_msgs_per_s)}/s")
        ref = next((j for j, row in enumerate(rows) if row.name == rows[i].reference), None)
        if ref is not None and ref != i:
            result.paired = {
                "reference": rows[ref].name,
                "msgs_ratio_runs": _ratios(thr[i], thr[ref], "msgs_per_s"),
                "e2e_ratio_runs": _ratios(thr[i], thr[ref], "e2e_msgs_per_s"),
                "p50_ratio_runs": _ratios(rtt[i], rtt[ref], "p50_us"),
            }
            result.note = _join(result.note, _paired_note(result.paired))
    return results


def _order(count: int, round_: int) -> list[int]:
    """Rows in order on even rounds, in reverse on odd ones (neither always runs first)."""
    order = list(range(count))
    return order if round_ % 2 == 0 else order[::-1]


def _paired_note(paired: dict[str, Any]) -> str:
    """E.g. ``vs pydevts per run: msgs/s x0.61-0.66, p50 x1.05-1.12`` (only with 2+ runs)."""
    parts = []
    for key, label in (
        ("msgs_ratio_runs", "msgs/s"),
        ("e2e_ratio_runs", "from first send"),
        ("p50_ratio_runs", "p50"),
    ):
        values = [v for v in paired.get(key, []) if v is not None]
        if len(values) > 1:
            parts.append(f"{label} x{min(values):.2f}-{max(values):.2f}")
    return f"vs {paired['reference']} per run: {', '.join(parts)}" if parts else ""


def _ratios(
    mine: list[dict[str, Any] | None], ref: list[dict[str, Any] | None], key: str
) -> list[float | None]:
    out: list[float | None] = []
    for a, b in zip(mine, ref, strict=False):
        x = a.get(key) if a else None
        y = b.get(key) if b else None
        out.append(x / y if x and y else None)
    return out


def _summarise(
    result: RowResult, thr: list[dict[str, Any]], rtt: list[dict[str, Any]], settings: Settings
) -> None:
    if thr:
        best = _median(thr, "msgs_per_s")
        result.throughput = {**best, "runs_msgs_per_s": [r["msgs_per_s"] for r in thr]}
        result.msgs_per_s = best["msgs_per_s"] or None
        _throughput_notes(result, best["receiver"], best["sender"], settings.n)
        if len(thr) > 1:
            rates = [r["msgs_per_s"] for r in thr]
            result.note = _join(result.note, f"runs {_k(min(rates))}-{_k(max(rates))}/s")
        for side in ("sender", "receiver"):  # pydevts peers: process CPU µs per event
            if any(r[side].get("cpu_us_per_msg") is not None for r in thr):
                result.throughput[f"runs_{side}_cpu_us"] = [r[side].get("cpu_us_per_msg") for r in thr]
        e2e = [r["e2e_msgs_per_s"] for r in thr if r.get("e2e_msgs_per_s")]
        if e2e:
            result.e2e_msgs_per_s = statistics.median(e2e)
            result.throughput["runs_e2e_msgs_per_s"] = [r.get("e2e_msgs_per_s") for r in thr]
    if rtt:
        best = _median(rtt, "p50_us")
        result.rtt = {**best, "runs_p50_us": [r.get("p50_us") for r in rtt]}
        if any(r.get("client_cpu_us") is not None for r in rtt):
            result.rtt["runs_client_cpu_us"] = [r.get("client_cpu_us") for r in rtt]
        result.p50_us = best.get("p50_us")
        result.p99_us = best.get("p99_us")
        p50s = [r["p50_us"] for r in rtt if r.get("p50_us") is not None]
        if len(p50s) > 1:
            result.note = _join(result.note, f"p50 runs {min(p50s):.0f}-{max(p50s):.0f} µs")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _k(rate: float) -> str:
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"


def _throughput_run(row: Row, test: Test, settings: Settings) -> dict[str, Any]:
    recv, sent = run_pair(row, test, settings, want_server_result=True)
    return {
        "msgs_per_s": recv["msgs_per_s"],
        "e2e_msgs_per_s": _e2e(recv, sent),
        "receiver": recv,
        "sender": sent,
    }


def _e2e(recv: dict[str, Any], sent: dict[str, Any]) -> float | None:
    """Messages received / (last one received - sender's start): one-way throughput from first send.

    ``msgs/s`` starts at the first message *received*; a receiver that gets its
    messages in large batches (a keyring link's records hold up to 1 MiB) starts
    that clock only once the whole first batch is there, and so counts the
    batch's messages without the time they took. This rate has no such bias.
    """
    start, last, received = sent.get("t_start"), recv.get("t_last"), recv.get("received", 0)
    if start is None or last is None or received < 1 or last <= start:
        return None
    rate: float = received / (last - start)
    return rate


def _rtt_run(row: Row, test: Test, settings: Settings) -> dict[str, Any]:
    return run_pair(row, test, settings, want_server_result=False)[1]


def _attempt(
    result: RowResult, label: str, run: Callable[[Row, Test, Settings], dict[str, Any]], *args: Any
) -> dict[str, Any] | None:
    """One run; on failure the error is recorded in ``result`` and None returned."""
    try:
        return run(*args)
    except Exception as exc:  # a failed run is reported, the benchmark goes on
        result.errors.append(f"{label}: {_describe(exc)}")
        return None


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
