"""Raw anyio TCP peers: 4-byte big-endian length-prefixed frames.

Roles: ``recv`` (counts frames; an empty frame ends the run), ``send`` (one
``await stream.send()`` per frame, or ``--batch BYTES`` to join frames into
writes of about that size), ``echo`` (returns every frame) and ``ping``
(sequential round trips against ``echo``).
"""

from __future__ import annotations

import argparse
import struct
import time

import anyio
from anyio.abc import SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, ready, rtt_summary

HEADER = struct.Struct(">I")
END_FRAME = HEADER.pack(0)
READ_SIZE = 65536


async def _accept_one(args: argparse.Namespace) -> SocketStream:
    """Listen on a free loopback port, say ``ready`` with it, accept one connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener:
        sock_listener = listener.listeners[0]
        assert isinstance(sock_listener, SocketListener)
        ready(port=sock_listener.extra(anyio.abc.SocketAttribute.local_port))
        with anyio.fail_after(args.deadline):
            return await sock_listener.accept()


async def recv(args: argparse.Namespace) -> Result:
    stream = await _accept_one(args)
    counter = Counter()
    buf = bytearray()
    ended = False
    async with stream:
        with anyio.move_on_after(args.deadline):
            while not ended:
                try:
                    chunk = await stream.receive(READ_SIZE)
                except anyio.EndOfStream:
                    break
                buf += chunk
                frames, pos, ended = _parse(buf)
                del buf[:pos]
                if frames:
                    counter.add(frames)
    return counter.result(ended=ended)


def _parse(buf: bytearray) -> tuple[int, int, bool]:
    """Count the complete frames at the start of ``buf``: (frames, bytes used, end frame seen)."""
    pos = 0
    frames = 0
    size = len(buf)
    unpack = HEADER.unpack_from
    while size - pos >= 4:
        (length,) = unpack(buf, pos)
        if length == 0:
            return frames, pos + 4, True
        if size - pos - 4 < length:
            break
        pos += 4 + length
        frames += 1
    return frames, pos, False


async def send(args: argparse.Namespace) -> Result:
    stream = await anyio.connect_tcp("127.0.0.1", args.port)
    clock = SendClock(args.seconds)
    sent = 0
    async with stream:
        if args.batch > 0:
            sent = await _send_batched(stream, args.n, args.batch, clock)
        else:
            while sent < args.n:
                await stream.send(HEADER.pack(len(PAYLOAD)) + PAYLOAD)
                sent += 1
                if sent % CHECK_EVERY == 0 and clock.expired():
                    break
        await stream.send(END_FRAME)
    return clock.result(sent, args.n)


async def _send_batched(stream: SocketStream, n: int, batch: int, clock: SendClock) -> int:
    out = bytearray()
    sent = 0
    while sent < n:
        out += HEADER.pack(len(PAYLOAD))
        out += PAYLOAD
        sent += 1
        if len(out) >= batch:
            await stream.send(bytes(out))
            out.clear()
            if clock.expired():
                break
    if out:
        await stream.send(bytes(out))
    return sent


async def echo(args: argparse.Namespace) -> Result:
    stream = await _accept_one(args)
    reader = BufferedByteReceiveStream(stream)
    served = 0
    async with stream:
        with anyio.move_on_after(args.deadline):
            while True:
                try:
                    header = await reader.receive_exactly(4)
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    break
                (length,) = HEADER.unpack(header)
                body = await reader.receive_exactly(length)
                await stream.send(header + body)
                served += 1
    return {"served": served}


async def ping(args: argparse.Namespace) -> Result:
    stream = await anyio.connect_tcp("127.0.0.1", args.port)
    reader = BufferedByteReceiveStream(stream)
    frame = HEADER.pack(len(PAYLOAD)) + PAYLOAD
    samples: list[int] = []
    async with stream:
        with anyio.fail_after(args.deadline):
            for i in range(args.warmup + args.count):
                t0 = time.perf_counter_ns()
                await stream.send(frame)
                (length,) = HEADER.unpack(await reader.receive_exactly(4))
                await reader.receive_exactly(length)
                if i >= args.warmup:
                    samples.append(time.perf_counter_ns() - t0)
    return rtt_summary(samples)


ROLES = {"recv": recv, "send": send, "echo": echo, "ping": ping}
