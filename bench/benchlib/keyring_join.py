"""What the keyring handshake adds to a join: an open and a keyring cluster side by side.

The driver starts two one-node clusters (``pydevts recv`` nodes): one open,
one with ``--keyring``. Then, against both, alternating (open, keyring,
keyring, open, ...) so that both see the same load of a shared machine:

- **new process**: ``--joins`` pairs of processes (``pydevts join``), each
  making one node that joins the cluster and leaves: a cold join (first
  connection, first AES-GCM key of the process). Timed inside the process:
  ``Node(...)`` (reading the keyring file, importing ``cryptography``) and the
  join itself (entering ``async with node`` until the cluster's node is seen
  alive). A cold join varies by several ms from process to process, more than
  the keyring adds, so each open process also times, after its join, what a
  keyring process pays once: importing AES-GCM and making the first key.
- **running process**: one process (``pydevts joins``) makes ``--warm-joins``
  pairs of joins, one node after the other (each leaves before the next), then
  as many pairs of client connections (``NodeClient``: connect and handshake,
  nothing else), after a few untimed pairs.

The cold joins run first, while each cluster holds one node; the warm joins
then make both clusters remember the same number of departed nodes.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from .procs import free_port, spawn
from .rows import PEERS_SCRIPT, READY_TIMEOUT, Settings, _describe

NAME = "pydevts join (keyring vs open)"
SEED_DEADLINE = 300.0  # the two cluster nodes outlive the test; the driver stops them when it ends
KINDS = ("open", "keyring")
COLD_MEASURES = ("join_ms", "construct_ms", "crypto_import_ms", "crypto_first_key_ms")


@dataclass
class JoinResult:
    name: str = NAME
    errors: list[str] = field(default_factory=list)
    cold: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # kind -> measure -> samples
    warm: dict[str, list[float]] = field(default_factory=dict)  # join_open, join_keyring, hs_open, hs_keyring
    summary: dict[str, Any] = field(default_factory=dict)


def _argv(settings: Settings, role: str, *extra: str, deadline: float | None = None) -> list[str]:
    argv = [settings.python, str(PEERS_SCRIPT), "pydevts", role, "--backend", settings.backend]
    argv += ["--deadline", str(deadline if deadline is not None else settings.deadline)]
    if settings.uvloop:
        argv.append("--uvloop")
    return argv + list(extra)


def run_join_test(settings: Settings) -> JoinResult:
    result = JoinResult()
    if not settings.keyring:
        result.errors.append("no keyring file (Settings.keyring)")
        return result
    ring = ["--keyring", settings.keyring]
    result.cold = {kind: {m: [] for m in COLD_MEASURES} for kind in KINDS}
    try:
        with ExitStack() as stack:
            seeds: dict[str, dict[str, Any]] = {}
            for kind in KINDS:
                port = free_port()
                extra = ["--port", str(port), *(ring if kind == "keyring" else [])]
                seed = stack.enter_context(
                    spawn(f"pydevts {kind} cluster", _argv(settings, "recv", *extra, deadline=SEED_DEADLINE))
                )
                seeds[kind] = {"port": port, "seed": seed}
            for kind in KINDS:
                info = seeds[kind]["seed"].message("ready", READY_TIMEOUT)
                seeds[kind] |= {"id": info["id"], "address": str(info["address"])}
            _cold_joins(settings, seeds, ring, result)
            _warm_joins(settings, seeds, ring, result)
    except Exception as exc:  # reported; the rest of the benchmark goes on
        result.errors.append(_describe(exc))
    result.summary = summarise(result)
    return result


def _cold_joins(
    settings: Settings, seeds: dict[str, dict[str, Any]], ring: list[str], result: JoinResult
) -> None:
    for i in range(settings.joins):
        for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
            seed = seeds[kind]
            extra = [
                "--port",
                str(seed["port"]),
                "--peer-id",
                seed["id"],
                *(ring if kind == "keyring" else []),
            ]
            with spawn(f"pydevts {kind} join #{i}", _argv(settings, "join", *extra)) as joiner:
                got = joiner.message("result", settings.deadline + READY_TIMEOUT)
                joiner.wait_exit(READY_TIMEOUT)  # it leaves: the cluster is back to one node
            for measure in COLD_MEASURES:
                if measure in got:
                    result.cold[kind][measure].append(got[measure])


def _warm_joins(
    settings: Settings, seeds: dict[str, dict[str, Any]], ring: list[str], result: JoinResult
) -> None:
    if settings.warm_joins <= 0:
        return
    o, k = seeds["open"], seeds["keyring"]
    extra = [
        *("--port", str(o["port"]), "--peer-id", o["id"], "--address", o["address"]),
        *("--keyring-port", str(k["port"]), "--keyring-peer-id", k["id"], "--keyring-address", k["address"]),
        *ring,
        *("--count", str(settings.warm_joins), "--warmup", str(max(2, settings.warm_joins // 10))),
    ]
    with spawn("pydevts joins", _argv(settings, "joins", *extra)) as joiner:
        result.warm = joiner.message("result", settings.deadline + READY_TIMEOUT)


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "count": len(values),
        "median": statistics.median(values),
        "min": ordered[0],
        "max": ordered[-1],
        "p10": pct(0.1),
        "p90": pct(0.9),
    }


def summarise(result: JoinResult) -> dict[str, Any]:
    """Per measure: open and keyring statistics and what the keyring adds (ms).

    ``added`` is the keyring median minus the open median; for the in-process
    measures ``paired`` also gives the statistics of the differences of each
    pair (keyring minus open, the two taken one right after the other).
    """
    out: dict[str, Any] = {}
    for label in ("join", "hs"):
        o, k = result.warm.get(f"{label}_open", []), result.warm.get(f"{label}_keyring", [])
        if o and k:
            out[f"warm_{label}"] = _compare(o, k, paired=True)
    cold_open, cold_keyring = result.cold.get("open", {}), result.cold.get("keyring", {})
    for measure, key in (("join_ms", "cold_join"), ("construct_ms", "cold_construct")):
        o, k = cold_open.get(measure, []), cold_keyring.get(measure, [])
        if o and k:
            out[key] = _compare(o, k, paired=False)
    for measure in ("crypto_import_ms", "crypto_first_key_ms"):
        if cold_open.get(measure):
            out[measure.removesuffix("_ms")] = _stats(cold_open[measure])
    if "warm_join" in out and "crypto_first_key" in out:
        # A keyring node's first join: what every join adds, plus the first AES-GCM key.
        out["first_join_added"] = out["warm_join"]["paired"]["median"] + out["crypto_first_key"]["median"]
    return out


def _compare(open_: list[float], keyed: list[float], *, paired: bool) -> dict[str, Any]:
    out = {"open": _stats(open_), "keyring": _stats(keyed)}
    out["added"] = out["keyring"]["median"] - out["open"]["median"]
    if paired:
        out["paired"] = _stats([k - o for o, k in zip(open_, keyed, strict=False)])
    return out
