"""Links that resume without loss, on real TCP between two processes (pydevts.wire.session).

While one process sends numbered events at full speed, the test destroys
every TCP connection between the two nodes again and again (``ss -K``, as a
reset or a middlebox timing out would); the receiver must count every number
exactly once and in order.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from agents import LoggedProcess, free_port, wait_listening

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "lossless_node.py")


def kill_connections(*ports: int) -> int:
    """Destroy the TCP sockets on 127.0.0.1 to or from ``ports``; how many were ESTABLISHED."""
    ends = " or ".join(f"dport = :{p} or sport = :{p}" for p in ports)
    result = subprocess.run(
        ["ss", "-K", "-t", "-n", "state", "established", f"( {ends} )"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return sum(1 for line in result.stdout.splitlines() if "127.0.0.1" in line)


def counted(proc: LoggedProcess) -> tuple[int, bool]:
    last = [line for line in proc.lines if line.startswith("got ")]
    if not last:
        return 0, True
    _, count, ordered = last[-1].split()
    return int(count), ordered == "True"


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to destroy sockets")
async def test_numbered_events_survive_destroyed_tcp_connections(anyio_backend: str) -> None:
    port, other = free_port(), free_port()
    recv = LoggedProcess([sys.executable, SCRIPT, "receive", str(port), anyio_backend])
    send = LoggedProcess([sys.executable, SCRIPT, "send", str(port), anyio_backend, "4", str(other)])
    kills = 0
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            try:
                await recv.start(tg)
                await recv.wait_line("ready")
                await wait_listening(port)
                await send.start(tg)
                await send.wait_line("ready")
                await recv.wait_line("got", timeout=15)
                for _ in range(15):
                    await anyio.sleep(0.15)
                    kills += kill_connections(port, other) and 1  # either may be dialled
                    if send.process is not None and send.process.returncode is not None:
                        break
                line = await send.wait_line("sent ", timeout=30)
                sent = int(line.split()[1])
                with anyio.move_on_after(30):
                    while counted(recv)[0] < sent:
                        await anyio.sleep(0.05)
                count, ordered = counted(recv)
                assert (count, ordered) == (sent, True), f"sent {sent}, received {count}, in order: {ordered}"
                assert kills >= 5, f"only {kills} of the kills found a connection"
                assert sent > 1000
            finally:
                with anyio.CancelScope(shield=True):
                    await send.stop()
                    await recv.stop()
                tg.cancel_scope.cancel()
