"""One pydevts node of a formation timeline run: ``python child.py CLUSTER_PORT NODE_ID N``.

Builds the node as ``python -m pydevts.cli.agent CLUSTER_PORT --id NODE_ID`` does
(127.0.0.1, TCP, the peer router, every other setting at its default),
with the wrappers of :mod:`probe` installed. Writes on stdout, as they happen:

    {"ev": "started", "t": ...}     the node is in the cluster (``async with node`` returned)
    {"ev": "complete", "t": ...}    its lifecycle callback has seen N-1 others joined

and, when a line ``dump`` arrives on stdin, one line ``{"ev": "dump", ...}``
with every recorded event and counter, then exits at once (no graceful
leave: the run is over, and a leave would only add traffic to the others'
records). End of stdin also ends it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

LAG_TICK = 0.01  # the loop-lag monitor's period
LAG_REPORT = 0.02  # lags above this are recorded


def _out(obj: dict[str, Any]) -> None:
    obj.setdefault("t", time.time())
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


def process_start_time() -> float | None:
    """Wall-clock time the kernel started this process (10 ms resolution), from /proc."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def profile_text(profiler: Any, lines: int = 30) -> str:
    """The top of the profile (imported .. complete) by own time, then by cumulative time."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def main() -> int:
    t_main, cpu_main = time.time(), time.process_time()
    port, node_id, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    import anyio
    from probe import REC, install
    from pydevts import MemberEvent, Node

    install()
    profiler = None
    if os.environ.get("FORMATION_PROFILE"):
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: others' load does not count
        profiler.enable()
    milestones: dict[str, Any] = {
        "exec": process_start_time(),
        "main": t_main,
        "cpu_main": cpu_main,
        "imported": time.time(),
        "cpu_imported": time.process_time(),
    }
    joined: set[str] = set()
    node = Node(port, node_id=node_id, host="127.0.0.1")

    @node.on_lifecycle
    async def lifecycle(event: MemberEvent) -> None:
        member = event.member.id
        REC.add("cb", member, event.kind)
        if event.kind == "joined":
            joined.add(member)
        elif event.kind in ("left", "failed", "reaped"):
            joined.discard(member)
        if event.kind == "joined" and len(joined) == n - 1 and "complete" not in milestones:
            milestones["complete"] = time.time()
            milestones["cpu_complete"] = time.process_time()
            if profiler is not None:
                profiler.disable()
            _out({"ev": "complete", "t": milestones["complete"]})

    async def watch_lag() -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(LAG_TICK)
            late = time.perf_counter() - before - LAG_TICK
            if late > LAG_REPORT:
                REC.add("lag", "", round(late, 4))

    def dump() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        milestones["cpu_dump"] = time.process_time()
        milestones["rusage"] = {"utime": usage.ru_utime, "stime": usage.ru_stime, "nvcsw": usage.ru_nvcsw}
        if profiler is not None:
            profiler.disable()
            milestones["profile"] = profile_text(profiler)
        body = {
            "ev": "dump",
            "id": node_id,
            "milestones": milestones,
            "events": REC.events,
            "counters": REC.counters,
            "missing": REC.missing,
        }
        _out(body)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_lag)
            milestones["join_start"] = time.time()
            async with node:
                milestones["started"] = time.time()
                milestones["cpu_started"] = time.process_time()
                _out({"ev": "started", "t": milestones["started"], "new_cluster": node.started_cluster})
                async for line in anyio.wrap_file(sys.stdin):
                    if line.strip() == "dump":
                        break
                dump()
                os._exit(0)  # no leave: see the module docstring

    anyio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
