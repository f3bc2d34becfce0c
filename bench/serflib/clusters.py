"""A cluster of N node processes on loopback: pydevts agents or Serf agents, observed the same way.

Both kinds are started the same way: node ``n0`` first; when it is up, ``n1`` ..
``n{N-1}`` at once, each joining through ``n0``. Each node's stdout becomes a
list of observations (:class:`~serflib.procs.Obs`) with wall-clock times:

* pydevts: the JSON lines of ``python -m pydevts.cli.agent``, with the ``"t"``
  each agent wrote (``time.time()`` in the agent itself).
* Serf: the agent's own log (``-log-level=info``), stamped with ``time.time()``
  by the driver's reader thread as each line arrives (Serf's log timestamps
  have a 1 s resolution). These lines (``serf: EventMemberJoin: nX``,
  ``serf: EventMemberFailed: nX``, ``memberlist: Suspect nX has failed``,
  ``agent: Received event: user-event: NAME``) are written when Serf itself
  changes its member list, *before* the agent's event coalescing: the agent
  hands member events to ``-event-handler`` scripts only after a quiescent
  period of 1 s (at most 3 s), which would add that delay to every
  membership measurement.
"""

from __future__ import annotations

import abc
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Self

from .procs import ERROR, FAILED, JOIN, LEFT, READY, SUSPECT, USER, NodeProcess, Obs, free_ports

MAX_WAKEUPS = 10_000_000  # bound on condition wake-ups in one wait (each wait also has a deadline)
POLL = 0.25  # a wait looks at its predicate at least this often
EMIT_TIMEOUT = 10.0


class ClusterError(Exception):
    """The cluster could not be started or driven."""


class Cluster(abc.ABC):
    """N node processes named ``n0`` .. ``n{N-1}``; always killed when the ``with`` block ends."""

    system = "?"
    stdin_pipe = False

    def __init__(self, n: int) -> None:
        self.names = [f"n{i}" for i in range(n)]
        self.cond = threading.Condition()
        self.nodes: dict[str, NodeProcess] = {}
        self.t_first_launch = 0.0
        self.t_seed_ready = 0.0
        self.t_last_launch = 0.0

    # ------------------------------------------------------------ per system

    @abc.abstractmethod
    def argv(self, index: int) -> list[str]:
        """The command line of node ``index`` (0: the first node, which the others join through)."""

    @abc.abstractmethod
    def parse(self, name: str, line: str, t: float) -> Obs | None:
        """Turn one stdout line of node ``name``, read at ``t``, into an observation (or nothing)."""

    @abc.abstractmethod
    def emit(self, seq: int) -> tuple[float, str]:
        """Send user event number ``seq`` from ``n0`` to all; (time it was issued, key receivers report)."""

    def env(self) -> dict[str, str] | None:
        return None

    # ------------------------------------------------------------ processes

    def _spawn(self, index: int) -> NodeProcess:
        name = self.names[index]

        def parse(line: str, t: float) -> Obs | None:
            return self.parse(name, line, t)

        node = NodeProcess(
            name, self.argv(index), parse, self.cond, stdin_pipe=self.stdin_pipe, env=self.env()
        )
        self.nodes[name] = node
        return node

    def launch(self, start_timeout: float) -> None:
        """Start ``n0``, wait until it is up, then start all the others."""
        self.t_first_launch = time.time()
        seed = self._spawn(0)
        self.wait(lambda: seed.first(READY) is not None or seed.eof, start_timeout)
        with self.cond:
            ready = seed.first(READY)
        if ready is None:
            raise ClusterError(f"first node not up within {start_timeout:g} s: {seed.describe()}")
        self.t_seed_ready = ready
        for i in range(1, len(self.names)):
            self._spawn(i)
        self.t_last_launch = time.time()

    def signal(self, name: str, sig: signal.Signals) -> float:
        """Send ``sig`` to node ``name``; the wall-clock time just before."""
        return self.nodes[name].signal(sig)

    def close(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------ observations

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (called with ``cond`` held) is true; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            for _ in range(MAX_WAKEUPS):
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(min(remaining, POLL))
            return predicate()

    def exited(self, names: list[str]) -> list[str]:
        """Those of ``names`` whose process has closed its stdout (call with ``cond`` held)."""
        return [n for n in names if n in self.nodes and self.nodes[n].eof]

    def view_complete_time(self, name: str, expected: set[str]) -> float | None:
        """When node ``name`` first saw every member of ``expected`` alive (call with ``cond`` held)."""
        node = self.nodes.get(name)
        if node is None:
            return None
        alive = {name}
        start = node.first(READY)
        if start is not None and expected <= alive:
            return start
        for o in node.obs:
            if o.kind == JOIN:
                alive.add(o.subject)
            elif o.kind in (FAILED, LEFT):
                alive.discard(o.subject)
            else:
                continue
            if expected <= alive:
                return o.t
        return None

    def count(self, kind: str, observers: list[str], start: float, end: float) -> list[Obs]:
        """Observations of ``kind`` by ``observers`` between ``start`` and ``end`` (``cond`` held)."""
        return [
            Obs(kind, f"{name}->{o.subject}", o.t)
            for name in observers
            for o in self.nodes[name].obs
            if o.kind == kind and start <= o.t <= end
        ]

    def errors(self) -> list[str]:
        with self.cond:
            return [
                f"{n}: {o.subject}" for n, node in self.nodes.items() for o in node.obs if o.kind == ERROR
            ]


class PydevtsCluster(Cluster):
    """``python -m pydevts.cli.agent CLUSTER_PORT --id nX --log-level WARNING``; n0 starts the cluster."""

    system = "pydevts"
    stdin_pipe = True
    MEMBER_KINDS: ClassVar[dict[str, str]] = {
        "joined": JOIN,
        "failed": FAILED,
        "left": LEFT,
        "suspect": SUSPECT,
    }

    def __init__(self, n: int, python: str) -> None:
        super().__init__(n)
        self.python = python
        self.port = free_ports(1)[0]

    def argv(self, index: int) -> list[str]:
        return [
            self.python,
            "-m",
            "pydevts.cli.agent",
            str(self.port),
            "--id",
            self.names[index],
            "--log-level",
            "WARNING",
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def parse(self, name: str, line: str, t: float) -> Obs | None:
        try:
            ev: Any = json.loads(line)
        except ValueError:
            return None
        if not isinstance(ev, dict):
            return None
        when = float(ev.get("t", t))
        kind = ev.get("ev")
        if kind == "started":
            return Obs(READY, str(ev.get("id")), when)
        if kind == "member":
            mapped = self.MEMBER_KINDS.get(str(ev.get("kind")))
            return Obs(mapped, str(ev.get("id")), when) if mapped else None
        if kind == "received":
            payload = ev.get("payload")
            if isinstance(payload, dict) and "seq" in payload:
                return Obs(USER, str(payload["seq"]), when)
            return None
        if kind == "error" or (kind == "result" and ev.get("ok") is False):
            return Obs(ERROR, json.dumps(ev), when)
        return None

    def emit(self, seq: int) -> tuple[float, str]:
        key = f"e{seq}"
        cmd = json.dumps({"op": "emit", "name": "greet", "payload": {"seq": key}, "tag": key}) + "\n"
        issued = time.time()
        try:
            self.nodes[self.names[0]].write(cmd)
        except OSError as exc:
            raise ClusterError(f"cannot send the emit command to n0: {exc}") from exc
        return issued, key


_SERF_MEMBER = re.compile(r"serf: EventMember(Join|Failed|Leave): (\S+)")
_SERF_SUSPECT = re.compile(r"memberlist: Suspect (\S+) has failed")
_SERF_USER = re.compile(r"agent: Received event: user-event: (\S+)")
_SERF_KINDS = {"Join": JOIN, "Failed": FAILED, "Leave": LEFT}


class SerfCluster(Cluster):
    """``serf agent -node=nX -bind=127.0.0.1:P -rpc-addr=127.0.0.1:R [-join=127.0.0.1:P0]`` (LAN profile)."""

    system = "Serf"

    def __init__(self, n: int, serf: str) -> None:
        super().__init__(n)
        self.serf = serf
        ports = free_ports(2 * n, udp=True)
        self.bind_ports, self.rpc_ports = ports[:n], ports[n:]

    def argv(self, index: int) -> list[str]:
        argv = [
            self.serf,
            "agent",
            f"-node={self.names[index]}",
            f"-bind=127.0.0.1:{self.bind_ports[index]}",
            f"-rpc-addr=127.0.0.1:{self.rpc_ports[index]}",
            "-log-level=info",
        ]
        if index:
            argv.append(f"-join=127.0.0.1:{self.bind_ports[0]}")
        return argv

    def parse(self, name: str, line: str, t: float) -> Obs | None:
        if "Log data will now stream in" in line:
            return Obs(READY, name, t)
        m = _SERF_MEMBER.search(line)
        if m:
            return Obs(_SERF_KINDS[m.group(1)], m.group(2), t)
        m = _SERF_SUSPECT.search(line)
        if m:
            return Obs(SUSPECT, m.group(1), t)
        m = _SERF_USER.search(line)
        if m:
            return Obs(USER, m.group(1), t)
        return None

    def emit(self, seq: int) -> tuple[float, str]:
        key = f"bench-e{seq}"
        argv = [self.serf, "event", "-coalesce=false", f"-rpc-addr=127.0.0.1:{self.rpc_ports[0]}", key]
        argv.append(f"seq={seq}")
        issued = time.time()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=EMIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"serf event failed: {exc}") from exc
        if done.returncode != 0:
            raise ClusterError(
                f"serf event failed (rc={done.returncode}): {(done.stderr or done.stdout).strip()}"
            )
        return issued, key
