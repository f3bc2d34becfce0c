"""Three `pydevts node --keyring` processes: outsiders (a node, members, emit, a datagram) are refused.

Then `pydevts keys` rotates the key of the running processes, which write their keyring files back.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import anyio
import pytest
from agents import LoggedProcess, free_port

PYDEVTS = [sys.executable, "-m", "pydevts"]

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives subprocesses; the nodes choose their own backend


async def cli(*args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([*PYDEVTS, *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def keygen() -> str:
    code, out, _ = await cli("keygen")
    assert code == 0
    return out.strip()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_a_keyed_cluster_refuses_every_outsider_and_rotates_its_key(
    tmp_path: Path, backend: str
) -> None:
    port = free_port()
    key, wrong, new = await keygen(), await keygen(), await keygen()
    ring, bad = tmp_path / "ring", tmp_path / "bad"
    ring.write_text(f"{key}\n")
    bad.write_text(f"{wrong}\n")
    rings = [tmp_path / f"n{i}.ring" for i in (1, 2, 3)]
    for path in rings:
        path.write_text(f"{key}\n")
    join = f"127.0.0.1:{port}"
    options = ["--cluster", "secret-name", "--backend", backend]
    procs = [
        LoggedProcess(
            [*PYDEVTS, "node", str(port), "--id", f"n{i}", "--keyring", str(rings[i - 1]), *options]
        )
        for i in (1, 2, 3)
    ]
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            try:
                for proc in procs:
                    await proc.start(tg)
                    await proc.wait_line("INFO", "running at")
                for proc in procs:
                    for other in ("n1", "n2", "n3"):
                        if f"--id {other}" not in " ".join(proc.argv):
                            await proc.wait_line(f"member {other} joined")
                assert not any("OPEN cluster" in line for p in procs for line in p.lines)

                # a node without the key
                code, _, err = await cli(
                    "node", str(port), "--id", "x", "--join-only", "--cluster", "secret-name"
                )
                assert code == 1 and "this cluster requires a key" in err, err
                code, _, err = await cli("node", str(port), "--id", "y", "--join-only", "--keyring", str(bad))
                assert code == 1 and "no key in common" in err and "secret-name" not in err, err
                # members and emit without the key, and with the wrong one
                for extra in ([], ["--keyring", str(bad)]):
                    code, out, err = await cli("members", "--join", join, "--cluster", "secret-name", *extra)
                    assert code == 1 and "not authenticated" in err and not out, err
                    code, out, err = await cli("emit", "boom", "1", "--join", join, *extra)
                    assert code == 1 and "not authenticated" in err, err
                # a datagram without the key
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoof:
                    spoof.sendto(b"\x82\xa1t\xa5alive\xa1m\x90", ("127.0.0.1", port))
                await procs[0].wait_line("dropped a datagram")

                # with the key: the members, then an event
                code, out, err = await cli(
                    "members", "--join", join, "--cluster", "secret-name", "--keyring", str(ring)
                )
                assert code == 0, err
                assert sorted(line.split()[0] for line in out.splitlines()[1:]) == ["n1", "n2", "n3"]
                assert all(line.split()[2] == "alive" for line in out.splitlines()[1:]), out

                # rotation through one node, as documented
                for op, k in (("install", new), ("use", new), ("remove", key)):
                    code, out, err = await cli(
                        "keys", op, k, "--join", join, "--cluster", "secret-name", "--keyring", str(ring)
                    )
                    assert code == 0 and f"{op}: done on 3 of 3 members" in out, (out, err)
                    ring.write_text(
                        f"{key}\n{new}\n" if op == "install" else f"{new}\n"
                    )  # the client's own copy
                code, out, err = await cli(
                    "keys", "list", "--join", join, "--cluster", "secret-name", "--keyring", str(ring)
                )
                assert code == 0 and "1/3" not in out and "3/3" in out and len(out.splitlines()) == 2, (
                    out,
                    err,
                )
                for path in rings:
                    assert path.read_text() == f"{new}\n"
                code, _, err = await cli(
                    "members", "--join", join, "--cluster", "secret-name", "--keyring", str(bad)
                )
                assert code == 1
            finally:
                with anyio.CancelScope(shield=True):
                    for proc in procs:
                        if proc.process is not None:
                            await proc.stop()
                tg.cancel_scope.cancel()
