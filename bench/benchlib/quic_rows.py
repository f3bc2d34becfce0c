"""The tests of ``bench/quic_compare.py``, each run as separate processes on loopback.

Every child is started with :func:`benchlib.procs.spawn`, so it is stopped
(terminated, then killed) when its block ends, whatever happened; every wait
for a child's line has a deadline, and each child has its own ``--deadline``.
"""

from __future__ import annotations

import socket
import statistics
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import Peer, PeerError, spawn

DRIVER = Path(__file__).resolve().parent.parent / "quic_compare.py"
READY_TIMEOUT = 20.0
PORT_TRIES = 50


@dataclass
class QSettings:
    backend: str = "asyncio"
    n: int = 200_000  # messages / events per throughput test
    seconds: float = 10.0  # a sender stops after this long
    count: int = 2000  # timed round trips
    warmup: int = 200
    repeat: int = 3  # throughput and RTT tests: runs, the median is shown
    connects: int = 50
    connect_warmup: int = 5
    joins: int = 5  # new node processes per transport and kind of join
    mem_seconds: float = 10.0
    mem_payload: int = 16384
    mem_handler_sleep: float = 0.002
    mem_max_bytes: int = 200_000_000
    deadline: float = 40.0  # per process
    python: str = sys.executable


@dataclass
class TestResult:
    """One measurement: the chosen run, every run, and errors."""

    name: str
    value: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (a node uses both on one number)."""
    for _ in range(PORT_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise PeerError("no port free for both TCP and UDP")


def udp_drops() -> int | None:
    """UDP datagrams the kernel dropped for want of socket buffer space, machine-wide (Linux)."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [line.split() for line in f if line.startswith("Udp:")]
        fields = dict(zip(lines[0][1:], lines[1][1:], strict=True))
        return int(fields.get("RcvbufErrors", 0)) + int(fields.get("SndbufErrors", 0))
    except (OSError, IndexError, ValueError):
        return None


def _argv(s: QSettings, kind: str, role: str, *extra: str, deadline: float | None = None) -> list[str]:
    return [
        s.python,
        str(DRIVER),
        "peer",
        kind,
        role,
        "--backend",
        s.backend,
        "--deadline",
        f"{deadline or s.deadline:g}",
        *extra,
    ]


def _spawn(stack: ExitStack, name: str, argv: list[str]) -> Peer:
    return stack.enter_context(spawn(name, argv))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 600 else text[:600] + "..."


def _repeat(result: TestResult, times: int, run: Callable[[], dict[str, Any]]) -> None:
    for _ in range(max(1, times)):
        before = udp_drops()
        try:
            got = run()
        except Exception as exc:  # one failed run is reported; the others still count
            result.errors.append(_describe(exc))
            continue
        after = udp_drops()
        if before is not None and after is not None:
            got["udp_drops"] = after - before
        result.runs.append(got)


def _pick_median(result: TestResult, key: str) -> TestResult:
    ok = [r for r in result.runs if r.get(key)]
    if ok:
        ordered = sorted(ok, key=lambda r: r[key])
        result.value = ordered[(len(ordered) - 1) // 2]
    return result


# ---------------------------------------------------------------------- 1. raw aioquic


def raw_aioquic(s: QSettings, batch: int, n: int) -> TestResult:
    """Raw aioquic one-way: messages/s at the receiver (aioquic's asyncio API: always asyncio)."""
    name = "aioquic 64 KiB writes" if batch else "aioquic 1 write/message"
    result = TestResult(name)

    def run() -> dict[str, Any]:
        with ExitStack() as stack:
            recv = _spawn(stack, "aioquic recv", _argv(s, "aioquic", "recv"))
            port = recv.message("ready", READY_TIMEOUT)["port"]
            extra = ["--port", str(port), "--n", str(n), "--seconds", f"{s.seconds:g}", "--batch", str(batch)]
            send = _spawn(stack, "aioquic send", _argv(s, "aioquic", "send", *extra))
            sent = send.message("result", s.deadline + READY_TIMEOUT)
            got = recv.message("result", s.deadline)
        return {"msgs_per_s": got["msgs_per_s"], "mb_per_s": got["msgs_per_s"] * 100 / 1e6,
                "receiver": got, "sender": sent}  # fmt: skip

    _repeat(result, s.repeat, run)
    return _pick_median(result, "msgs_per_s")


# ---------------------------------------------------------------------- 2. pydevts node -> node


def _pydevts_pair(s: QSettings, transport: str, client_role: str) -> tuple[dict[str, Any], dict[str, Any]]:
    port = free_port()
    common = ["--transport", transport, "--port", str(port)]
    with ExitStack() as stack:
        recv = _spawn(stack, f"pydevts/{transport} recv", _argv(s, "pydevts", "recv", *common))
        peer_id = recv.message("ready", READY_TIMEOUT)["id"]
        extra = [*common, "--peer-id", peer_id, "--n", str(s.n), "--seconds", f"{s.seconds:g}"]
        extra += ["--count", str(s.count), "--warmup", str(s.warmup)]
        client = _spawn(stack, f"pydevts/{transport} {client_role}", _argv(s, "pydevts", client_role, *extra))
        client_result = client.message("result", s.deadline + READY_TIMEOUT)
        # ``send`` ends with an ``end`` event the receiver reports on; ``ping`` needs no receiver result.
        server_result = recv.message("result", s.deadline) if client_role == "send" else {}
    return server_result, client_result


def pydevts_throughput(s: QSettings, transport: str) -> TestResult:
    result = TestResult(f"pydevts {transport} send")

    def run() -> dict[str, Any]:
        got, sent = _pydevts_pair(s, transport, "send")
        return {"msgs_per_s": got["msgs_per_s"], "receiver": got, "sender": sent}

    _repeat(result, s.repeat, run)
    return _pick_median(result, "msgs_per_s")


def pydevts_rtt(s: QSettings, transport: str) -> TestResult:
    result = TestResult(f"pydevts {transport} request")
    _repeat(result, s.repeat, lambda: _pydevts_pair(s, transport, "ping")[1])
    return _pick_median(result, "p50_us")


# ---------------------------------------------------------------------- 3. connects and joins


def cold_connects(s: QSettings, transport: str) -> TestResult:
    """``connects`` sequential ``transport.connect()`` calls, a new transport object each time."""
    result = TestResult(f"{transport} connect")

    def run() -> dict[str, Any]:
        with ExitStack() as stack:
            listen = _spawn(
                stack, f"{transport} listen", _argv(s, "connect", "listen", "--transport", transport)
            )
            port = listen.message("ready", READY_TIMEOUT)["port"]
            extra = ["--transport", transport, "--port", str(port)]
            extra += ["--count", str(s.connects), "--warmup", str(s.connect_warmup)]
            dial = _spawn(stack, f"{transport} dial", _argv(s, "connect", "dial", *extra))
            return dial.message("result", s.deadline + READY_TIMEOUT)

    _repeat(result, 1, run)
    return _pick_median(result, "p50_ms")


def joins(s: QSettings, transport: str) -> TestResult:
    """New node processes joining a 1-node cluster, one after the other.

    Half of them build the plugin registry before the timer starts, to show how
    much of a join is plugin discovery (the same for every transport).
    """
    result = TestResult(f"{transport} join")
    port = free_port()
    samples: dict[str, list[float]] = {"join_ms": [], "prebuilt_join_ms": [], "registry_ms": []}
    try:
        with ExitStack() as stack:
            recv = _spawn(
                stack,
                f"pydevts/{transport} cluster",
                _argv(s, "pydevts", "recv", "--transport", transport, "--port", str(port)),
            )
            peer_id = recv.message("ready", READY_TIMEOUT)["id"]
            for i in range(2 * s.joins):
                prebuilt = i % 2 == 1
                extra = ["--transport", transport, "--port", str(port), "--peer-id", peer_id]
                if prebuilt:
                    extra.append("--prebuilt-registry")
                with spawn(f"{transport} join #{i}", _argv(s, "join", "join", *extra)) as joiner:
                    got = joiner.message("result", s.deadline)
                    joiner.wait_exit(READY_TIMEOUT)  # it leaves; the next one joins a 1-node cluster again
                if prebuilt:
                    samples["prebuilt_join_ms"].append(got["join_ms"])
                    samples["registry_ms"].append(got["registry_ms"])
                else:
                    samples["join_ms"].append(got["join_ms"])
                result.runs.append(got)
    except Exception as exc:
        result.errors.append(_describe(exc))
    result.value = {k: statistics.median(v) for k, v in samples.items() if v}
    result.value["joins"] = len(samples["join_ms"])
    return result


# ---------------------------------------------------------------------- 4. slow receiver


def slow_receiver(s: QSettings, transport: str) -> TestResult:
    """A sender node floods a node whose handler sleeps; peak RSS growth of both."""
    result = TestResult(f"{transport} slow receiver")
    port = free_port()
    deadline = s.mem_seconds + s.deadline
    common = ["--transport", transport, "--port", str(port)]

    def run() -> dict[str, Any]:
        with ExitStack() as stack:
            recv = _spawn(
                stack,
                f"mem/{transport} recv",
                _argv(s, "mem", "recv", *common, "--handler-sleep", f"{s.mem_handler_sleep:g}",
                      deadline=deadline),
            )  # fmt: skip
            peer_id = recv.message("ready", READY_TIMEOUT)["id"]
            extra = [*common, "--peer-id", peer_id, "--seconds", f"{s.mem_seconds:g}"]
            extra += ["--payload-size", str(s.mem_payload), "--max-bytes", str(s.mem_max_bytes)]
            send = _spawn(stack, f"mem/{transport} send", _argv(s, "mem", "send", *extra, deadline=deadline))
            sent = send.message("result", deadline + READY_TIMEOUT)
            got = recv.message("result", deadline)
        return {"sender": sent, "receiver": got}

    _repeat(result, 1, run)
    if result.runs:
        result.value = result.runs[0]
    return result
