"""Start N instrumented node processes the way ``serf_compare.py`` does and collect their records.

``n0`` first; when it has started the cluster, ``n1`` .. ``n{N-1}`` at once, each
joining through ``n0``'s cluster port. Wait (bounded) until every node's
lifecycle callback has seen the N-1 others joined, let the cluster settle a
moment (late duplicate links and safety-net dials still get recorded), then
ask every node for its records (``dump`` on stdin) and kill them all.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serflib.procs import NodeProcess, Obs, free_ports

CHILD = Path(__file__).resolve().parent / "child.py"
READY, COMPLETE, DUMP = "ready", "complete", "dump"


@dataclass
class RunRecord:
    """What one run produced: per node its launch time and its dump, plus the machine's load."""

    n: int
    launched: dict[str, float] = field(default_factory=dict)
    dumps: dict[str, dict[str, Any]] = field(default_factory=dict)
    t_first_launch: float = 0.0
    t_last_launch: float = 0.0
    t_dump: float = 0.0  # the driver asked for the records (nodes exit then: later events are ignored)
    error: str = ""
    loadavg_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    machine_busy_s: float = 0.0  # CPU seconds the whole machine was busy from first launch to the dump
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "launched": self.launched,
            "t_first_launch": self.t_first_launch,
            "t_last_launch": self.t_last_launch,
            "t_dump": self.t_dump,
            "error": self.error,
            "loadavg_before": self.loadavg_before,
            "machine_busy_s": self.machine_busy_s,
            "wall_s": self.wall_s,
            "dumps": self.dumps,
        }


def busy_seconds() -> float:
    """CPU seconds the machine has been busy (all cores), from /proc/stat; 0 if unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_once(
    n: int,
    *,
    timeout: float,
    settle: float,
    profile: str = "",
    pycache: str = "",
    python: str = sys.executable,
) -> RunRecord:
    """One run; ``profile``: names of nodes (comma-separated) to run under cProfile (imports to complete);
    ``pycache``: a directory for the children's bytecode caches (``PYTHONPYCACHEPREFIX``), written even
    when ``PYTHONDONTWRITEBYTECODE`` is set here; otherwise the children inherit this environment."""
    rec = RunRecord(n=n, loadavg_before=os.getloadavg())
    names = [f"n{i}" for i in range(n)]
    port = free_ports(1, udp=True)[0]
    cond = threading.Condition()
    dumps: dict[str, dict[str, Any]] = {}
    nodes: dict[str, NodeProcess] = {}

    def spawn(name: str) -> NodeProcess:
        def parse(line: str, t: float) -> Obs | None:
            if not line.startswith("{"):
                return None
            try:
                ev = json.loads(line)
            except ValueError:
                return None
            kind = ev.get("ev")
            if kind == "started":
                return Obs(READY, name, float(ev["t"]))
            if kind == "complete":
                return Obs(COMPLETE, name, float(ev["t"]))
            if kind == "dump":
                dumps[name] = ev
                return Obs(DUMP, name, float(ev["t"]))
            return None

        argv = [python, str(CHILD), str(port), name, str(n)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if pycache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pycache
        if name in profile.split(","):
            env["FORMATION_PROFILE"] = "1"
        node = NodeProcess(name, argv, parse, cond, stdin_pipe=True, env=env)
        nodes[name] = node
        rec.launched[name] = node.launched
        return node

    def wait(pred: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        with cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                cond.wait(min(left, 0.25))
            return True

    busy0, wall0 = busy_seconds(), time.time()
    try:
        rec.t_first_launch = time.time()
        seed = spawn(names[0])
        if not wait(lambda: seed.first(READY) is not None or seed.eof, timeout):
            rec.error = f"n0 not up within {timeout:g} s"
            return rec
        if seed.eof:
            rec.error = f"n0 exited: {seed.describe()}"
            return rec
        for name in names[1:]:
            spawn(name)
        rec.t_last_launch = time.time()

        def all_complete() -> bool:
            return all(nd.first(COMPLETE) is not None or nd.eof for nd in nodes.values())

        if not wait(all_complete, timeout):
            with cond:
                late = [nm for nm, nd in nodes.items() if nd.first(COMPLETE) is None]
            rec.error = f"not complete within {timeout:g} s: {', '.join(late)}"
        with cond:
            gone = [nd.describe() for nd in nodes.values() if nd.eof]
        if gone:
            rec.error = (rec.error + "; " if rec.error else "") + "exited: " + " | ".join(gone)
        time.sleep(settle)
        rec.t_dump = time.time()
        for nd in nodes.values():
            try:
                nd.write("dump\n")
            except OSError:
                pass
        wait(lambda: all(nm in dumps or nd.eof for nm, nd in nodes.items()), 15.0)
        rec.machine_busy_s = busy_seconds() - busy0
        rec.wall_s = time.time() - wall0
    finally:
        for nd in nodes.values():
            nd.kill()
    rec.dumps = dict(dumps)
    missing = [nm for nm in names if nm not in dumps]
    if missing:
        rec.error = (rec.error + "; " if rec.error else "") + f"no records from {', '.join(missing)}"
    return rec
