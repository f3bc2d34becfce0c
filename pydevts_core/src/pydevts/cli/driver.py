"""Drive agent processes (:mod:`pydevts.cli.agent`) from async code.

Used by ``pydevts demo`` and by the end-to-end tests: start a node in its own
process, send it commands, and wait — with a deadline — for what it reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

__all__ = ["AgentProcess"]

Event = dict[str, Any]


class AgentProcess:
    """One agent process: its stdout events and stderr log lines, as they arrive."""

    def __init__(self, name: str, argv: Sequence[str], python: str | None = None) -> None:
        self.name = name
        self.argv = [python or sys.executable, "-m", "pydevts.cli.agent", *argv]
        self.events: list[Event] = []
        self.log: list[str] = []
        self.process: Process | None = None
        self._changed = anyio.Event()
        self._eof = False

    @property
    def id(self) -> str:
        return str(self.started["id"])

    @property
    def started(self) -> Event:
        for event in self.events:
            if event.get("ev") == "started":
                return event
        raise LookupError(f"{self.name} has not started")

    async def start(self, tg: TaskGroup, env: dict[str, str] | None = None) -> None:
        self.process = await anyio.open_process(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        tg.start_soon(self._read_stdout)
        tg.start_soon(self._read_stderr)

    async def _lines(self, stream: Any, sink: Callable[[str], None]) -> None:
        buf = b""
        try:
            async for chunk in stream:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    sink(line.decode(errors="replace"))
                self._notify()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None

        def sink(line: str) -> None:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.log.append(f"[stdout] {line}")

        await self._lines(self.process.stdout, sink)
        self._eof = True
        self._notify()

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        await self._lines(self.process.stderr, self.log.append)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, what: str = ""
    ) -> Event:
        """Return the first event (past or future) matching ``predicate``; fail after ``timeout``."""
        with anyio.move_on_after(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                if self._eof:
                    break
                await self._changed.wait()
        if self._eof:
            code = self.process.returncode if self.process is not None else None
            status = "" if code is None else f" (status {code})"
            raise TimeoutError(
                f"{self.name} exited{status} before its {what or 'matching event'}; "
                f"last events: {self.events[-10:]}; log tail: {self.log[-40:]}"
            )
        raise TimeoutError(
            f"{self.name}: no {what or 'matching event'} within {timeout:g} s; "
            f"events: {self.events[-10:]}; log tail: {self.log[-40:]}"
        )

    async def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Return the first stderr log line containing ``text``."""
        with anyio.move_on_after(timeout):
            while True:
                for line in self.log:
                    if text in line:
                        return line
                await self._changed.wait()
        raise TimeoutError(
            f"{self.name}: no log line with {text!r} within {timeout:g} s; tail: {self.log[-15:]}"
        )

    async def command(self, **cmd: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        await self.process.stdin.send((json.dumps(cmd) + "\n").encode())

    async def call(self, timeout: float = 10.0, **cmd: Any) -> Event:
        """Send a command with a fresh tag and wait for its result."""
        tag = f"{cmd.get('op')}-{len(self.events)}-{id(cmd)}"
        await self.command(tag=tag, **cmd)
        return await self.wait_for(lambda e: e.get("tag") == tag, timeout, f"result of {cmd}")

    def signal(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def stop(self, timeout: float = 10.0) -> int:
        """Ask the node to leave and exit; kill it if it has not exited in time."""
        process = self.process
        if process is None:
            return 0
        if process.returncode is None:
            try:
                await self.command(op="stop")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
        with anyio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()
        return process.returncode if process.returncode is not None else -9
