"""What every peer program shares: options, the stdout protocol, running on a backend, statistics.

A peer talks to the driver through its stdout, one line per message:
``ready {json}`` once it can be used, ``result {json}`` when it is done.
Everything else (logs, tracebacks) goes to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

PAYLOAD_SIZE = 100
PAYLOAD = b"x" * PAYLOAD_SIZE
CHECK_EVERY = 1024  # the senders look at the clock once per this many messages

Result = dict[str, Any]


def emit(kind: str, **data: Any) -> None:
    """Write one protocol line (``ready`` or ``result``) to stdout."""
    sys.stdout.write(f"{kind} {json.dumps(data)}\n")
    sys.stdout.flush()


def ready(**data: Any) -> None:
    emit("ready", **data)


def peer_arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="one side of a benchmark (started by bench/run.py)")
    p.add_argument("kind", choices=["raw", "pydevts", "zmq", "zmq_asyncio", "nats"])
    p.add_argument("role")
    p.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    p.add_argument("--uvloop", action="store_true", help="asyncio with uvloop")
    p.add_argument("--n", type=int, default=200_000, help="messages to send (throughput)")
    p.add_argument("--seconds", type=float, default=10.0, help="stop sending after this long")
    p.add_argument("--count", type=int, default=2000, help="timed round trips")
    p.add_argument("--warmup", type=int, default=200, help="untimed round trips first")
    p.add_argument("--batch", type=int, default=0, help="raw: bytes per write (0: one send per frame)")
    p.add_argument("--port", type=int, default=0, help="port to connect to (or cluster port)")
    p.add_argument("--url", default="", help="nats server URL")
    p.add_argument("--peer-id", default="", help="pydevts: id of the other node")
    p.add_argument("--keyring", default="", metavar="PATH",
                   help="pydevts: the cluster's keyring file (default: an open cluster)")  # fmt: skip
    p.add_argument("--plain-links", action="store_true",
                   help="pydevts: links without sessions (pydevts.wire.session.ENABLED = False: "
                        "no numbering, retransmit buffer or ACKs)")  # fmt: skip
    p.add_argument("--address", default="", help="pydevts joins: host:port of the open cluster's node")
    p.add_argument(
        "--keyring-port", type=int, default=0, help="pydevts joins: cluster port of the keyring cluster"
    )
    p.add_argument("--keyring-peer-id", default="", help="pydevts joins: id of the keyring cluster's node")
    p.add_argument(
        "--keyring-address", default="", help="pydevts joins: host:port of the keyring cluster's node"
    )
    p.add_argument("--deadline", type=float, default=60.0, help="give up after this many seconds")
    p.add_argument("--profile", default="", help="write cProfile stats of the whole run to this file")
    return p


def run_async(main: Callable[[], Awaitable[Result | None]], backend: str, use_uvloop: bool) -> Result | None:
    """Run ``main`` with anyio on ``backend``; return its result."""
    import anyio

    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" and use_uvloop else {}
    result: Result | None = anyio.run(main, backend=backend, backend_options=options)
    return result


@contextmanager
def profiled(path: str) -> Iterator[None]:
    """Profile the block with cProfile into ``path`` (no-op when ``path`` is empty)."""
    if not path:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        prof.dump_stats(path)


def rtt_summary(samples_ns: list[int]) -> Result:
    """p50/p99/mean/min/max of round-trip samples, in microseconds."""
    us = sorted(s / 1000 for s in samples_ns)
    if not us:
        return {"count": 0}

    def pct(q: float) -> float:
        return us[min(len(us) - 1, round(q * (len(us) - 1)))]

    return {
        "count": len(us),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": statistics.fmean(us),
        "min_us": us[0],
        "max_us": us[-1],
    }


class Counter:
    """Counts received messages and remembers when the first and the last arrived."""

    __slots__ = ("count", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def add(self, n: int = 1) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += n
        self.last = now

    def result(self, **extra: Any) -> Result:
        span = self.last - self.first
        rate = (self.count - 1) / span if self.count > 1 and span > 0 else 0.0
        # t_first / t_last: time.perf_counter(), which is system-wide, so comparable with the sender's t_start
        return {
            "received": self.count,
            "span_s": span,
            "msgs_per_s": rate,
            "t_first": self.first,
            "t_last": self.last,
            **extra,
        }


class SendClock:
    """The sender's bound: stop at ``n`` messages or after ``seconds``, whichever comes first."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.stop_at = self.start + seconds

    def expired(self) -> bool:
        return time.perf_counter() >= self.stop_at

    def result(self, sent: int, target: int) -> Result:
        elapsed = time.perf_counter() - self.start
        return {
            "sent": sent,
            "target": target,
            "time_limited": sent < target,
            "send_s": elapsed,
            "t_start": self.start,
        }
