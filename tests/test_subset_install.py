"""Only core + tcp + peer + msgpack, from locally built wheels, in a fresh venv, make a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agents import AgentProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
DISTS = ["pydevts_core", "pydevts_transports/tcp", "pydevts_routers/peer", "pydevts_serializers/msgpack"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _run(*cmd: str | Path, timeout: float = 300) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def subset_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("subset")
    wheels = tmp / "wheels"
    for dist in DISTS:
        _run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            wheels,
            ROOT / dist,
        )
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == [
        "pydevts_core",
        "pydevts_msgpack",
        "pydevts_peer",
        "pydevts_tcp",
    ], built
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # Explicit wheel paths: pip can never resolve our names to the unrelated pydevts 0.1.1 on the index.
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *built)
    return python


def test_subset_has_only_what_it_needs(subset_venv: Path) -> None:
    listed = _run(subset_venv, "-m", "pip", "list", "--format=freeze").lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert {"pydevts-core", "pydevts-tcp", "pydevts-peer", "pydevts-msgpack"} <= names
    assert "aioquic" not in names and "pydevts" not in names
    plugins = _run(subset_venv.parent / "pydevts", "plugins")
    assert "tcp" in plugins and "peer" in plugins and "msgpack" in plugins
    missing = subprocess.run(
        [
            subset_venv,
            "-c",
            "import pydevts, anyio; from pydevts import Node\n"
            "async def main():\n"
            "    async with Node(1, transport='quic'): pass\n"
            "anyio.run(main)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "pip install pydevts-quic" in missing.stderr


@pytest.mark.anyio
async def test_subset_two_node_cluster(subset_venv: Path) -> None:
    port = free_port()
    a = AgentProcess("a", [str(port), "--id", "a"], python=str(subset_venv))
    b = AgentProcess("b", [str(port), "--id", "b"], python=str(subset_venv))
    with anyio.fail_after(60):
        try:
            async with anyio.create_task_group() as tg:
                await a.start(tg)
                await a.wait_for(lambda e: e.get("ev") == "started", 20, "start")
                await b.start(tg)
                await b.wait_for(lambda e: e.get("ev") == "started", 20, "start")
                await a.wait_for(lambda e: e.get("ev") == "member" and e["id"] == "b", 20, "b joined")
                reply = await b.call(op="request", to="a", name="ping", payload="hi", timeout=5)
                assert reply["ok"] and reply["value"] == {"echo": "hi", "by": "a"}
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await a.stop(5)
                await b.stop(5)
