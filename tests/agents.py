"""Helpers for tests that run nodes as separate processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from pydevts.cli.driver import AgentProcess

__all__ = [
    "AgentProcess",
    "LoggedProcess",
    "agents",
    "free_port",
    "wait_alive",
    "wait_listening",
    "wait_udp_bound",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def agents(
    specs: Sequence[tuple[str, Sequence[str]]], backend: str
) -> AsyncIterator[list[AgentProcess]]:
    """Start one agent process per (name, argv); stop (or kill) every one on exit."""
    procs = [AgentProcess(name, [*argv, "--backend", backend]) for name, argv in specs]
    try:
        async with anyio.create_task_group() as tg:
            for proc in procs:
                await proc.start(tg)
            yield procs
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for proc in procs:
                await proc.stop(timeout=5)


async def wait_alive(proc: AgentProcess, ids: set[str], timeout: float = 10.0) -> None:
    """Wait until ``proc`` sees exactly ``ids`` as its alive members (itself included)."""
    last: set[str] = set()
    with anyio.move_on_after(timeout):
        while True:
            result = await proc.call(op="members")
            last = {m["id"] for m in result["members"] if m["state"] in ("alive", "suspect")}
            if last == ids:
                return
            await anyio.sleep(0.02)
    raise AssertionError(
        f"{proc.name} sees {sorted(last)} alive, expected {sorted(ids)}; log: {proc.log[-10:]}"
    )


async def wait_udp_bound(port: int, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return  # taken: the node has bound it
            await anyio.sleep(0.02)


class LoggedProcess:
    """A subprocess whose merged output is collected line by line."""

    def __init__(self, argv: list[str], cwd: str | None = None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.lines: list[str] = []
        self.process: anyio.abc.Process | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.process = await anyio.open_process(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=self.cwd,
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


async def wait_listening(port: int, timeout: float = 15, transport: str = "tcp") -> None:
    """Wait until a node listens on 127.0.0.1:``port`` (QUIC: until that UDP port is bound)."""
    if transport == "quic":
        await wait_udp_bound(port, timeout)
        return
    with anyio.fail_after(timeout):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)
                continue
            await stream.aclose()
            return
