"""`pydevts top`: the live view in a pseudo-terminal, `--once` without one, request latencies."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from agents import agents, free_port, wait_alive
from inproc import cluster, wait_until
from pydevts import Node
from pydevts.cli.top import render
from pydevts.node.inspect import RequestLatencies, parse_cluster
from pydevts.observe import MessageInfo
from pydevts.plugins import Registry, create_plugin_manager

PYDEVTS = [sys.executable, "-m", "pydevts"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUMBER = r"(-|[0-9.]+[kMG]?)"
LINK_ROW = re.compile(rf"^(\S+) -> (\S+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s")


# ------------------------------------------------------------------ a pseudo-terminal


class Terminal:
    """``pydevts top`` on the slave side of a pty; everything it writes, as it arrives."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.master, self.slave = pty.openpty()
        # a window big enough that nothing is cut
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
        self.output = b""
        self.process: anyio.abc.Process | None = None
        self.stderr = b""

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.process = await anyio.open_process(
            self.argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=subprocess.PIPE,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        tg.start_soon(self._read)
        tg.start_soon(self._read_stderr)

    async def _read(self) -> None:
        while True:
            await anyio.wait_readable(self.master)
            try:
                data = os.read(self.master, 65536)
            except OSError as exc:  # EIO: every slave end is closed
                if exc.errno == errno.EIO:
                    return
                raise
            if not data:
                return
            self.output += data

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk

    def screens(self) -> list[str]:
        """Every whole screen drawn so far, as plain text (a screen starts at cursor home)."""
        text = self.output.decode(errors="replace")
        parts = text.split("\x1b[H")[1:-1]  # the last one may still be arriving
        return [ANSI.sub("", part).replace("\r", "") for part in parts]

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def echo_and_canonical(self) -> bool:
        lflag = termios.tcgetattr(self.slave)[3]
        return bool(lflag & termios.ECHO and lflag & termios.ICANON)

    async def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with anyio.CancelScope(shield=True):
                await self.process.wait()

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@asynccontextmanager
async def top_in_terminal(argv: list[str]) -> AsyncIterator[Terminal]:
    term = Terminal(argv)
    try:
        async with anyio.create_task_group() as tg:
            await term.start(tg)
            try:
                yield term
            finally:
                await term.kill()
                tg.cancel_scope.cancel()
    finally:
        term.close()


async def wait_screen(term: Terminal, check: Any, timeout: float, what: str) -> str:
    with anyio.move_on_after(timeout):
        while True:
            for screen in reversed(term.screens()):
                if check(screen):
                    return screen
            await anyio.sleep(0.05)
    last = term.screens()[-1:] or [term.output[-2000:].decode(errors="replace")]
    raise AssertionError(f"no screen with {what} in {timeout:g} s; last: {last}; stderr: {term.stderr!r}")


def busy_links(screen: str) -> list[tuple[str, str]]:
    """The links whose FRAMES/S IN and OUT are both above zero."""
    found = []
    for line in screen.splitlines():
        m = LINK_ROW.match(line)
        if m and m[3] not in ("0", "-") and m[4] not in ("0", "-"):
            found.append((m[1], m[2]))
    return found


# ------------------------------------------------------------------ the live view


@pytest.mark.anyio
@pytest.mark.slow
async def test_top_in_a_pseudo_terminal_shows_members_and_busy_links_and_quits(anyio_backend: str) -> None:
    port = free_port()
    everyone = {"n1", "n2", "n3"}
    with anyio.fail_after(90):
        async with agents([("n1", [str(port), "--id", "n1"])], anyio_backend) as (n1,):
            await n1.wait_for(lambda e: e.get("ev") == "started", 15, "start")
            specs = [(n, [str(port), "--id", n]) for n in ("n2", "n3")]
            async with agents(specs, anyio_backend) as procs:
                for proc in (n1, *procs):
                    await wait_alive(proc, everyone, timeout=15)
                argv = [*PYDEVTS, "top", "--join", str(port), "--interval", "0.5", "--backend", anyio_backend]

                async def traffic() -> None:
                    i = 0
                    while True:
                        for proc in (n1, *procs):
                            await proc.command(op="emit", name="greet", payload=i)
                        i += 1
                        await anyio.sleep(0.05)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(traffic)
                    async with top_in_terminal(argv) as term:
                        screen = await wait_screen(
                            term,
                            lambda s: (
                                "members: 3 alive" in s
                                and "3 of 3 live answered" in s
                                and {a for a, _ in busy_links(s)} == everyone
                            ),
                            30,
                            "3 alive members and busy links from each node",
                        )
                        for node in everyone:
                            assert re.search(rf"^{node}\s+127\.0\.0\.1:\d+\s+alive", screen, re.M), screen
                        assert "\x1b[?1049h" in term.output.decode()  # the alternate screen
                        assert not term.echo_and_canonical()  # keys without Enter while it runs
                        term.send(b"q")
                        assert await term.wait_exit(10) == 0, term.stderr
                        assert term.output.decode().rstrip().endswith("\x1b[?1049l")  # screen given back
                        assert term.echo_and_canonical()  # the terminal is as it was
                    tg.cancel_scope.cancel()

                # Ctrl-C (SIGINT) quits too, and restores the terminal
                async with top_in_terminal(argv) as term:
                    await wait_screen(term, lambda s: "members: 3 alive" in s, 30, "a first screen")
                    assert term.process is not None
                    term.process.send_signal(signal.SIGINT)
                    assert await term.wait_exit(10) == 130, term.stderr
                    assert term.echo_and_canonical()
                    assert b"Traceback" not in term.stderr


# ------------------------------------------------------------------ --once, request latencies


@pytest.mark.anyio
async def test_top_once_without_a_tty_prints_plain_text_with_latencies() -> None:
    port = free_port()
    nodes = [
        Node(port, node_id=name, connection_plugins=[RequestLatencies()], request_timeout=5)
        for name in ("a", "b", "c")
    ]
    for node in nodes:

        @node.on("add")
        async def add(sender: str, payload: list[int]) -> int:
            return sum(payload)

    with anyio.fail_after(60):
        async with cluster(*nodes):

            async def traffic() -> None:
                while True:
                    for node in nodes:
                        for other in nodes:
                            if other is not node:
                                assert await node.request(other.id, "add", [1, 2]) == 3
                    await anyio.sleep(0.02)

            async with anyio.create_task_group() as tg:
                tg.start_soon(traffic)
                await wait_until(lambda: all(n.statistics()["requests_served"] >= 2 for n in nodes), 10)
                done = await anyio.run_process(
                    [*PYDEVTS, "top", "--join", nodes[1].address, "--once", "--interval", "0.3"], check=False
                )
                tg.cancel_scope.cancel()
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "\x1b" not in out  # plain text: no ANSI codes
    assert "members: 3 alive, 0 suspect, 0 failed, 0 left; 3 of 3 live answered" in out
    assert "REQUEST LATENCIES (requests each node sent)" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^[abc]\s+add\s", line)]
    assert {row[0] for row in rows} == {"a", "b", "c"}, out
    for _node, _name, rate, sent, not_ok, p50, p99 in rows:
        assert float(rate.rstrip("k")) > 0 and int(sent) > 0 and not_ok == "0"
        assert p50.endswith(("ms", "s")) and p99.endswith(("ms", "s"))
    assert len(busy_links(out)) >= 3, out  # rates over the interval between the two samples


def test_top_once_against_nothing_is_an_error_not_a_traceback() -> None:
    done = subprocess.run(
        [*PYDEVTS, "top", "--join", str(free_port()), "--once", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("pydevts: error:") and "Traceback" not in done.stderr


def test_request_latencies_are_bounded_per_name_and_in_names() -> None:
    plugin = RequestLatencies(names=3, keep=10)
    for i in range(100):
        plugin.on_request_done(MessageInfo("request", "get", "b", 10), (i + 1) / 1000, "ok")
    plugin.on_request_done(MessageInfo("request", "get", "b", 10), 1.0, "timeout")
    for name in ("put", "del", "scan", "list"):
        plugin.on_request_done(MessageInfo("request", name, "b", 10), 0.5, "error")
    summary = plugin.summary()
    assert set(summary["names"]) == {"get", "put", "del"} and summary["other"] == 2
    get = summary["names"]["get"]
    assert get["count"] == 101 and get["outcomes"] == {"ok": 100, "timeout": 1}
    assert get["samples"] == 10  # the last 10: 0.092 ... 0.100 and 1.0
    assert get["p50"] == pytest.approx(0.096) and get["p99"] == get["max"] == 1.0
    # `--plugin latencies` works once pydevts.node.inspect is an entry point (its hookimpl)
    import pydevts.node.inspect

    registry = Registry(create_plugin_manager([pydevts.node.inspect], autoload=False))
    assert isinstance(registry.create("connection_plugin", "latencies"), RequestLatencies)


def test_what_a_node_says_is_made_safe_for_the_terminal() -> None:
    evil = "x\x1b[2J\x07"
    snapshot = {
        "node": evil,
        "address": "127.0.0.1:1",
        "cluster": "c\x1b]0;title\x07",
        "router": "peer",
        "clock": 1.0,
        "statistics": {"events_received": 1},
        "links": [],
        "links_total": 0,
        "members": [{"id": evil, "address": "127.0.0.1:1", "tags": {}, "state": "alive"}],
        "latencies": {"names": {"\x1bq": {"count": 1, "outcomes": {"ok": 1}, "p50": 0.001, "p99": 0.001}}},
    }
    stats = parse_cluster({"asked": evil, "nodes": [snapshot], "missing": [{"id": "\x1b", "why": "\x1b"}]})
    text = "\n".join(render(stats, {}, target="127.0.0.1:1", interval=1.0))
    assert "\x1b" not in text and "\x07" not in text
    assert "x?[2J?" in text
