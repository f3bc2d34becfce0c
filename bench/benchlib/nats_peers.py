"""nats-py peers through a local nats-server (nats-py is asyncio only: these always run on asyncio).

``sub``/``pub``: one-way throughput on one subject (the publisher flushes at
the end); an empty message ends the run, and as it travels on the same
subject and connection it arrives after every message before it.
``reply``/``request``: sequential request/reply round trips (``reply`` runs until stopped).
"""

from __future__ import annotations

import argparse
import time

import anyio
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, ready, rtt_summary

SUBJECT = "bench.data"
RPC_SUBJECT = "bench.rpc"
PENDING_MSGS = 4_000_000  # subscriber queue: large enough that nothing is dropped as a slow consumer
PENDING_BYTES = 1 << 30


async def _connect(url: str) -> Client:
    return await nats.connect(url, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0)


async def sub(args: argparse.Namespace) -> Result:
    nc = await _connect(args.url)
    counter = Counter()
    done = anyio.Event()

    async def on_msg(msg: Msg) -> None:
        if msg.data:
            counter.add()
        else:
            done.set()

    try:
        await nc.subscribe(
            SUBJECT, cb=on_msg, pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES
        )
        await nc.flush()  # the server knows the subscription before the publisher starts
        ready()
        with anyio.move_on_after(args.deadline):
            await done.wait()
    finally:
        await nc.close()
    return counter.result(ended=done.is_set())


async def pub(args: argparse.Namespace) -> Result:
    nc = await _connect(args.url)
    clock = SendClock(args.seconds)
    sent = 0
    try:
        with anyio.fail_after(args.deadline):
            while sent < args.n:
                await nc.publish(SUBJECT, PAYLOAD)
                sent += 1
                if sent % CHECK_EVERY == 0 and clock.expired():
                    break
            await nc.publish(SUBJECT, b"")
            await nc.flush()
        return clock.result(sent, args.n)
    finally:
        await nc.close()


async def reply(args: argparse.Namespace) -> Result:
    nc = await _connect(args.url)
    served = 0

    async def on_request(msg: Msg) -> None:
        nonlocal served
        await msg.respond(msg.data)
        served += 1

    try:
        await nc.subscribe(RPC_SUBJECT, cb=on_request)
        await nc.flush()
        ready()
        with anyio.move_on_after(args.deadline):
            await anyio.Event().wait()  # until the driver stops this process
    finally:
        await nc.close()
    return {"served": served}


async def request(args: argparse.Namespace) -> Result:
    nc = await _connect(args.url)
    samples: list[int] = []
    try:
        with anyio.fail_after(args.deadline):
            for i in range(args.warmup + args.count):
                t0 = time.perf_counter_ns()
                await nc.request(RPC_SUBJECT, PAYLOAD, timeout=5)
                if i >= args.warmup:
                    samples.append(time.perf_counter_ns() - t0)
    finally:
        await nc.close()
    return rtt_summary(samples)


ROLES = {"sub": sub, "pub": pub, "reply": reply, "request": request}
