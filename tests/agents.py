"""Helpers for tests that run nodes as separate processes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from pydevts.cli.driver import AgentProcess

__all__ = ["AgentProcess", "agents", "free_port", "wait_alive"]


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
