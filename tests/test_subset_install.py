"""Each install set, from locally built wheels, in a fresh venv of its own, works on its own.

The sets: the default (the ``pydevts`` meta-distribution), QUIC, hop and
pickle. Each venv gets only its set's wheels (our distributions, given as
explicit wheel paths, so pip never resolves one of our names to the index,
where ``pydevts`` 0.1.1 is an unrelated project) plus the third-party
dependencies they declare, from the package index. A dependency a
distribution forgot to declare is then missing, and the set's imports,
``pydevts plugins`` or cluster fail; ``test_every_import_is_declared`` also
reads every import in every wheel, including those a set never runs.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from agents import AgentProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.0"

#: Source folder of each distribution (the root folder is the ``pydevts`` meta-distribution).
FOLDERS = {
    "pydevts": ROOT,
    "pydevts-core": ROOT / "pydevts_core",
    "pydevts-tcp": ROOT / "pydevts_transports/tcp",
    "pydevts-quic": ROOT / "pydevts_transports/quic",
    "pydevts-peer": ROOT / "pydevts_routers/peer",
    "pydevts-hop": ROOT / "pydevts_routers/hop",
    "pydevts-msgpack": ROOT / "pydevts_serializers/msgpack",
    "pydevts-pickle": ROOT / "pydevts_serializers/pickle",
    "pydevts-prometheus": ROOT / "pydevts_plugins/prometheus",
    "pydevts-otel": ROOT / "pydevts_plugins/otel",
}

#: Each set: our distributions in it (exactly these get installed), and plugins it must offer.
SETS: dict[str, dict[str, Any]] = {
    "default": {
        "dists": {"pydevts", "pydevts-core", "pydevts-tcp", "pydevts-peer", "pydevts-msgpack"},
        "plugins": {("transport", "tcp"), ("router", "peer"), ("serializer", "msgpack")},
        "absent": {"aioquic", "pydevts-quic", "pydevts-hop", "pydevts-pickle"},
    },
    "quic": {
        "dists": {"pydevts-core", "pydevts-quic", "pydevts-peer", "pydevts-msgpack"},
        "plugins": {("transport", "quic"), ("router", "peer"), ("serializer", "msgpack")},
        "absent": {"pydevts-tcp", "sniffio"},  # sniffio: what pydevts-quic once imported undeclared
    },
    "hop": {
        "dists": {"pydevts-core", "pydevts-tcp", "pydevts-hop", "pydevts-msgpack"},
        "plugins": {("transport", "tcp"), ("router", "hop"), ("serializer", "msgpack")},
        "absent": {"aioquic", "pydevts-peer"},
    },
    "pickle": {
        "dists": {"pydevts-core", "pydevts-tcp", "pydevts-peer", "pydevts-pickle"},
        "plugins": {("transport", "tcp"), ("router", "peer"), ("serializer", "pickle")},
        "absent": {"msgpack", "aioquic", "pydevts-msgpack"},
    },
    "analytics": {
        "dists": {
            "pydevts-core",
            "pydevts-tcp",
            "pydevts-peer",
            "pydevts-msgpack",
            "pydevts-prometheus",
            "pydevts-otel",
        },
        "plugins": {("connection_plugin", "prometheus"), ("connection_plugin", "otel"), ("router", "peer")},
        "absent": {"aioquic", "pydevts-hop", "opentelemetry-sdk"},  # the otel plugin needs only the API
    },
}

#: Imports a distribution may make without declaring them: only ever reached when already there.
UNDECLARED_OK = {"pydevts-quic": {"trio"}}  # _spawn.py imports trio only when running on trio

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the fresh venvs have no trio (nothing there depends on it)


def _run(*cmd: str | Path, timeout: float = 240) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line)
    assert done.returncode == 0, f"{[str(c) for c in cmd]} failed:\n{output}"
    return done.stdout


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_name(path: Path) -> str:
    return _normalize(path.name.split("-")[0])


# ----------------------------------------------------------------------------- building and installing


class Installs:
    """All wheels, built once; then each set's venv, made in the background (pip waits on the network)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        wheels = tmp / "wheels"
        _run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            wheels,
            *FOLDERS.values(),
        )
        self.wheels = {_wheel_name(w): w for w in wheels.glob("*.whl")}
        assert set(self.wheels) == set(FOLDERS), sorted(self.wheels)
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._venvs: dict[str, Future[Path]] = {name: self._pool.submit(self._make, name) for name in SETS}

    def _make(self, name: str) -> Path:
        venv = self.tmp / f"venv-{name}"
        # No pip inside (ensurepip costs seconds per venv): this process's pip installs into it.
        _run(sys.executable, "-m", "venv", "--without-pip", venv)
        python = venv / "bin" / "python"
        mine = [self.wheels[dist] for dist in sorted(SETS[name]["dists"])]
        _run(
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            *mine,
        )
        return python

    def python(self, name: str) -> Path:
        return self._venvs[name].result(timeout=280)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installs]:
    made = Installs(tmp_path_factory.mktemp("subsets"))
    try:
        yield made
    finally:
        made.close()


INSPECT = r"""
import importlib, importlib.metadata as md, json, pkgutil
dists, failed = {}, {}
for d in md.distributions():
    name = d.metadata["Name"]
    direct = d.read_text("direct_url.json")
    dists[name] = {"version": d.version, "url": json.loads(direct)["url"] if direct else None}
    if not name.lower().startswith("pydevts"):
        continue
    tops = {str(f).split("/")[0] for f in d.files or () if str(f).endswith(".py") and "/" in str(f)}
    for top in sorted(tops):
        try:
            package = importlib.import_module(top)
        except Exception as exc:
            failed[top] = f"{type(exc).__name__}: {exc}"
            continue
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), top + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue  # runs the program
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"dists": dists, "failed": failed}))
"""


@pytest.mark.parametrize("name", list(SETS))
def test_a_set_installs_exactly_its_distributions_and_all_of_them_import(
    installs: Installs, name: str
) -> None:
    spec = SETS[name]
    python = installs.python(name)
    seen = json.loads(_run(python, "-c", INSPECT))
    dists = {_normalize(n): info for n, info in seen["dists"].items()}
    ours = {n for n in dists if n.startswith("pydevts")}
    assert ours == spec["dists"], f"{name}: installed {sorted(ours)}"
    for dist in ours:  # from our wheels, never from the index (an unrelated pydevts 0.1.1 lives there)
        assert dists[dist]["version"] == VERSION, (dist, dists[dist])
        assert dists[dist]["url"] == installs.wheels[dist].as_uri(), (dist, dists[dist])
    assert not spec["absent"] & set(dists), f"{name}: should not have {sorted(spec['absent'] & set(dists))}"
    assert seen["failed"] == {}, f"{name}: modules that do not import: {seen['failed']}"

    listed = _run(python.parent / "pydevts", "plugins")
    assert "broken" not in listed, listed
    report = json.loads(_run(python.parent / "pydevts", "plugins", "--json"))
    offered = {(p["kind"], p["name"]) for p in report["plugins"]}
    assert spec["plugins"] <= offered and report["broken"] == [], report
    for kind, plugin in spec["plugins"]:
        assert re.search(rf"^{kind}\s+{plugin}\s", listed, re.MULTILINE), listed


# ----------------------------------------------------------------------------- clusters


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _two_node_cluster(python: Path, port: int, *options: str) -> None:
    a = AgentProcess("a", [str(port), "--id", "a", *options], python=str(python))
    b = AgentProcess("b", [str(port), "--id", "b", *options], python=str(python))
    with anyio.fail_after(60):
        try:
            async with anyio.create_task_group() as tg:
                await a.start(tg)
                started = await a.wait_for(lambda e: e.get("ev") == "started", 20, "a started")
                assert started["new_cluster"] is True
                await b.start(tg)
                await b.wait_for(lambda e: e.get("ev") == "started", 20, "b started")
                await a.wait_for(lambda e: e.get("ev") == "member" and e["id"] == "b", 20, "b joined")
                reply = await b.call(op="request", to="a", name="ping", payload="hi", timeout=5)
                assert reply["ok"] and reply["value"] == {"echo": "hi", "by": "a"}, reply
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await a.stop(5)
                await b.stop(5)


@pytest.mark.anyio
async def test_the_default_set_forms_a_cluster(installs: Installs) -> None:
    await _two_node_cluster(installs.python("default"), free_port())


@pytest.mark.anyio
async def test_the_quic_set_forms_a_cluster_over_quic(installs: Installs) -> None:
    await _two_node_cluster(installs.python("quic"), free_udp_port(), "--transport", "quic")


@pytest.mark.anyio
async def test_the_hop_set_forms_a_cluster_with_the_hop_router(installs: Installs) -> None:
    await _two_node_cluster(installs.python("hop"), free_port(), "--router", "hop")


@pytest.mark.anyio
async def test_the_analytics_set_serves_metrics_and_traces(installs: Installs) -> None:
    metrics = free_port()
    plugins = ["--plugin", "prometheus", "--plugin-option", f"prometheus.port={metrics}", "--plugin", "otel"]
    both = ["--plugin", "prometheus", "--plugin-option", "prometheus.port=0", "--plugin", "otel"]
    await _two_node_cluster(installs.python("analytics"), free_port(), *both)
    port = free_port()
    node = AgentProcess("m", [str(port), "--id", "m", *plugins], python=str(installs.python("analytics")))
    with anyio.fail_after(60):
        try:
            async with anyio.create_task_group() as tg:
                await node.start(tg)
                await node.wait_for(lambda e: e.get("ev") == "started", 20, "the node started")
                async with httpx.AsyncClient() as client:
                    scraped = (await client.get(f"http://127.0.0.1:{metrics}/metrics")).text
                assert 'pydevts_members{state="alive"} 1.0' in scraped, scraped[:2000]
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await node.stop(5)


@pytest.mark.anyio
async def test_the_pickle_set_runs_a_pickle_node(installs: Installs, tmp_path: Path) -> None:
    python = installs.python("pickle")
    port = free_port()
    keygen = await anyio.run_process([str(python.parent / "pydevts"), "keygen"])  # pickle needs a keyring
    ring = tmp_path / "cluster.key"
    ring.write_bytes(keygen.stdout)
    options = ["--serializer", "pickle", "--trusted-cluster", "--keyring", str(ring)]
    node = AgentProcess("p", [str(port), "--id", "p", *options], python=str(python))
    with anyio.fail_after(60):
        try:
            async with anyio.create_task_group() as tg:
                await node.start(tg)
                await node.wait_for(lambda e: e.get("ev") == "started", 20, "the pickle node started")
                # the CLI speaks pickle to it too (the handshake refuses a serializer that differs)
                cli = [str(python.parent / "pydevts"), "members", "--join", f"127.0.0.1:{port}", "--json"]
                done = await anyio.run_process([*cli, *options], check=False)
                assert done.returncode == 0, done.stderr.decode()
                assert [m["id"] for m in json.loads(done.stdout)] == ["p"]
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await node.stop(5)


def test_a_set_without_a_plugin_says_how_to_get_it(installs: Installs) -> None:
    missing = subprocess.run(
        [
            str(installs.python("default")),
            "-c",
            "import anyio; from pydevts import Node\n"
            "async def main():\n"
            "    async with Node(1, transport='quic'): pass\n"
            "anyio.run(main)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "pip install pydevts-quic" in missing.stderr, missing.stderr


# ----------------------------------------------------------------------------- the wheels themselves


def _wheel_imports(wheel: Path) -> tuple[set[str], set[str]]:
    """Top-level names the wheel's modules import (anywhere in them), and the packages it ships."""
    imported: set[str] = set()
    shipped: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if not member.endswith(".py") or ".dist-info/" in member:
                continue
            shipped.add(member.split("/")[0])
            for node in ast.walk(ast.parse(zf.read(member), member)):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"__future__"}, shipped


def _declared(wheel: Path) -> set[str]:
    """Every distribution the wheel requires, extras included."""
    with zipfile.ZipFile(wheel) as zf:
        [metadata] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(zf.read(metadata).decode())
    return {
        _normalize(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0])
        for req in message.get_all("Requires-Dist") or []
    }


def test_every_import_is_declared(installs: Installs) -> None:
    provider = {top: {_normalize(d) for d in dists} for top, dists in packages_distributions().items()}
    shipped_by: dict[str, str] = {}
    imports: dict[str, set[str]] = {}
    for dist, wheel in installs.wheels.items():
        imports[dist], shipped = _wheel_imports(wheel)
        shipped_by.update(dict.fromkeys(shipped, dist))
    problems = []
    for dist, wheel in sorted(installs.wheels.items()):
        declared = _declared(wheel) | {dist}
        for module in sorted(imports[dist] - UNDECLARED_OK.get(dist, set())):
            owners = {shipped_by[module]} if module in shipped_by else provider.get(module, set())
            if not owners & declared:
                problems.append(
                    f"{dist} imports {module} (from {sorted(owners) or '?'}), not in {sorted(declared)}"
                )
    assert problems == [], "\n".join(problems)


def test_the_wheels_carry_the_license(installs: Installs) -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert b"MIT License" in text
    for dist, wheel in installs.wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            licenses = [n for n in zf.namelist() if ".dist-info/licenses/" in n]
            if dist in ("pydevts", "pydevts-quic") or (FOLDERS[dist] / "LICENSE").exists():
                assert [n.split("/", 2)[-1] for n in licenses] == ["LICENSE"], (dist, licenses)
                assert zf.read(licenses[0]) == text, f"{dist}: its LICENSE differs from the root one"
