"""Seeing a cluster from the command line: `node --print-events`, `watch`, `members --tag/--state`, `emit`.

Every process is the real `pydevts` command, on loopback; each test stops what it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from agents import LoggedProcess, free_port, wait_listening

PYDEVTS = [sys.executable, "-m", "pydevts"]

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives subprocesses; the nodes choose their own backend


@asynccontextmanager
async def running(*argvs: list[str]) -> AsyncIterator[tuple[list[LoggedProcess], anyio.abc.TaskGroup]]:
    """One `pydevts` process per argv, for the test to start (in the order it wants) in the task
    group given; every one started is stopped on exit."""
    procs = [LoggedProcess([*PYDEVTS, *argv]) for argv in argvs]
    async with anyio.create_task_group() as tg:
        try:
            yield procs, tg
        finally:
            with anyio.CancelScope(shield=True):
                for proc in procs:
                    if proc.process is not None:
                        await proc.stop()
            tg.cancel_scope.cancel()


async def wait_printed(proc: LoggedProcess, line: str, timeout: float = 15) -> None:
    """Wait for a line that is exactly ``line`` (stdout lines are not log lines: no time stamp)."""
    with anyio.move_on_after(timeout):
        while line not in proc.lines:
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"no line {line!r} from {proc.argv}: {proc.lines[-20:]}")


async def wait_printed_prefix(proc: LoggedProcess, prefix: str, timeout: float = 15) -> str:
    with anyio.move_on_after(timeout):
        while True:
            for line in proc.lines:
                if line.startswith(prefix):
                    return line
            await anyio.sleep(0.02)
    raise AssertionError(f"no line starting {prefix!r} from {proc.argv}: {proc.lines[-20:]}")


async def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([*PYDEVTS, *argv], check=False)


async def test_print_events_shows_each_event_and_membership_change() -> None:
    port = free_port()
    join = f"127.0.0.1:{port}"
    with anyio.fail_after(90):
        async with running(
            ["node", str(port), "--id", "p1", "--print-events"],
            ["node", str(port), "--id", "p2", "--print-events", "--tag", "role=db", "--tag", "zone=eu-1"],
        ) as ((p1, p2), tg):
            await p1.start(tg)
            await p1.wait_line("started a new cluster")
            done = await cli("emit", "hello", '{"x": 1}', "--join", join)
            assert done.returncode == 0, done.stderr
            assert done.stdout.decode() == "event 'hello' sent to 1 node: p1\n"
            await wait_printed(p1, 'event "hello" from p1: {"x": 1}')

            await p2.start(tg)
            await wait_printed_prefix(p1, "member p2 joined 127.0.0.1:")
            line = await wait_printed_prefix(p2, "member p1 joined 127.0.0.1:")
            assert line == f"member p1 joined {join}"
            done = await cli("emit", "multi line", '{"text": "a\\nb", "n": [1, 2]}', "--join", join)
            assert done.stdout.decode() == "event 'multi line' sent to 2 nodes: p1, p2\n"
            for proc in (p1, p2):
                await wait_printed(proc, 'event "multi line" from p1: {"text": "a\\nb", "n": [1, 2]}')

            async def member_ids(*options: str) -> list[str]:
                done = await cli("members", "--join", join, "--json", *options)
                assert done.returncode == 0, done.stderr
                return sorted(m["id"] for m in json.loads(done.stdout))

            assert await member_ids() == ["p1", "p2"]
            assert await member_ids("--tag", "role=db") == ["p2"]
            assert await member_ids("--tag", "zone=eu-.*") == ["p2"]
            assert await member_ids("--tag", "zone=eu") == []  # the whole value must match
            assert await member_ids("--tag", "role=db|cache", "--tag", "zone=us.*") == []  # all must match
            assert await member_ids("--tag", "nosuch=.*") == []  # a missing tag matches nothing
            assert await member_ids("--state", "alive") == ["p1", "p2"]
            assert await member_ids("--state", "left", "--state", "failed") == []
            table = (await cli("members", "--join", join, "--tag", "role=d.")).stdout.decode().splitlines()
            assert [row.split()[0] for row in table] == ["ID", "p2"]

            assert await p2.stop() == 0
            await wait_printed(p1, f"member p2 left {p2_address(p1)} role=db zone=eu-1")


def p2_address(p1: LoggedProcess) -> str:
    joined = next(line for line in p1.lines if line.startswith("member p2 joined "))
    return joined.split()[3]


async def test_watch_joins_a_running_cluster_and_prints_its_events() -> None:
    port = free_port()
    join = f"127.0.0.1:{port}"
    with anyio.fail_after(60):
        async with running(["node", str(port), "--id", "n1"], ["watch", "--join", join, "--id", "w"]) as (
            (node, watch),
            tg,
        ):
            await node.start(tg)
            await node.wait_line("started a new cluster")
            await watch.start(tg)
            await watch.wait_line("pydevts: watching cluster 'default' as member w at 127.0.0.1:")
            await wait_printed(watch, f"member n1 joined {join}")
            await node.wait_line("member w joined")
            done = await cli("emit", "deploy", '{"v": 3}', "--join", join)
            assert done.stdout.decode() == "event 'deploy' sent to 2 nodes: n1, w\n"
            await wait_printed(watch, 'event "deploy" from n1: {"v": 3}')
            assert await watch.stop() == 0
            await node.wait_line("member w left")


async def test_watch_without_a_cluster_fails_rather_than_starting_one() -> None:
    done = await cli("watch", "--join", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("pydevts: error: ")
    assert b"Traceback" not in done.stderr


async def test_a_printing_node_leaves_when_its_stdout_is_closed() -> None:
    port = free_port()
    with anyio.fail_after(60):
        read_end, write_end = os.pipe()
        try:
            process = await anyio.open_process(
                [*PYDEVTS, "node", str(port), "--id", "q", "--print-events"],
                stdout=write_end,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(read_end)  # `| head -0`: nobody will ever read the node's stdout
            os.close(write_end)
        try:
            assert process.stderr is not None
            await wait_listening(port)
            done = await cli("emit", "hello", "--join", f"127.0.0.1:{port}")
            assert done.returncode == 0, done.stderr
            assert await process.wait() == 0
            log = b"".join([chunk async for chunk in process.stderr]).decode()
            assert "stdout is closed: leaving the cluster" in log and "Traceback" not in log
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
                await process.aclose()


async def test_client_against_a_cluster_on_another_transport_gets_a_hint() -> None:
    port = free_port()
    with anyio.fail_after(60):
        async with running(["node", str(port), "--transport", "quic"]) as ((node,), tg):
            await node.start(tg)
            await wait_listening(port, transport="quic")
            done = await cli("members", "--join", f"127.0.0.1:{port}")
            assert done.returncode == 1
            error = done.stderr.decode()
            assert error.startswith("pydevts: error: cannot connect to 127.0.0.1:")
            assert (
                f"nothing answered over tcp at 127.0.0.1:{port}; "
                "is the cluster using another transport (--transport quic)?"
            ) in error
            done = await cli("members", "--join", f"127.0.0.1:{port}", "--transport", "quic", "--json")
            assert done.returncode == 0, done.stderr
            assert len(json.loads(done.stdout)) == 1
