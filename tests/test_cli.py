"""The `pydevts` command: node (three terminals), plugins, demo; and the quickstart example."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agents import LoggedProcess, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
PYDEVTS = [sys.executable, "-m", "pydevts"]

pytestmark = pytest.mark.slow


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives subprocesses; the nodes choose their own backend


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
    assert "router 'hopp' is not installed or misspelled — did you mean 'hop'" in done.stderr
    assert "pip install pydevts-hopp" not in done.stderr  # never suggest installing a typo


@pytest.mark.parametrize(("backend", "transport"), [("asyncio", "tcp"), ("trio", "tcp"), ("trio", "quic")])
def test_demo(backend: str, transport: str) -> None:
    done = subprocess.run(
        [*PYDEVTS, "demo", "--backend", backend, "--transport", transport],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "started a new cluster" in out and "all 3 nodes see 3 alive members" in out
    assert '"greet" from node-1' in out and '"ping" from node-3' in out and "reply from node-1" in out
    assert "node-1 saw it: left" in out
    assert f"({transport})" in out


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["tcp", "quic"])
async def test_quickstart_example(transport: str) -> None:
    port = free_port()
    script = str(ROOT / "examples" / "quickstart.py")
    first = LoggedProcess([sys.executable, script, str(port), "--transport", transport])
    second = LoggedProcess([sys.executable, script, str(port), "--backend", "trio", "--transport", transport])
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            try:
                await first.start(tg)
                await wait_listening(port, transport=transport)  # the first one starts the cluster
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


def test_pickle_serializer_refuses_to_start_without_the_trust_flag() -> None:
    done = subprocess.run(
        [*PYDEVTS, "node", str(free_port()), "--serializer", "pickle"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "executes code sent by other nodes" in done.stderr and "--trusted-cluster" in done.stderr


def test_pickle_serializer_refuses_an_open_cluster() -> None:
    done = subprocess.run(
        [*PYDEVTS, "node", str(free_port()), "--serializer", "pickle", "--trusted-cluster"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "needs a cluster keyring" in done.stderr and "--keyring PATH" in done.stderr, done.stderr


@pytest.mark.anyio
async def test_pickle_serializer_runs_with_the_trust_flag_and_a_keyring(tmp_path: Path) -> None:
    port = free_port()
    key = (await anyio.run_process([*PYDEVTS, "keygen"])).stdout.decode()
    assert len(base64.b64decode(key.strip(), validate=True)) == 32
    ring = tmp_path / "cluster.key"
    ring.write_text(key)
    proc = LoggedProcess(
        [*PYDEVTS, "node", str(port), "--serializer", "pickle", "--trusted-cluster", "--keyring", str(ring)]
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            try:
                await proc.start(tg)
                await proc.wait_line("started a new cluster")
                assert await proc.stop() == 0
            finally:
                with anyio.CancelScope(shield=True):
                    await proc.stop()
                tg.cancel_scope.cancel()
