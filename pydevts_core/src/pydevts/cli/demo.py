"""``pydevts demo``: three nodes in three processes exchange events on loopback."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio

from ..plugins.registry import Registry
from .driver import AgentProcess

__all__ = ["run_demo"]

NAMES = ("node-1", "node-2", "node-3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo(backend: str = "asyncio", transport: str = "tcp") -> int:
    Registry().info("transport", transport)  # a name nobody provides: say so now, not from 3 children
    port = free_port()
    t0 = time.monotonic()
    _say(f"pydevts demo: 3 nodes, each its own process, cluster port 127.0.0.1:{port} ({transport})")
    argv = ["--log-level", os.environ.get("PYDEVTS_DEMO_LOG", "WARNING"), "--backend", backend]
    argv += ["--transport", transport]
    agents = [AgentProcess(name, [str(port), "--id", name, *argv]) for name in NAMES]
    first, second, third = agents
    try:
        async with anyio.create_task_group() as tg:
            await first.start(tg)
            started = await first.wait_for(lambda e: e.get("ev") in ("started", "error"), 15, "start")
            if started["ev"] == "error":
                raise RuntimeError(f"{first.name} could not start: {started['message']}")
            where = started["address"]
            _say(f"  {first.name} found nothing on the cluster port: started a new cluster at {where}")
            for agent in (second, third):
                await agent.start(tg)
            for agent in (second, third):
                ev = await agent.wait_for(lambda e: e.get("ev") in ("started", "error"), 15, "start")
                if ev["ev"] == "error":
                    raise RuntimeError(f"{agent.name} could not start: {ev['message']}")
                _say(f"  {agent.name} joined through the cluster port; listening on {ev['address']}")
            for agent in agents:
                await _wait_members(agent, 3)
            _say(f"  all 3 nodes see 3 alive members ({time.monotonic() - t0:.2f} s since launch)")
            _say()
            _say('  node-1 emits "greet" to all; node-2 sends "greet" to node-3;')
            _say('  node-3 sends a "ping" request to node-1 and waits for the reply')
            for result in (
                await first.call(op="emit", name="greet", payload={"text": "hello, everyone"}),
                await second.call(op="send", to="node-3", name="greet", payload={"text": "hi node-3"}),
            ):
                if not result["ok"]:
                    raise RuntimeError(f"{result['op']} failed: {result['message']}")
            reply = await third.call(op="request", to="node-1", name="ping", payload={"seq": 1}, timeout=5)
            if not reply["ok"]:
                raise RuntimeError(f"request failed: {reply}")
            expected = {"node-1": 1, "node-2": 1, "node-3": 2}
            for agent in agents:
                await agent.wait_for(_nth_received(agent, expected[agent.name]), 10, "received events")
            _say()
            _table(agents, reply)
            _say()
            await second.stop()
            left = await first.wait_for(
                lambda e: e.get("ev") == "member" and e["id"] == "node-2" and e["kind"] != "joined",
                10,
                "leave",
            )
            _say(f"  node-2 stopped gracefully; node-1 saw it: {left['kind']}")
            for agent in (first, third):
                await agent.stop()
            tg.cancel_scope.cancel()
    except (TimeoutError, RuntimeError, ExceptionGroup) as exc:
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a failure inside the task group: say what it was
        if not isinstance(exc, (TimeoutError, RuntimeError)):
            raise
        _say(f"demo failed: {exc or type(exc).__name__}")
        for agent in agents:
            if agent.log:
                _say(f"--- {agent.name} log:")
            for line in agent.log[-40:]:
                _say(f"    {line}")
        return 1
    finally:
        with anyio.CancelScope(shield=True):
            for agent in agents:
                await agent.stop(timeout=5)
    _say(f"demo finished in {time.monotonic() - t0:.1f} s")
    return 0


def _nth_received(agent: AgentProcess, n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda _event: sum(x.get("ev") == "received" for x in agent.events) >= n


async def _wait_members(agent: AgentProcess, n: int, timeout: float = 15) -> None:
    alive = 0
    with anyio.move_on_after(timeout):
        while True:
            result = await agent.call(op="members")
            alive = sum(m["state"] == "alive" for m in result["members"])
            if alive >= n:
                return
            await anyio.sleep(0.05)
    raise TimeoutError(f"{agent.name} sees {alive} of {n} members alive after {timeout:g} s")


def _table(agents: list[AgentProcess], reply: dict[str, Any]) -> None:
    rows = [("NODE", "RECEIVED")]
    for agent in agents:
        got = []
        for e in agent.events:
            if e.get("ev") == "received":
                got.append(f'"{e["name"]}" from {e["sender"]}: {e["payload"]}')
        if agent.name == "node-3":
            got.append(f"reply from node-1: {reply['value']}")
        rows.extend((agent.name if i == 0 else "", text) for i, text in enumerate(got))
    width = max(len(r[0]) for r in rows)
    for name, text in rows:
        _say(f"  {name.ljust(width)}  {text}")
