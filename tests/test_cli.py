"""The `pydevts` command: node (three terminals), plugins, demo; and the quickstart example."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agents import free_port

ROOT = Path(__file__).resolve().parents[1]
PYDEVTS = [sys.executable, "-m", "pydevts"]

pytestmark = pytest.mark.slow


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives subprocesses; the nodes choose their own backend


class LoggedProcess:
    """A subprocess whose merged output is collected line by line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.process: anyio.abc.Process | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.process = await anyio.open_process(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        tg.start_soon(self._read)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        buf = b""
        async for chunk in self.process.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.lines.extend(line.decode() for line in lines)

    async def wait_line(self, *parts: str, timeout: float = 15) -> str:
        with anyio.move_on_after(timeout):
            while True:
                for line in self.lines:
                    if all(p in line for p in parts):
                        return line
                await anyio.sleep(0.02)
        raise AssertionError(f"no line with {parts} in {self.argv}: {self.lines[-20:]}")

    async def stop(self) -> int:
        process = self.process
        assert process is not None
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        return process.returncode if process.returncode is not None else -9


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_three_terminals(backend: str) -> None:
    port = free_port()
    procs = [
        LoggedProcess([*PYDEVTS, "node", str(port), "--id", f"t{i}", "--backend", backend]) for i in (1, 2, 3)
    ]
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            try:
                await procs[0].start(tg)
                await procs[0].wait_line(
                    "INFO", f"started a new cluster 'default' on cluster port 127.0.0.1:{port}"
                )
                for proc in procs[1:]:
                    await proc.start(tg)
                for proc in procs[1:]:
                    line = await proc.wait_line(
                        "INFO", "joined cluster 'default' through cluster port", "listening on"
                    )
                    assert f"127.0.0.1:{port}" in line
                for me in procs:
                    others = [p for p in procs if p is not me]
                    for other in others:
                        await me.wait_line("member", f"{other.argv[other.argv.index('--id') + 1]} joined")
                assert await procs[1].stop() == 0
                await procs[0].wait_line("member t2 left")
                await procs[2].wait_line("member t2 left")
            finally:
                with anyio.CancelScope(shield=True):
                    for proc in procs:
                        if proc.process is not None:
                            await proc.stop()
                tg.cancel_scope.cancel()


def test_plugins_lists_kind_name_distribution_version() -> None:
    out = subprocess.run([*PYDEVTS, "plugins"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines()[0].split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION"]
    rows = {tuple(line.split()) for line in out.splitlines()[1:]}
    assert ("transport", "tcp", "pydevts-tcp", "0.3.0") in rows
    assert ("router", "peer", "pydevts-peer", "0.3.0") in rows
    assert ("serializer", "msgpack", "pydevts-msgpack", "0.3.0") in rows
    data = json.loads(
        subprocess.run(
            [*PYDEVTS, "plugins", "--json"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    assert {"kind": "transport", "name": "tcp", "distribution": "pydevts-tcp", "version": "0.3.0"} in data[
        "plugins"
    ]
    off = subprocess.run(
        [*PYDEVTS, "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYDEVTS_DISABLE_PLUGIN_AUTOLOAD": "1"},
    ).stdout
    assert json.loads(off)["plugins"] == []


def test_unknown_plugin_name_is_a_clear_error() -> None:
    done = subprocess.run(
        [*PYDEVTS, "node", str(free_port()), "--router", "hopp"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "router 'hopp' is not installed or misspelled" in done.stderr
    assert "pip install pydevts-hopp" in done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo(backend: str) -> None:
    done = subprocess.run(
        [*PYDEVTS, "demo", "--backend", backend], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "started a new cluster" in out and "all 3 nodes see 3 alive members" in out
    assert '"greet" from node-1' in out and '"ping" from node-3' in out and "reply from node-1" in out
    assert "node-1 saw it: left" in out


async def wait_listening(port: int, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)
                continue
            await stream.aclose()
            return


@pytest.mark.anyio
async def test_quickstart_example() -> None:
    port = free_port()
    script = str(ROOT / "examples" / "quickstart.py")
    first = LoggedProcess([sys.executable, script, str(port)])
    second = LoggedProcess([sys.executable, script, str(port), "--backend", "trio"])
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            try:
                await first.start(tg)
                await wait_listening(port)  # so that the first one is the one that starts the cluster
                await second.start(tg)
                await second.wait_line("added 1+2+3 = 6")
                await first.wait_line("says 'hello from")
                await first.wait_line("says 'just for you'")
            finally:
                with anyio.CancelScope(shield=True):
                    for proc in (first, second):
                        if proc.process is not None:
                            await proc.stop()
                tg.cancel_scope.cancel()
