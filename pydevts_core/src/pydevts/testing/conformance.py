"""The transport contract, as one async function: :func:`check_transport`.

A plugin author runs it in their own tests, on each anyio backend::

    @pytest.mark.anyio
    async def test_my_transport_honours_the_contract():
        await check_transport(lambda **settings: MyTransport(**settings))

It raises ``AssertionError`` naming the first broken rule. Every step is
bounded in time; every connection and listener it opens, it closes.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import AddressInUseError, ConnectError, ConnectionClosedError, FrameTooLargeError
from ..protocols import Address, Connection, Listener, Transport

__all__ = ["TransportFactory", "Vanish", "check_transport"]

#: ``make(max_frame_size=...)`` -> a new transport (of the same network, for in-memory ones).
TransportFactory = Callable[..., Transport]

STEP_TIMEOUT = 10.0
LIMIT = 64 * 1024


#: ``vanish(conn)`` makes the end holding ``conn`` disappear the way a killed process or an
#: unplugged host does for this transport (no goodbye); see :func:`check_transport`.
Vanish = Callable[[Connection], Awaitable[None]]


async def check_transport(
    make: TransportFactory, *, host: str = "127.0.0.1", vanish: Vanish | None = None
) -> None:
    """Check that ``make(max_frame_size=...)`` builds transports that honour the contract.

    With ``vanish``, also check that when a peer vanishes, the other end is
    not left hanging: its ``receive_frames`` and ``send_frames`` raise
    ``ConnectionClosedError`` within the step's time bound (10 s).
    """
    checks = list(_CHECKS)
    if vanish is not None:
        checks.append(("peer vanishing", partial(_peer_vanishes, vanish=vanish)))
    for name, check in checks:
        with anyio.fail_after(STEP_TIMEOUT):
            try:
                await check(make, host)
            except* AssertionError as group:  # possibly raised inside a task group
                raise AssertionError(f"transport contract, {name}: {first_leaf(group)}") from None


def first_leaf(error: BaseException) -> BaseException:
    """The first non-group exception inside ``error``."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _pair(
    tg: TaskGroup, make: TransportFactory, host: str, limit: int = LIMIT
) -> tuple[Listener, Connection, Connection]:
    """Listen, connect, accept: (listener, client end, server end)."""
    transport = make(max_frame_size=limit)
    listener = await transport.listen(Address(host, 0))
    send, receive = anyio.create_memory_object_stream[Connection](1)

    async def handler(conn: Connection) -> None:
        await send.send(conn)  # the check owns it from here, and closes it

    tg.start_soon(listener.serve, handler)
    client = await transport.connect(listener.address)
    server = await receive.receive()
    return listener, client, server


async def _receive(conn: Connection, n: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < n:
        got.extend(await conn.receive_frames())
    assert len(got) == n, f"received {len(got)} frames, expected {n}"
    return got


async def _listen_and_bind(make: TransportFactory, host: str) -> None:
    transport = make(max_frame_size=LIMIT)
    listener = await transport.listen(Address(host, 0))
    try:
        assert listener.address.port > 0, f"listening on port 0 reported port {listener.address.port}"
        try:
            other = await transport.listen(listener.address)
        except AddressInUseError:
            pass
        else:
            await other.aclose()
            raise AssertionError("a second listen on a bound address did not raise AddressInUseError")
    finally:
        await listener.aclose()
    try:
        conn = await transport.connect(listener.address)
    except ConnectError:
        return
    await conn.aclose()
    raise AssertionError("connect to an address nobody listens on did not raise ConnectError")


async def _ordered_frames(make: TransportFactory, host: str) -> None:
    rng = random.Random(1)
    batches = [
        [rng.randbytes(rng.randrange(0, 2000)) for _ in range(rng.randrange(1, 30))] for _ in range(40)
    ]
    batches.append([b""])
    expected = [f for batch in batches for f in batch]
    async with anyio.create_task_group() as tg:
        listener, client, server = await _pair(tg, make, host)
        try:
            for a, b in ((client, server), (server, client)):

                async def sender(conn: Connection = a) -> None:
                    for batch in batches:
                        await conn.send_frames(batch)

                tg.start_soon(sender)
                got = await _receive(b, len(expected))
                assert got == expected, "frames came back changed, merged, split or out of order"
        finally:
            await _close(client, server, listener)
            tg.cancel_scope.cancel()


async def _frame_limit(make: TransportFactory, host: str) -> None:
    async with anyio.create_task_group() as tg:
        listener, client, server = await _pair(tg, make, host)
        try:
            at_limit = bytes(range(256)) * (LIMIT // 256)
            await client.send_frames([at_limit])
            assert await _receive(server, 1) == [at_limit], "a frame of exactly max_frame_size was changed"
            try:
                await client.send_frames([b"x" * (LIMIT + 1)])
            except FrameTooLargeError:
                pass
            else:
                raise AssertionError("a frame over max_frame_size was sent without FrameTooLargeError")
            await client.send_frames([b"still fine"])
            assert await _receive(server, 1) == [b"still fine"], "the connection broke after a refused frame"
        finally:
            await _close(client, server, listener)
            tg.cancel_scope.cancel()


async def _close_both_ways(make: TransportFactory, host: str) -> None:
    for closing_side in (0, 1):
        async with anyio.create_task_group() as tg:
            listener, client, server = await _pair(tg, make, host)
            try:
                closer, other = (client, server) if closing_side == 0 else (server, client)
                await closer.send_frames([b"last words"])
                await closer.aclose()
                await closer.aclose()  # idempotent
                assert await _receive(other, 1) == [b"last words"], "frames sent before a close were lost"
                try:
                    await other.receive_frames()
                except ConnectionClosedError:
                    pass
                else:
                    raise AssertionError("receive after the peer closed did not raise ConnectionClosedError")
                try:
                    await closer.send_frames([b"after close"])
                except ConnectionClosedError:
                    pass
                else:
                    raise AssertionError("send on a closed connection did not raise ConnectionClosedError")
            finally:
                await _close(client, server, listener)
                tg.cancel_scope.cancel()


async def _many_connections(make: TransportFactory, host: str) -> None:
    transport = make(max_frame_size=LIMIT)
    listener = await transport.listen(Address(host, 0))
    count = 50

    async def echo(conn: Connection) -> None:
        try:
            while True:
                await conn.send_frames(await conn.receive_frames())
        except ConnectionClosedError:
            pass
        finally:
            await conn.aclose()

    async def client(i: int) -> None:
        conn = await transport.connect(listener.address)
        try:
            frames = [f"{i}:{k}".encode() for k in range(20)]
            await conn.send_frames(frames)
            assert await _receive(conn, len(frames)) == frames, f"connection {i} got someone else's frames"
        finally:
            await conn.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with anyio.create_task_group() as clients:
                for i in range(count):
                    clients.start_soon(client, i)
            tg.cancel_scope.cancel()
    finally:
        await listener.aclose()


async def _backpressure(make: TransportFactory, host: str) -> None:
    """A receiver that does not read makes the sender wait: memory stays bounded."""
    async with anyio.create_task_group() as tg:
        listener, client, server = await _pair(tg, make, host)
        try:
            chunk = [b"z" * 60_000] * 16  # ~1 MB per call
            sent_mb = 0
            with anyio.move_on_after(2.0):
                while sent_mb < 256:
                    await client.send_frames(chunk)
                    sent_mb += 1
            assert sent_mb < 256, "256 MB went to a peer that reads nothing: no backpressure"
        finally:
            await _close(client, server, listener)
            tg.cancel_scope.cancel()


async def _peer_vanishes(make: TransportFactory, host: str, *, vanish: Vanish) -> None:
    async with anyio.create_task_group() as tg:
        listener, client, server = await _pair(tg, make, host)
        try:
            await client.send_frames([b"before"])
            assert await _receive(server, 1) == [b"before"], "a frame was lost before the peer vanished"
            await vanish(server)
            bound = STEP_TIMEOUT / 2
            with anyio.move_on_after(bound) as receiving:
                try:
                    await _receive(client, 1)
                except ConnectionClosedError:
                    pass
                else:
                    raise AssertionError("a frame arrived from a peer that had vanished")
            waiting = f"receive from a vanished peer still waiting after {bound:g} s"
            assert not receiving.cancelled_caught, waiting
            with anyio.move_on_after(bound) as sending:
                try:
                    while True:
                        await client.send_frames([b"into the void"])
                        await anyio.sleep(0.01)
                except ConnectionClosedError:
                    pass
            assert not sending.cancelled_caught, f"sends to a vanished peer still succeed after {bound:g} s"
        finally:
            await _close(client, server, listener)
            tg.cancel_scope.cancel()


async def _close(*things: Any) -> None:
    with anyio.CancelScope(shield=True):
        for thing in things:
            await thing.aclose()


_CHECKS: list[tuple[str, Callable[[TransportFactory, str], Awaitable[None]]]] = [
    ("listen/bind/connect", _listen_and_bind),
    ("ordered framed delivery both ways", _ordered_frames),
    ("max frame size", _frame_limit),
    ("close semantics both ways", _close_both_ways),
    ("50 concurrent connections", _many_connections),
    ("backpressure", _backpressure),
]
