"""What an analytics plugin costs a node: ``.venv/bin/python bench/plugin_cost.py [--backend trio]``.

Two nodes in one process, linked over TCP on 127.0.0.1, with 100-byte
payloads, in three configurations (the same plugin on both nodes):

* ``none`` — no connection plugin;
* ``noop`` — a ``pydevts.Plugin`` subclass overriding nothing (the cost of a
  plugin that watches nothing should be none: the node never calls it);
* ``empty-hooks`` — a ``pydevts.Plugin`` overriding the message hooks the
  prometheus plugin overrides, with empty bodies: what the node itself
  spends on a plugin that watches messages (it builds a ``MessageInfo`` per
  message and takes its watched paths), apart from the plugin's own work;
* ``prometheus`` — ``connection_plugins=["prometheus"]`` (pydevts-prometheus,
  serving ``/metrics`` on a free port; nothing scrapes it during the run).

Each run measures one-way throughput (node a sends ``--n`` events to b with
``send``; events/s from a's first send to b's handler seeing the last one;
the sender stops after ``--seconds`` at the latest) and sequential request
round trips (``--count`` timed after ``--warmup`` untimed; p50 and p99).
The configurations run interleaved, ``--repeat`` times each with fresh nodes,
and the table shows each one's median; the ratios are to ``none`` of the same
run (events/s: above 1 is faster; p50: above 1 is slower). After each
prometheus run the plugin's own counts are checked against what was sent.
Every wait is bounded (``--deadline`` per run); nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from benchlib.common import PAYLOAD, Counter, SendClock, rtt_summary
from benchlib.driver import machine
from pydevts import MessageInfo, Node, Plugin
from pydevts.observe import Finish

CONFIGS = ("none", "noop", "empty-hooks", "prometheus")


class NoOp(Plugin):
    """A plugin that overrides no hook."""

    name = "noop"


class EmptyHooks(Plugin):
    """The message hooks pydevts-prometheus overrides, doing nothing."""

    name = "empty-hooks"

    def on_message_out(self, msg: MessageInfo) -> None:
        return None

    def on_handle(self, msg: MessageInfo) -> Finish:
        return self._finish

    def _finish(self, seconds: float, error: BaseException | None) -> None:
        pass

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        pass

    def on_relay(self, msg: MessageInfo, to: str) -> None:
        pass

    def on_drop(self, msg: MessageInfo, reason: str) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node(config: str, port: int, node_id: str) -> Node:
    if config == "noop":
        return Node(port, node_id=node_id, connection_plugins=[NoOp()])
    if config == "empty-hooks":
        return Node(port, node_id=node_id, connection_plugins=[EmptyHooks()])
    if config == "prometheus":
        return Node(
            port,
            node_id=node_id,
            connection_plugins=["prometheus"],
            plugin_options={"prometheus": {"port": 0}},
        )
    return Node(port, node_id=node_id)


async def wait(pred: Callable[[], object], timeout: float, what: str) -> None:
    with anyio.move_on_after(timeout):
        while not pred():  # noqa: ASYNC110 - another node's state, polled with a deadline
            await anyio.sleep(0.005)
        return
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


async def run_one(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``config``: fresh nodes, throughput, then round trips."""
    port = free_port()
    a, b = node(config, port, "a"), node(config, port, "b")
    got = Counter()
    done = anyio.Event()

    @b.on("ev")
    async def ev(sender: str, payload: bytes) -> None:
        got.add()
        if got.count >= target:
            done.set()

    @b.on("echo")
    async def echo(sender: str, payload: bytes) -> bytes:
        return payload

    target = args.n
    with anyio.fail_after(args.deadline):
        async with a, b:
            await wait(lambda: any(m.id == "b" and m.alive for m in a.members), 10, "b to join")
            # -- throughput: a -> b
            clock = SendClock(args.seconds)
            sent = 0
            for sent in range(1, args.n + 1):
                await a.send("b", "ev", PAYLOAD)
                if sent % 1024 == 0 and clock.expired():
                    break
            target = sent
            if got.count >= target:
                done.set()
            await done.wait()
            elapsed = got.last - clock.start
            throughput = {
                **clock.result(sent, args.n),
                "received": got.count,
                "events_per_s": got.count / elapsed if elapsed > 0 else 0.0,
            }
            # -- round trips
            for _ in range(args.warmup):
                await a.request("b", "echo", PAYLOAD, timeout=5)
            samples: list[int] = []
            for _ in range(args.count):
                start = time.perf_counter_ns()
                await a.request("b", "echo", PAYLOAD, timeout=5)
                samples.append(time.perf_counter_ns() - start)
            rtt = rtt_summary(samples)
            checked = check_counts(b, got.count, args.warmup + args.count) if config == "prometheus" else None
    return {"config": config, **throughput, **rtt, "checked": checked}


def check_counts(b: Node, events: int, requests: int) -> str:
    """The prometheus plugin on b counted exactly what b received (read through its registry)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(b.plugin("prometheus").registry).decode()
    values = {
        (s.name, s.labels.get("kind"), s.labels.get("name")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    got_events = values.get(("pydevts_messages_received_total", "event", "ev"), 0)
    got_requests = values.get(("pydevts_handler_seconds_count", "request", "echo"), 0)
    if (got_events, got_requests) != (events, requests):
        raise SystemExit(
            f"prometheus counted {got_events} events, {got_requests} requests on b; "
            f"expected {events}, {requests}"
        )
    return f"{int(got_events)} events, {int(got_requests)} requests"


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def spread(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [min(r[key] for r in rows), max(r[key] for r in rows)]


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    base_eps, base_p50 = median(results["none"], "events_per_s"), median(results["none"], "p50_us")
    print(
        f"\nplugin cost: 2 in-process nodes over TCP, backend {args.backend}, "
        f"{len(PAYLOAD)}-byte payloads, N={args.n}, {args.count} round trips, median of {args.repeat}"
    )
    columns = (("config", 13), ("events/s", 12), ("vs none", 9), ("ns/event", 10), ("p50 us", 9))
    header = f"{columns[0][0]:<13}" + "".join(f"{n:>{w}}" for n, w in columns[1:])
    header += f"{'p99 us':>9}{'vs none':>9}"
    print(header)
    print("-" * len(header))
    summary: dict[str, Any] = {}
    for config, rows in results.items():
        eps, p50, p99 = median(rows, "events_per_s"), median(rows, "p50_us"), median(rows, "p99_us")
        extra_ns = (1 / eps - 1 / base_eps) * 1e9 if eps and base_eps else 0.0
        summary[config] = {
            "events_per_s": eps,
            "events_ratio": eps / base_eps,
            "extra_ns_per_event": extra_ns,
            "p50_us": p50,
            "p99_us": p99,
            "p50_ratio": p50 / base_p50,
            "events_per_s_range": spread(rows, "events_per_s"),
            "p50_us_range": spread(rows, "p50_us"),
            "time_limited": any(r["time_limited"] for r in rows),
        }
        flag = " (time-limited)" if summary[config]["time_limited"] else ""
        print(
            f"{config:<13}{eps:>12,.0f}{eps / base_eps:>9.2f}{extra_ns:>10.0f}{p50:>9.1f}{p99:>9.1f}"
            f"{p50 / base_p50:>9.2f}{flag}"
        )
    for config, rows in results.items():
        lo, hi = summary[config]["events_per_s_range"]
        plo, phi = summary[config]["p50_us_range"]
        print(f"  {config}: events/s {lo:,.0f}..{hi:,.0f}; p50 {plo:.1f}..{phi:.1f} us over {len(rows)} runs")
    checked = [r["checked"] for r in results.get("prometheus", []) if r["checked"]]
    if checked:
        print(f"  prometheus counts checked after each run (last: {checked[-1]})")
    return summary


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.configs}
    order = list(args.configs)
    for i in range(args.repeat):
        for config in order[i % len(order) :] + order[: i % len(order)]:  # rotate: no config always first
            results[config].append(await run_one(config, args))
    return {
        "machine": machine(["pydevts-core", "pydevts-prometheus", "prometheus-client"]),
        "runs": results,
        "summary": report(results, args),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument("--quick", action="store_true", help="smoke run: N=5,000, 200 round trips, 1 repeat")
    p.add_argument("--n", type=int, help="events per throughput run (default 50,000)")
    p.add_argument("--seconds", type=float, default=10.0, help="the sender stops after this long")
    p.add_argument("--count", type=int, help="timed round trips per run (default 1,000)")
    p.add_argument("--warmup", type=int, default=100, help="untimed round trips first")
    p.add_argument("--repeat", type=int, help="runs per configuration, the median is shown (default 5)")
    p.add_argument("--deadline", type=float, default=60.0, help="give up on a run after this long")
    p.add_argument("--json", type=Path, help="also write every number here")
    args = p.parse_args()
    args.n = args.n or (5_000 if args.quick else 50_000)
    args.count = args.count or (200 if args.quick else 1_000)
    args.repeat = args.repeat or (1 if args.quick else 5)
    args.configs = CONFIGS
    try:
        import pydevts_prometheus  # noqa: F401
    except ImportError:
        print(
            "pydevts-prometheus is not installed (pip install -e pydevts_plugins/prometheus): "
            "measuring the others only",
            file=sys.stderr,
        )
        args.configs = CONFIGS[:3]
    return args


if __name__ == "__main__":
    arguments = parse_args()
    out = anyio.run(main, arguments, backend=arguments.backend)
    if arguments.json:
        arguments.json.write_text(json.dumps(out, indent=2, default=str))
