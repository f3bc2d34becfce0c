"""Ctrl-C (SIGINT) on the examples: they exit at once, quietly, with status 0, and leave the cluster.

Also while a node is still joining (through a port that accepts TCP and never
answers the handshake), and the FastAPI example with its HTTP port in use.
Each example runs as a real process on loopback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from agents import free_port
from anyio.abc import SocketAttribute
from pydevts import MemberEvent, Node
from pydevts.errors import PydevtsError
from pydevts.node.client import NodeClient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXIT_WITHIN = 2.0  # seconds from SIGINT to exit (generous: a shared machine; usually 30-200 ms)
# the examples' demo keyring (examples/picklenode.py makes it on first use)
DEMO_KEYRING = str(Path(tempfile.gettempdir()) / f"pydevts-examples-{os.getuid()}.keyring")
PICKLE: dict[str, Any] = {
    "serializer": "pickle",
    "serializer_options": {"trusted": True},
    "keyring": DEMO_KEYRING,
}

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives processes; each example picks its own event loop


class Example:
    """An example running as a process; stdout and stderr are collected line by line."""

    def __init__(self, name: str, *args: object, cwd: Path | None = None) -> None:
        program = ["-m", "pydevts", "node"] if name == "pydevts node" else [str(EXAMPLES / name)]
        self.argv = [sys.executable, *program, *map(str, args)]
        self.name = " ".join([name, *map(str, args)])
        self.cwd = cwd
        self.out: list[str] = []
        self.err: list[str] = []
        self.process: anyio.abc.Process | None = None
        self._eof = [anyio.Event(), anyio.Event()]

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.process = await anyio.open_process(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=self.cwd,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        tg.start_soon(self._read, self.process.stdout, self.out, self._eof[0])
        tg.start_soon(self._read, self.process.stderr, self.err, self._eof[1])

    @staticmethod
    async def _read(stream: anyio.abc.ByteReceiveStream, lines: list[str], eof: anyio.Event) -> None:
        buf = b""
        try:
            async for chunk in stream:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                lines.extend(line.decode(errors="replace") for line in complete)
        finally:
            if buf:
                lines.append(buf.decode(errors="replace"))
            eof.set()

    def line(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in self.out if (m := re.search(pattern, line))), None)

    async def wait_line(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        await wait_for(lambda: self.line(pattern) is not None, f"{pattern!r} from {self.name}", timeout)
        found = self.line(pattern)
        assert found is not None
        return found

    async def interrupt(self) -> float:
        """SIGINT; return the seconds until the process exited (killed after 10 s)."""
        process = self.process
        assert process is not None and process.returncode is None, self.report()
        started = anyio.current_time()
        process.send_signal(signal.SIGINT)
        with anyio.move_on_after(10):
            await process.wait()
        elapsed = anyio.current_time() - started
        if process.returncode is None:
            process.kill()
            await process.wait()
        with anyio.move_on_after(5):
            for eof in self._eof:
                await eof.wait()
        return elapsed

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        with anyio.fail_after(timeout):
            code = await self.process.wait()
            for eof in self._eof:
                await eof.wait()
        return code

    async def stop(self) -> None:
        """Make sure the process is gone (the tests' cleanup)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()

    def report(self) -> str:
        code = self.process.returncode if self.process is not None else None
        out, err = "\n".join(self.out), "\n".join(self.err)
        return f"{self.name}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"


def assert_quiet_exit(proc: Example, elapsed: float) -> None:
    assert proc.process is not None and proc.process.returncode == 0, proc.report()
    output = "\n".join(proc.out + proc.err)
    assert "Traceback" not in output and "ExceptionGroup" not in output, proc.report()
    assert elapsed < EXIT_WITHIN, f"{proc.name} took {elapsed:.2f} s to exit on SIGINT\n{proc.report()}"
    print(f"{proc.name}: exited {elapsed * 1000:.0f} ms after SIGINT")


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def states(port: int, **options: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """The members (id -> state, tags) as the node at ``port`` sees them."""
    async with NodeClient(f"127.0.0.1:{port}", timeout=2, **options) as client:
        return {m.id: (m.state.value, m.tags) for m in await client.members()}


async def poll_states(
    port: int, done: Callable[[dict[str, tuple[str, dict[str, str]]]], bool], what: str, **options: Any
) -> dict[str, tuple[str, dict[str, str]]]:
    """Ask the node at ``port`` for its members until ``done(members)`` (it may not be up yet)."""
    last: dict[str, tuple[str, dict[str, str]]] = {}
    with anyio.move_on_after(20):
        while True:
            try:
                last = await states(port, **options)
            except (PydevtsError, OSError):
                pass
            else:
                if done(last):
                    return last
            await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last members: {last}")


async def left(port: int, node_id: str, **options: Any) -> str:
    """The state the node at ``port`` settles on for ``node_id`` once it is no longer alive."""
    final = await poll_states(
        port,
        lambda m: m.get(node_id, ("alive", {}))[0] not in ("alive", "suspect"),
        f"{node_id} to be gone",
        **options,
    )
    return final[node_id][0]


async def run(body: Callable[[anyio.abc.TaskGroup], Awaitable[None]], *procs: Example) -> None:
    """Run ``body`` with a task group for the processes' readers; every process is gone afterwards."""
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            try:
                await body(tg)
            finally:
                for proc in procs:
                    await proc.stop()
                tg.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_cancelled_node_leaves_at_once_and_still_reports_stopping() -> None:
    """What Ctrl-C does to ``tg.start(node.serve)``: the caller's task group is cancelled.

    The node's lifecycle runner used to be cancelled with it, so "stopping" never
    reached the callbacks and stop() waited 1 s for it (the quickstart's 1.05 s exit).
    """
    port = free_port()
    observer, node = Node(port, node_id="observer"), Node(port, node_id="node")
    seen: list[tuple[str, str]] = []
    kinds: list[str] = []

    @observer.on_lifecycle
    async def observe(event: MemberEvent) -> None:
        seen.append((event.kind, event.member.id))

    @node.on_lifecycle
    async def record(event: MemberEvent) -> None:
        kinds.append(event.kind)

    with anyio.fail_after(20):
        async with observer:
            async with anyio.create_task_group() as tg:
                await tg.start(node.serve)
                await wait_for(lambda: ("joined", "node") in seen, "the node to join")
                tg.cancel_scope.cancel()
                started = anyio.current_time()
            elapsed = anyio.current_time() - started
            assert "started" in kinds and kinds[-1] == "stopping", kinds
            assert elapsed < 0.5, f"a cancelled node took {elapsed:.2f} s to stop"
            await wait_for(lambda: ("left", "node") in seen, "the observer to see it leave", 5)
            assert ("failed", "node") not in seen


@pytest.mark.parametrize(("backend", "transport"), [("asyncio", "tcp"), ("trio", "tcp"), ("asyncio", "quic")])
async def test_quickstart_ctrl_c_leaves_quietly_at_once(backend: str, transport: str) -> None:
    port = free_port()
    options = ("--backend", backend, "--transport", transport)
    first = Example("quickstart.py", port, *options)
    second = Example("quickstart.py", port, *options)

    async def body(tg: anyio.abc.TaskGroup) -> None:
        await first.start(tg)
        await poll_states(port, lambda m: len(m) == 1, "the first node", transport=transport)
        await second.start(tg)
        await second.wait_line(r"added 1\+2\+3 = 6")
        second_id = (await first.wait_line(r"(\w+) says 'hello from \1'")).group(1)
        assert_quiet_exit(second, await second.interrupt())
        assert await left(port, second_id, transport=transport) == "left"
        assert_quiet_exit(first, await first.interrupt())

    await run(body, first, second)


async def test_picklenode_and_picklenodewriter_ctrl_c_leave_quietly_at_once(tmp_path: Path) -> None:
    port = free_port()
    writer = Example("picklenode.py", port, "w")
    filewriter = Example("picklenodewriter.py", port, cwd=tmp_path)

    async def body(tg: anyio.abc.TaskGroup) -> None:
        await writer.start(tg)
        await writer.wait_line(r"set value: 2")
        await filewriter.start(tg)
        await filewriter.wait_line(r"wrote \d+ \(set by \w+\)")
        members = await poll_states(port, lambda m: len(m) == 2, "two members", **PICKLE)
        (filewriter_id,) = [i for i, (_, tags) in members.items() if tags.get("type") == "picklenodewriter"]
        assert_quiet_exit(filewriter, await filewriter.interrupt())
        assert await left(port, filewriter_id, **PICKLE) == "left"
        assert_quiet_exit(writer, await writer.interrupt())

    await run(body, writer, filewriter)


@pytest.mark.parametrize(
    "args",
    [
        ("quickstart.py", "--backend", "asyncio"),
        ("quickstart.py", "--backend", "trio"),
        ("picklenode.py",),
        ("picklenodewriter.py",),
        ("fastapi_example.py", "HTTP_PORT"),
        ("pydevts node", "--backend", "trio"),
    ],
    ids=lambda args: "-".join(a.strip("-").replace(" ", "-") for a in args if a != "HTTP_PORT"),
)
async def test_ctrl_c_while_joining_exits_at_once(args: tuple[str, ...], tmp_path: Path) -> None:
    """The seed accepts TCP and never answers the handshake (which would time out after 5 s)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    connected = anyio.Event()

    async def never_answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            connected.set()
            await anyio.sleep_forever()

    name, *rest = args
    proc = Example(name, port, *(free_port() if a == "HTTP_PORT" else a for a in rest), cwd=tmp_path)

    async def body(tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(listener.serve, never_answer)
        await proc.start(tg)
        with anyio.fail_after(20):
            await connected.wait()  # the node is in the handshake now
        assert_quiet_exit(proc, await proc.interrupt())
        assert not proc.line("serving")

    try:
        await run(body, proc)
    finally:
        await listener.aclose()


async def test_fastapi_example_with_its_http_port_in_use_fails_in_one_line() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("hypercorn")
    cluster_port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        http_port = taken.getsockname()[1]
        app = Example("fastapi_example.py", cluster_port, http_port)
        async with Node(cluster_port) as seed:  # a cluster the example must not join

            async def body(tg: anyio.abc.TaskGroup) -> None:
                await app.start(tg)
                assert await app.wait_exit() != 0, app.report()
                assert app.err == [f"fastapi_example: error: HTTP port 127.0.0.1:{http_port} is in use"], (
                    app.report()
                )
                assert app.out == [], app.report()  # it never claimed to serve
                assert [m.id for m in seed.members] == [seed.id]  # nor joined

            await run(body, app)


async def test_fastapi_example_ctrl_c_with_an_open_http_connection() -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("hypercorn")
    port = free_port()
    http = [free_port(), free_port()]
    apps = [Example("fastapi_example.py", port, h) for h in http]

    async def body(tg: anyio.abc.TaskGroup) -> None:
        for app in apps:
            await app.start(tg)
            await app.wait_line(r"node \w+ serving http://")
        ids = [(await app.wait_line(r"node (\w+) serving")).group(1) for app in apps]
        async with httpx.AsyncClient(timeout=10) as client:  # keeps its connections open
            await poll_states(port, lambda m: sorted(m) == sorted(ids), "both members")
            assert (await client.get(f"http://127.0.0.1:{http[1]}/set/colour/blue")).status_code == 200
            assert (await client.get(f"http://127.0.0.1:{http[0]}/store")).status_code == 200
            assert_quiet_exit(apps[1], await apps[1].interrupt())
            assert await left(port, ids[1]) == "left"
            assert_quiet_exit(apps[0], await apps[0].interrupt())

    await run(body, *apps)
