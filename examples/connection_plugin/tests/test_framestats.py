"""The example third-party connection plugin, end to end."""

from __future__ import annotations

import socket

import anyio
import pytest
from pydevts import HandshakeRefusedError, Node
from pydevts_framestats import FrameStats

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_counts_frames_of_every_link(anyio_backend: str) -> None:
    stats = FrameStats()
    port = free_port()
    got: list[object] = []
    a = Node(port, node_id="a", connection_plugins=[stats])
    b = Node(port, node_id="b")

    @b.on("ev")
    async def ev(sender: str, payload: object) -> None:
        got.append(payload)

    with anyio.fail_after(20):
        async with a:
            async with b:
                await wait_until(lambda: any(m.id == "b" for m in a.find()))
                for i in range(10):
                    await a.send("b", "ev", i)
                await wait_until(lambda: len(got) == 10)
                counters = stats.links["b"]
                assert counters.frames_out >= 10 and counters.bytes_out > 10 * 3
                assert counters.frames_in >= 1  # at least b's sync message
            await wait_until(lambda: "b" in stats.closed)
    assert got == list(range(10))


async def test_on_open_refusal_reaches_the_joiner(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(20):
        async with Node(port, node_id="a", connection_plugins=[FrameStats(deny_tag="env=test")]):
            with pytest.raises(HandshakeRefusedError, match="refused by connection plugin 'framestats'"):
                async with Node(port, node_id="b", tags={"env": "test"}):
                    pass
            async with Node(port, node_id="c", tags={"env": "prod"}) as c:
                await wait_until(lambda: any(m.id == "a" and m.alive for m in c.members))


async def test_enabled_by_name_through_the_entry_point(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(20):
        async with Node(port, node_id="a", connection_plugins=["framestats"]) as a:
            async with Node(port, node_id="b"):
                await wait_until(lambda: any(m.id == "b" and m.alive for m in a.members))
