"""The transport contract on the transports that ship here, both backends."""

from __future__ import annotations

import socket
import struct
from typing import Any

import anyio
import pytest
from pydevts.errors import ConnectError, ConnectionClosedError
from pydevts.protocols import Address
from pydevts.testing import MemoryNetwork, MemoryTransport, check_transport
from pydevts_tcp import TCPTransport

pytestmark = pytest.mark.anyio


async def _reset(conn: Any) -> None:
    """A TCP peer that dies: its kernel answers with a reset (SO_LINGER 0), no orderly close."""
    conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn._sock.close()


async def test_tcp_honours_the_transport_contract() -> None:
    await check_transport(lambda **settings: TCPTransport(**settings), vanish=_reset)


async def test_memory_honours_the_transport_contract() -> None:
    network = MemoryNetwork()
    await check_transport(lambda **settings: MemoryTransport(network, **settings))


async def test_a_transport_that_breaks_the_contract_is_caught() -> None:
    class Leaky(MemoryTransport):
        async def connect(self, address: Address) -> Any:
            conn = await super().connect(address)
            original = conn.send_frames

            async def send_frames(frames: Any) -> None:  # reverses every batch: breaks ordering
                await original(list(reversed(frames)))

            conn.send_frames = send_frames  # type: ignore[method-assign]
            return conn

    network = MemoryNetwork()
    with pytest.raises(AssertionError, match="ordered framed delivery"):
        await check_transport(lambda **settings: Leaky(network, **settings))


async def test_a_transport_that_hangs_on_a_vanished_peer_is_caught() -> None:
    network = MemoryNetwork()

    async def cut_cable(conn: Any) -> None:  # in-memory links never time out: silence is forever
        network.partition(["127.0.0.1"], ["127.0.0.1"])

    with pytest.raises(AssertionError, match="peer vanishing: receive from a vanished peer still waiting"):
        await check_transport(lambda **settings: MemoryTransport(network, **settings), vanish=cut_cable)


async def test_memory_faults_partition_drop_and_heal() -> None:
    network = MemoryNetwork(seed=3)
    a, b = network.transport("a"), network.transport("b")
    with anyio.fail_after(10):
        listener = await b.listen(Address("b", 0))
        got: list[list[bytes]] = []

        async def handler(conn: Any) -> None:
            try:
                while True:
                    got.append(await conn.receive_frames())
            except ConnectionClosedError:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            conn = await a.connect(listener.address)
            await conn.send_frames([b"1"])
            network.partition({"a"}, {"b"})
            await conn.send_frames([b"lost in the partition"])
            with pytest.raises(ConnectError, match="partitioned"):
                await a.connect(listener.address)
            network.heal()
            network.drop_rate = 1.0
            await conn.send_frames([b"dropped"])
            network.drop_rate = 0.0
            await conn.send_frames([b"2"])
            with anyio.fail_after(5):
                while len(got) < 2:
                    await anyio.sleep(0.01)
            assert got == [[b"1"], [b"2"]]
            await conn.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()


async def test_memory_delay_is_latency_for_frames_and_datagrams_not_a_slower_sender() -> None:
    network = MemoryNetwork(seed=4)
    network.delay = 0.5
    a, b = network.transport("a"), network.transport("b")
    with anyio.fail_after(10):
        listener = await b.listen(Address("b", 0))
        arrived: list[tuple[float, list[bytes]]] = []
        kept: list[Any] = []

        async def keep(conn: Any) -> None:
            kept.append(conn)
            await anyio.sleep_forever()

        async def handler(conn: Any) -> None:
            try:
                while True:
                    frames = await conn.receive_frames()
                    arrived.append((anyio.current_time(), frames))
            except ConnectionClosedError:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            conn = await a.connect(listener.address)
            sent_at = anyio.current_time()
            for i in range(20):  # the sender is not held up by the delay: all are sent before any arrives
                await conn.send_frames([str(i).encode()])
            assert not arrived
            with anyio.fail_after(5):
                while len(arrived) < 20:
                    await anyio.sleep(0.01)
            assert [f for _, batch in arrived for f in batch] == [str(i).encode() for i in range(20)]
            assert arrived[0][0] - sent_at >= 0.5  # in flight for the delay, in order

            network.delay, network.jitter = 0.0, 0.05  # each batch its own latency: order still holds
            arrived.clear()
            for i in range(50):
                await conn.send_frames([str(i).encode()])
            with anyio.fail_after(5):
                while len(arrived) < 50:
                    await anyio.sleep(0.01)
            assert [f for _, batch in arrived for f in batch] == [str(i).encode() for i in range(50)]
            network.delay, network.jitter = 0.5, 0.0

            await conn.aclose()
            tg.cancel_scope.cancel()  # the handler stops reading; the next connection is read here
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, keep)
            conn = await a.connect(listener.address)
            await conn.send_frames([b"late"])
            while not kept:
                await anyio.sleep(0.01)
            with anyio.move_on_after(0.1):  # a read cancelled while the batch is in flight...
                await kept[0].receive_frames()
                raise AssertionError("a batch arrived before its delay")
            assert await kept[0].receive_frames() == [b"late"]  # ...loses nothing

            here = await a.open_datagrams(Address("a", 9))
            there = await b.open_datagrams(Address("b", 9))
            sent_at = anyio.current_time()
            here.send(b"probe", Address("b", 9))
            assert await there.receive() == b"probe"
            assert anyio.current_time() - sent_at >= 0.5  # datagrams are delayed too
            await here.aclose()
            await there.aclose()
            await conn.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()
