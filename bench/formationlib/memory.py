"""What a wave of N joins costs in messages, counted over the in-memory transport (one process).

:class:`CountingTransport` is a :class:`~pydevts.testing.MemoryTransport` that
wraps, on each connection and datagram endpoint it makes (both ends of a
connection), the ``send_frames`` / ``send`` of that instance: nothing in the
library changes. Frames are classified by their kind byte (HELLO 0x30, the
peer router's JSON control frames 0x40 by their ``t``, core EVENT/REQUEST/
REPLY/NEXT/ACK), SWIM datagrams by their message type.

A wave: ``n0`` starts the cluster; then ``n1`` .. ``n{N-1}`` start at once, each
joining through ``n0``. Counted until every node sees all N alive
("formation"), and again one second later ("+1 s": what keeps going).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
from pydevts import Node
from pydevts.errors import PydevtsError
from pydevts.protocols import Address
from pydevts.testing import MemoryNetwork, MemoryTransport

KINDS = {0x01: "EVENT", 0x02: "REQUEST", 0x03: "REPLY", 0x04: "ERROR", 0x05: "NEXT", 0x06: "ACK"}
KINDS |= {0x30: "HELLO", 0x31: "REFUSE"}
CLUSTER_PORT = 7000


class Counts:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()

    def add(self, key: str, amount: int = 1) -> None:
        self.c[key] += amount

    def frames(self, frames: Sequence[bytes]) -> None:
        self.add("tcp.writes")
        for frame in frames:
            self.add("tcp.frames")
            self.add("tcp.bytes", len(frame))
            kind = frame[0] if frame else -1
            if kind == 0x40:
                try:
                    message = json.loads(frame[1:])
                except ValueError:
                    message = {}
                t = message.get("t", "?")
                self.add(f"ctrl.{t}")
                self.add("ctrl.frames")
                self.add("ctrl.bytes", len(frame))
                members = message.get("members")
                if isinstance(members, list):
                    self.add("ctrl.sync_entries", len(members))
            else:
                name = KINDS.get(kind, f"0x{kind:02x}")
                self.add(f"core.{name}")
                self.add(f"core.{name}.bytes", len(frame))

    def datagram(self, data: bytes) -> None:
        self.add("swim.datagrams")
        self.add("swim.bytes", len(data))
        try:
            message = json.loads(data).get("m", {})
        except (ValueError, AttributeError):
            message = {}
        self.add(f"swim.{message.get('t', '?')}")
        updates = message.get("u")
        if isinstance(updates, list):
            self.add("swim.updates", len(updates))
            for update in updates:
                if isinstance(update, list) and update:
                    self.add(f"swim.u.{update[0]}")


class CountingTransport(MemoryTransport):
    """A memory transport that counts what its connections and datagram endpoints send."""

    def __init__(self, network: MemoryNetwork, *, host: str, counts: Counts) -> None:
        super().__init__(network, host=host)
        self.counts = counts

    def _wrap_conn(self, conn: Any) -> None:
        original = conn.send_frames
        counts = self.counts

        async def send_frames(frames: Sequence[bytes]) -> None:
            counts.frames(frames)
            await original(frames)

        conn.send_frames = send_frames

    async def connect(self, address: Address) -> Any:
        conn = await super().connect(address)
        self.counts.add("tcp.connects")
        if address.port == CLUSTER_PORT:
            self.counts.add("tcp.connects_to_cluster_port")
        self._wrap_conn(conn)
        if conn._peer is not None:
            self._wrap_conn(conn._peer)
        return conn

    async def open_datagrams(self, address: Address) -> Any:
        endpoint = await super().open_datagrams(address)
        original = endpoint.send
        counts = self.counts

        def send(data: bytes, to: Address) -> None:
            counts.datagram(data)
            original(data, to)

        endpoint.send = send  # type: ignore[method-assign]
        return endpoint


async def serve(node: Node, failures: list[str]) -> None:
    try:
        await node.serve()
    except PydevtsError as exc:
        failures.append(f"{node.id}: {exc}")


def alive(node: Node) -> int:
    return sum(1 for m in node.members if m.alive)


RELAXED = {"probe_interval": 5.0, "probe_timeout": 2.5}  # no false suspicions from one busy process


async def wave(n: int, timeout: float, relaxed: bool = False) -> dict[str, Any]:
    network = MemoryNetwork(seed=n)
    counts = Counts()
    nodes = [
        Node(
            CLUSTER_PORT,
            node_id=f"n{i}",
            host=f"n{i}",
            cluster_host="n0",
            transport=CountingTransport(network, host=f"n{i}", counts=counts),
            router_options=RELAXED if relaxed else None,
            # One process runs every node: n0 may take long to answer a wave of handshakes.
            handshake_timeout=timeout,
            join_timeout=timeout,
        )
        for i in range(n)
    ]
    result: dict[str, Any] = {"n": n, "converged": False, "relaxed": relaxed}
    failures: list[str] = []
    result["failures"] = failures
    started = time.monotonic()
    cpu0 = time.process_time()
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:
            await tg.start(nodes[0].serve)
            before_wave = Counter(counts.c)
            t_wave = time.monotonic()
            for node in nodes[1:]:
                tg.start_soon(serve, node, failures)
            # Polling N nodes' views (a bench, not the library): no event says "all converged".
            while not all(node._running and alive(node) == n for node in nodes):
                if failures:
                    break
                await anyio.sleep(0.01)
            if failures:
                tg.cancel_scope.cancel()
                return {**result, "at_failure": dict(counts.c), "total_s": time.monotonic() - started}
            result["converged"] = True
            result["formation_s"] = time.monotonic() - t_wave
            result["formation_cpu_s"] = time.process_time() - cpu0
            result["formation"] = dict(counts.c - before_wave)
            await anyio.sleep(1.0)
            result["plus_1s"] = dict(counts.c - before_wave)
            tg.cancel_scope.cancel()
    if not result["converged"]:
        result["at_timeout"] = dict(counts.c)
        result["seen"] = [alive(node) for node in nodes]
    result["total_s"] = time.monotonic() - started
    return result


def run_counts(sizes: list[int], *, timeout: float, relaxed: bool = False) -> list[dict[str, Any]]:
    logging.getLogger("pydevts").setLevel(logging.CRITICAL)  # start-up warnings (open cluster), overload
    out = []
    for n in sizes:
        what = "relaxed SWIM timings " + str(RELAXED) if relaxed else "default SWIM timings"
        print(f"# in-memory wave of {n} joins ({what}) ...", flush=True)
        out.append(anyio.run(wave, n, timeout, relaxed))
    return out


MODELS = {
    "N": lambda n: n,
    "N log N": lambda n: n * math.log2(n),
    "N^2": lambda n: n * n,
    "N^3": lambda n: n**3,
}


def fit(ns: list[int], ys: list[float]) -> tuple[str, float, float]:
    """The model c*f(N) closest in log space, its c, and the log-log slope over the whole range."""
    pts = [(n, y) for n, y in zip(ns, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return "-", 0.0, float("nan")
    best = ("-", 0.0, math.inf)
    for name, f in MODELS.items():
        logs = [math.log(y / f(n)) for n, y in pts]
        mean = sum(logs) / len(logs)
        err = sum((v - mean) ** 2 for v in logs)
        if err < best[2]:
            best = (name, math.exp(mean), err)
    (n1, y1), (n2, y2) = pts[0], pts[-1]
    slope = math.log(y2 / y1) / math.log(n2 / n1)
    return best[0], best[1], slope


ROWS = [
    ("TCP connects (all)", "tcp.connects"),
    ("  to the cluster port (joins)", "tcp.connects_to_cluster_port"),
    ("handshakes (HELLO frames / 2)", "core.HELLO"),
    ("router control frames (0x40)", "ctrl.frames"),
    ("  sync", "ctrl.sync"),
    ("  intro", "ctrl.intro"),
    ("  member entries in syncs", "ctrl.sync_entries"),
    ("  control bytes", "ctrl.bytes"),
    ("core REQUEST+REPLY (agree_with)", "core.REQUEST+core.REPLY"),
    ("core NEXT+ACK (link sessions)", "core.NEXT+core.ACK"),
    ("link frames (all)", "tcp.frames"),
    ("link bytes (all)", "tcp.bytes"),
    ("SWIM datagrams", "swim.datagrams"),
    ("  gossip", "swim.gossip"),
    ("  ping", "swim.ping"),
    ("  ack", "swim.ack"),
    ("  ping-req", "swim.ping-req"),
    ("  updates carried", "swim.updates"),
    ("    alive", "swim.u.alive"),
    ("    suspect", "swim.u.suspect"),
    ("    failed", "swim.u.failed"),
    ("SWIM bytes", "swim.bytes"),
]


def value(counts: dict[str, int], key: str) -> float:
    total = float(sum(counts.get(k, 0) for k in key.split("+")))
    return total / 2 if key == "core.HELLO" else total


def print_counts(results: list[dict[str, Any]]) -> None:
    done = [r for r in results if r["converged"]]
    for r in results:
        if not r["converged"]:
            why = "; ".join(r["failures"][:3]) or f"seen: {r.get('seen')}"
            print(f"  N={r['n']}: NOT converged ({r['total_s']:.0f} s): {why}")
    if not done:
        return
    ns = [r["n"] for r in done]
    timings = f"relaxed SWIM timings {RELAXED}" if done[0].get("relaxed") else "default SWIM timings"
    print(f"\n=== in-memory wave of N joins ({timings}): messages until every node sees all N alive")
    head = "".join(f"{'N=' + str(n):>12}" for n in ns)
    print(f"  {'':<34}{head}   {'best fit':<18} slope")
    for label, key in ROWS:
        ys = [value(r["formation"], key) for r in done]
        name, c, slope = fit(ns, ys)
        cells = "".join(f"{y:>12.0f}" for y in ys)
        print(f"  {label:<34}{cells}   {f'{c:.3g}*{name}':<18} {slope:.2f}")
    print(f"  {'formation wall s (one process)':<34}" + "".join(f"{r['formation_s']:>12.2f}" for r in done))
    print(
        f"  {'formation CPU s (one process)':<34}" + "".join(f"{r['formation_cpu_s']:>12.2f}" for r in done)
    )
    print("  in the second after formation (what keeps going):")
    after = (
        ("SWIM datagrams", "swim.datagrams"),
        ("  gossip", "swim.gossip"),
        ("  suspect updates", "swim.u.suspect"),
        ("link frames", "tcp.frames"),
    )
    for label, key in after:
        ys = [value(r["plus_1s"], key) - value(r["formation"], key) for r in done]
        print(f"  {label:<34}" + "".join(f"{y:>12.0f}" for y in ys))
