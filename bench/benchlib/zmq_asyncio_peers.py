"""pyzmq peers written with ``zmq.asyncio`` on an asyncio event loop (always asyncio, whatever the backend).

Written the way an asyncio user naturally writes it: one coroutine, one
``await sock.send(...)`` per message on one side and one ``await sock.recv()``
per message on the other; no batching, no polling, no per-message timeout.

``pull``/``push``: one-way throughput; an empty message ends the run.
``rep``/``req``: sequential request/reply round trips (``rep`` runs until stopped).
Bound sockets use ``tcp://127.0.0.1:*`` and report the port in ``ready``.
"""

from __future__ import annotations

import argparse
import time

import anyio
import zmq
import zmq.asyncio

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, ready, rtt_summary

LINGER_MS = 5000


def _bound(ctx: zmq.asyncio.Context, kind: int) -> zmq.asyncio.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    ready(port=int(endpoint.rsplit(":", 1)[1]))
    return sock


def _connected(ctx: zmq.asyncio.Context, kind: int, port: int) -> zmq.asyncio.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


async def pull(args: argparse.Namespace) -> Result:
    ctx = zmq.asyncio.Context()
    sock = _bound(ctx, zmq.PULL)
    counter = Counter()
    ended = False
    try:
        with anyio.move_on_after(args.deadline):
            while True:
                msg = await sock.recv()
                if not msg:
                    ended = True
                    break
                counter.add()
    finally:
        sock.close()
        ctx.term()
    return counter.result(ended=ended)


async def push(args: argparse.Namespace) -> Result:
    ctx = zmq.asyncio.Context()
    sock = _connected(ctx, zmq.PUSH, args.port)
    clock = SendClock(args.seconds)
    sent = 0
    try:
        with anyio.fail_after(args.deadline):
            while sent < args.n:
                await sock.send(PAYLOAD)
                sent += 1
                if sent % CHECK_EVERY == 0 and clock.expired():
                    break
            await sock.send(b"")
        return clock.result(sent, args.n)
    finally:
        sock.close()  # lingers up to LINGER_MS to deliver what is queued
        ctx.term()


async def rep(args: argparse.Namespace) -> Result:
    ctx = zmq.asyncio.Context()
    sock = _bound(ctx, zmq.REP)
    served = 0
    try:
        with anyio.move_on_after(args.deadline):
            while True:
                msg = await sock.recv()
                await sock.send(msg)
                served += 1
    finally:
        sock.close()
        ctx.term()
    return {"served": served}


async def req(args: argparse.Namespace) -> Result:
    ctx = zmq.asyncio.Context()
    sock = _connected(ctx, zmq.REQ, args.port)
    samples: list[int] = []
    try:
        with anyio.fail_after(args.deadline):
            for i in range(args.warmup + args.count):
                t0 = time.perf_counter_ns()
                await sock.send(PAYLOAD)
                await sock.recv()
                if i >= args.warmup:
                    samples.append(time.perf_counter_ns() - t0)
    finally:
        sock.close()
        ctx.term()
    return rtt_summary(samples)


ROLES = {"pull": pull, "push": push, "rep": rep, "req": req}
