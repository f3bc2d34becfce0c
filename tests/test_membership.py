"""Membership and failure detection with real processes on loopback (both backends).

Default timings (SwimConfig): probe every 0.5 s, probe timeout 0.25 s,
suspicion timeout 4 x max(1, log10 N) x 0.5 s (2 s up to 10 nodes). A killed
node's address refuses the reconnect, which proves it gone at once; a silent
(stopped) node is found by probing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import anyio
import pytest
from agents import AgentProcess, agents, free_port, wait_alive

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PYDEVTS = [sys.executable, "-m", "pydevts"]


def member_event(proc: AgentProcess, node_id: str, kind: str, after: float = 0.0) -> object:
    return lambda e: e.get("ev") == "member" and e["id"] == node_id and e["kind"] == kind and e["t"] >= after


async def test_sigkill_is_detected_and_a_restart_rejoins(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(60):
        async with agents([("m1", [str(port), "--id", "m1"])], anyio_backend) as (m1,):
            await m1.wait_for(lambda e: e.get("ev") == "started", 15)
            async with agents([(n, [str(port), "--id", n]) for n in ("m2", "m3")], anyio_backend) as (m2, m3):
                for proc in (m1, m2, m3):
                    await wait_alive(proc, {"m1", "m2", "m3"})
                killed_at = anyio.current_time()
                m3.signal(signal.SIGKILL)
                for proc in (m1, m2):
                    await proc.wait_for(member_event(proc, "m3", "failed"), 6, "m3 failed")  # type: ignore[arg-type]
                    await wait_alive(proc, {"m1", "m2"})
                assert anyio.current_time() - killed_at < 6
                # the same id, restarted: a new incarnation joins cleanly
                restarted = time.time()  # events carry wall-clock "t"
                async with agents([("m3b", [str(port), "--id", "m3"])], anyio_backend) as (again,):
                    await again.wait_for(lambda e: e.get("ev") == "started", 15)
                    for proc in (m1, m2, again):
                        await wait_alive(proc, {"m1", "m2", "m3"})
                    # the lifecycle line follows the view change a moment later
                    await m1.wait_for(member_event(m1, "m3", "joined", restarted), 10, "m3 joined again")  # type: ignore[arg-type]
                    joins = [e for e in m1.events if e.get("ev") == "member" and e["id"] == "m3"]
                    assert [e["kind"] for e in joins][-2:] == ["failed", "joined"]


async def test_a_paused_process_is_suspected_not_failed_then_a_long_pause_fails(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(60):
        async with agents([(n, [str(port), "--id", n]) for n in ("p1", "p2", "p3")], anyio_backend) as procs:
            p1, p2, p3 = procs
            for proc in procs:
                await proc.wait_for(lambda e: e.get("ev") == "started", 15)
            for proc in procs:
                await wait_alive(proc, {"p1", "p2", "p3"})
            # 1 s of SIGSTOP (less than the 2 s suspicion window): never declared failed
            p3.signal(signal.SIGSTOP)
            await anyio.sleep(1.0)  # the pause itself is the scenario, not a wait for a condition
            p3.signal(signal.SIGCONT)
            for proc in (p1, p2):
                await wait_alive(proc, {"p1", "p2", "p3"})
            await anyio.sleep(3.0)  # past any suspicion that the pause started
            for proc in (p1, p2):
                assert not [e for e in proc.events if e.get("ev") == "member" and e["kind"] == "failed"]
                await wait_alive(proc, {"p1", "p2", "p3"})
            # a silent failure (stopped, no socket closed) is detected by probing
            stopped_at = anyio.current_time()
            p3.signal(signal.SIGSTOP)
            try:
                for proc in (p1, p2):
                    await proc.wait_for(member_event(proc, "p3", "failed"), 10, "p3 failed")  # type: ignore[arg-type]
                assert anyio.current_time() - stopped_at < 8
            finally:
                p3.signal(signal.SIGCONT)
            # once it runs again it refutes and comes back with a new incarnation
            for proc in (p1, p2):
                await wait_alive(proc, {"p1", "p2", "p3"}, timeout=15)


async def test_tags_and_graceful_leave_propagate(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(60):
        async with agents([(n, [str(port), "--id", n]) for n in ("t1", "t2", "t3")], anyio_backend) as procs:
            t1, t2, t3 = procs
            for proc in procs:
                await proc.wait_for(lambda e: e.get("ev") == "started", 15)
            for proc in procs:
                await wait_alive(proc, {"t1", "t2", "t3"})
            assert (await t2.call(op="tags", tags={"role": "db", "zone": "a"}))["ok"]
            for proc in (t1, t3):
                ev = await proc.wait_for(member_event(proc, "t2", "updated"), 10, "t2 updated")  # type: ignore[arg-type]
                assert ev["tags"] == {"role": "db", "zone": "a"}
                listed = await proc.call(op="members")
                assert next(m for m in listed["members"] if m["id"] == "t2")["tags"] == {
                    "role": "db",
                    "zone": "a",
                }
            assert await t3.stop() == 0
            for proc in (t1, t2):
                await proc.wait_for(member_event(proc, "t3", "left"), 10, "t3 left")  # type: ignore[arg-type]
                assert not [e for e in proc.events if e.get("ev") == "member" and e["kind"] == "failed"]


async def test_cli_members_and_emit_against_a_live_cluster(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(60):
        specs = [(n, [str(port), "--id", n, "--tag", f"name={n}"]) for n in ("c1", "c2")]
        async with agents(specs, anyio_backend) as procs:
            for proc in procs:
                await proc.wait_for(lambda e: e.get("ev") == "started", 15)
            for proc in procs:
                await wait_alive(proc, {"c1", "c2"})
            join = f"127.0.0.1:{port}"
            done = await anyio.run_process([*PYDEVTS, "members", "--join", join, "--json"], check=False)
            assert done.returncode == 0, done.stderr
            listed = json.loads(done.stdout)
            assert sorted(m["id"] for m in listed) == ["c1", "c2"]
            assert all({"id", "address", "tags", "state"} <= set(m) for m in listed)
            assert {m["id"]: m["tags"]["name"] for m in listed} == {"c1": "c1", "c2": "c2"}
            assert {m["state"] for m in listed} == {"alive"}
            table = (await anyio.run_process([*PYDEVTS, "members", "--join", join])).stdout.decode()
            assert table.splitlines()[0].split() == ["ID", "ADDRESS", "STATE", "TAGS"]
            done = await anyio.run_process([*PYDEVTS, "emit", "greet", '{"hello": "cli"}', "--join", join])
            assert b"sent to 2 nodes" in done.stdout
            for proc in procs:
                await proc.wait_for(
                    lambda e: e.get("ev") == "received" and e["payload"] == {"hello": "cli"}, 10, "the event"
                )
            # the CLI never became a member
            for proc in procs:
                await wait_alive(proc, {"c1", "c2"})
                assert not [
                    e for e in proc.events if e.get("ev") == "member" and e["id"].startswith("client-")
                ]
            bad = await anyio.run_process(
                [*PYDEVTS, "members", "--join", f"127.0.0.1:{free_port()}"],
                check=False,
                stderr=subprocess.PIPE,
            )
            assert bad.returncode == 1 and b"cannot connect" in bad.stderr
