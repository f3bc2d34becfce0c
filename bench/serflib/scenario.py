"""The measurements (a)-(e), the same code for both systems.

One system is measured at a time. Run 1 starts N nodes and measures
(a) start-up, (b) one event at a time from ``n0``, (c) SIGKILL of
``n{N-1}``, (d) SIGSTOP of ``n{N-2}``; run 2 starts a fresh cluster and
measures (e) false failure detections under a CPU hog. Every wait has a
deadline; a measurement that does not complete in time says so instead of
producing a number.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clusters import Cluster, ClusterError
from .hog import cpu_hog
from .procs import FAILED, LEFT, READY, SUSPECT, USER

ROWS = ("a", "b", "c", "d", "e")


@dataclass
class Measure:
    """One cell of the table: a value (seconds, or a count for (e)), or why there is none."""

    value: float | None = None
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settings:
    nodes: int
    events: int
    event_timeout: float
    fail_timeout: float
    start_timeout: float
    hog_seconds: float
    hog_grace: float


@dataclass
class SystemResult:
    system: str
    n: int
    rows: dict[str, Measure] = field(default_factory=dict)
    skipped: str = ""
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def measure_startup(cluster: Cluster, timeout: float) -> Measure:
    """(a): from launching n0 until every node has seen all N members alive."""
    cluster.launch(timeout)
    names = cluster.names
    expected = set(names)

    def converged() -> bool:
        if cluster.exited(names):
            return True
        return all(cluster.view_complete_time(n, expected) is not None for n in names)

    cluster.wait(converged, timeout)
    with cluster.cond:
        times = {n: cluster.view_complete_time(n, expected) for n in names}
        gone = cluster.exited(names)
        dead = [cluster.nodes[n].describe() for n in gone]
    done = [t for t in times.values() if t is not None]
    detail: dict[str, Any] = {
        "first_node_up_s": cluster.t_seed_ready - cluster.t_first_launch,
        "launch_span_s": cluster.t_last_launch - cluster.t_first_launch,
        "complete_views": len(done),
    }
    if gone:
        return Measure(error=f"node(s) exited: {'; '.join(dead)}", detail=detail)
    if len(done) < len(names):
        return Measure(
            error=f"not converged within {timeout:g} s ({len(done)}/{len(names)} nodes)", detail=detail
        )
    last = max(done)
    detail["after_last_launch_s"] = last - cluster.t_last_launch
    with cluster.cond:
        ups = [cluster.nodes[n].first(READY) for n in names]
    if all(up is not None for up in ups):
        # When the last node was up (its process started, imported, joined): what follows is
        # the cluster's own work, what precedes it the processes' start-up (CPU-bound here).
        last_up = max(up for up in ups if up is not None)
        detail["last_up_s"] = last_up - cluster.t_first_launch
        detail["after_last_up_s"] = last - last_up
    detail["first_complete_s"] = min(done) - cluster.t_first_launch
    return Measure(value=last - cluster.t_first_launch, detail=detail)


def _all_received(cluster: Cluster, receivers: list[str], key: str, after: float) -> Callable[[], bool]:
    def check() -> bool:
        if cluster.exited(receivers):
            return True
        return all(cluster.nodes[r].first(USER, key, after) is not None for r in receivers)

    return check


def measure_event(cluster: Cluster, count: int, timeout: float) -> Measure:
    """(b): ``count`` events from n0, one at a time; per event, the time until all others had it."""
    sender, receivers = cluster.names[0], cluster.names[1:]
    events: list[dict[str, Any]] = []
    for seq in range(count):
        issued, key = cluster.emit(seq)
        cluster.wait(_all_received(cluster, receivers, key, issued - 1.0), timeout)
        with cluster.cond:
            arrivals = {r: cluster.nodes[r].first(USER, key) for r in receivers}
            own = cluster.nodes[sender].first(USER, key)
        got = sorted(t - issued for t in arrivals.values() if t is not None)
        if len(got) < len(receivers):
            missing = sorted(r for r, t in arrivals.items() if t is None)
            return Measure(
                error=f"event {seq} reached {len(got)}/{len(receivers)} within {timeout:g} s",
                detail={"missing": missing, "events": events},
            )
        event: dict[str, Any] = {"all_s": got[-1], "median_s": statistics.median(got), "first_s": got[0]}
        if own is not None:  # Serf: the sending agent logs its own event too
            event["sender_own_s"] = own - issued
        events.append(event)
    alls = [e["all_s"] for e in events]
    detail: dict[str, Any] = {
        "events": events,
        "min_all_s": min(alls),
        "max_all_s": max(alls),
        "median_receiver_s": statistics.median(e["median_s"] for e in events),
    }
    owns = [e["sender_own_s"] for e in events if "sender_own_s" in e]
    if owns:
        detail["sender_own_s"] = statistics.median(owns)
    return Measure(value=statistics.median(alls), detail=detail)


def _all_failed(cluster: Cluster, observers: list[str], victim: str, after: float) -> Callable[[], bool]:
    def check() -> bool:
        if cluster.exited(observers):
            return True
        return all(cluster.nodes[o].first(FAILED, victim, after) is not None for o in observers)

    return check


def measure_failure(
    cluster: Cluster, victim: str, sig: signal.Signals, observers: list[str], timeout: float
) -> Measure:
    """(c)/(d): from sending ``sig`` to ``victim`` until every observer has marked it failed."""
    sent = cluster.signal(victim, sig)
    cluster.wait(_all_failed(cluster, observers, victim, sent), timeout)
    with cluster.cond:
        times = {o: cluster.nodes[o].first(FAILED, victim, sent) for o in observers}
        left = sorted(o for o in observers if cluster.nodes[o].first(LEFT, victim, sent) is not None)
        suspects = sum(
            1 for o in observers for x in cluster.nodes[o].obs if x.kind == SUSPECT and x.subject == victim
        )
        gone = cluster.exited(observers)
    got = sorted(t - sent for t in times.values() if t is not None)
    detail: dict[str, Any] = {
        "victim": victim,
        "signal": sig.name,
        "detected_by": len(got),
        "observers": len(observers),
        "suspicions_logged": suspects,
    }
    if left:
        detail["reported_left_by"] = left
    if got:
        detail["first_s"] = got[0]
        detail["median_s"] = statistics.median(got)
    if gone:
        return Measure(error=f"observer(s) exited: {', '.join(gone)}", detail=detail)
    if len(got) < len(observers):
        why = f"not detected within {timeout:g} s"
        if got:
            why += f" ({len(got)}/{len(observers)} nodes did)"
        if left:
            why += f"; {len(left)} reported 'left'"
        return Measure(error=why, detail=detail)
    return Measure(value=got[-1], detail=detail)


def run_main(cluster: Cluster, settings: Settings, result: SystemResult) -> None:
    """Run 1: (a), (b), (c), (d) on one cluster."""
    a = result.rows["a"] = measure_startup(cluster, settings.start_timeout)
    if a.value is None:
        return
    print(f"#   (a) {_short(a)}", flush=True)
    result.rows["b"] = measure_event(cluster, settings.events, settings.event_timeout)
    print(f"#   (b) {_short(result.rows['b'])}", flush=True)
    names = cluster.names
    killed, stopped = names[-1], names[-2]
    observers = [n for n in names if n != killed]
    result.rows["c"] = measure_failure(cluster, killed, signal.SIGKILL, observers, settings.fail_timeout)
    print(f"#   (c) {_short(result.rows['c'])}", flush=True)
    observers = [n for n in observers if n != stopped]
    try:
        result.rows["d"] = measure_failure(cluster, stopped, signal.SIGSTOP, observers, settings.fail_timeout)
    finally:
        cluster.signal(stopped, signal.SIGKILL)
    print(f"#   (d) {_short(result.rows['d'])}", flush=True)
    with cluster.cond:
        wrong = [
            o
            for o in cluster.count(FAILED, names, 0.0, float("inf"))
            if o.subject.split("->")[1] not in (killed, stopped)
        ]
    result.notes["false_failures_run1"] = [o.subject for o in wrong]


def run_hog(cluster: Cluster, settings: Settings) -> Measure:
    """Run 2, (e): member-failed events among live nodes while a CPU hog runs on core 0."""
    a = measure_startup(cluster, settings.start_timeout)
    if a.value is None:
        return Measure(error=f"hog cluster did not start: {a.error}")
    names = cluster.names
    start = time.time()
    with cpu_hog(settings.hog_seconds) as hog:
        hog_report = hog.wait()
    end = time.time()
    cluster.wait(lambda: bool(cluster.exited(names)), settings.hog_grace)  # late detections count too
    with cluster.cond:
        failed = cluster.count(FAILED, names, start, end + settings.hog_grace)
        left = cluster.count(LEFT, names, start, end + settings.hog_grace)
        suspects = cluster.count(SUSPECT, names, start, end + settings.hog_grace)
        gone = cluster.exited(names)
        dead = [cluster.nodes[n].describe() for n in gone]
    detail: dict[str, Any] = {
        "hog_s": end - start,
        "hog_cpu_s": hog_report.get("cpu_s"),
        "hog_cores": hog_report.get("cores"),
        "grace_s": settings.hog_grace,
        "failed": [f"{o.subject} at +{o.t - start:.1f} s" for o in failed],
        "left": [f"{o.subject} at +{o.t - start:.1f} s" for o in left],
        "suspicions_logged": len(suspects),
    }
    if gone:
        return Measure(error=f"node(s) exited during the hog: {'; '.join(dead)}", detail=detail)
    return Measure(value=float(len(failed)), detail=detail)


def run_system(make: Callable[[], Cluster], settings: Settings, system: str) -> SystemResult:
    """Both runs of one system; a failure becomes the text of the rows it left without a value."""
    result = SystemResult(system, settings.nodes)
    started = time.monotonic()
    print(f"# {system}, N={settings.nodes}: run 1 (a-d)", flush=True)
    try:
        with make() as cluster:
            run_main(cluster, settings, result)
            errors = cluster.errors()
    except (ClusterError, OSError) as exc:
        errors = [str(exc)]
        for row in ROWS[:4]:
            result.rows.setdefault(row, Measure(error=f"failed: {exc}"))
    if errors:
        result.notes["node_errors_run1"] = errors[:10]
    missing = result.rows["a"].error if "a" in result.rows else "not run"
    for row in ROWS[1:4]:
        result.rows.setdefault(row, Measure(error=f"skipped: {missing}"))
    print(f"# {system}, N={settings.nodes}: run 2 (e), {settings.hog_seconds:g} s CPU hog", flush=True)
    try:
        with make() as cluster:
            result.rows["e"] = run_hog(cluster, settings)
    except (ClusterError, OSError) as exc:
        result.rows["e"] = Measure(error=f"failed: {exc}")
    e = result.rows["e"]
    print(
        f"#   (e) {e.value:.0f} false failures" if e.value is not None else f"#   (e) {e.error}", flush=True
    )
    result.seconds = time.monotonic() - started
    return result


def fmt_seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def _short(m: Measure) -> str:
    return fmt_seconds(m.value) if m.value is not None else m.error
