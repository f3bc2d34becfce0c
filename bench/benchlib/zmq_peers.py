"""pyzmq peers, written with plain *blocking* pyzmq (no event loop, so the backend option does not apply).

``pull``/``push``: one-way throughput; an empty message ends the run.
``rep``/``req``: sequential request/reply round trips (``rep`` runs until stopped).
Bound sockets use ``tcp://127.0.0.1:*`` and report the port in ``ready``.
"""

from __future__ import annotations

import argparse
import time

import zmq

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, ready, rtt_summary

POLL_MS = 500  # receive timeout, so that the deadline is looked at while idle
LINGER_MS = 5000


def _bound(ctx: zmq.Context[zmq.Socket[bytes]], kind: int) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, POLL_MS)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    ready(port=int(endpoint.rsplit(":", 1)[1]))
    return sock


def _connected(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, port: int) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def pull(args: argparse.Namespace) -> Result:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = _bound(ctx, zmq.PULL)
    counter = Counter()
    stop_at = time.monotonic() + args.deadline
    ended = False
    try:
        while time.monotonic() < stop_at:
            try:
                msg = sock.recv()
            except zmq.Again:
                continue
            if not msg:
                ended = True
                break
            counter.add()
    finally:
        sock.close()
        ctx.term()
    return counter.result(ended=ended)


def push(args: argparse.Namespace) -> Result:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = _connected(ctx, zmq.PUSH, args.port)
    clock = SendClock(args.seconds)
    sent = 0
    try:
        while sent < args.n:
            sock.send(PAYLOAD)
            sent += 1
            if sent % CHECK_EVERY == 0 and clock.expired():
                break
        sock.send(b"")
        return clock.result(sent, args.n)
    finally:
        sock.close()  # lingers up to LINGER_MS to deliver what is queued
        ctx.term()


def rep(args: argparse.Namespace) -> Result:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = _bound(ctx, zmq.REP)
    served = 0
    stop_at = time.monotonic() + args.deadline
    try:
        while time.monotonic() < stop_at:
            try:
                msg = sock.recv()
            except zmq.Again:
                continue
            sock.send(msg)
            served += 1
    finally:
        sock.close()
        ctx.term()
    return {"served": served}


def req(args: argparse.Namespace) -> Result:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = _connected(ctx, zmq.REQ, args.port)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    samples: list[int] = []
    try:
        for i in range(args.warmup + args.count):
            t0 = time.perf_counter_ns()
            sock.send(PAYLOAD)
            sock.recv()
            if i >= args.warmup:
                samples.append(time.perf_counter_ns() - t0)
    finally:
        sock.close()
        ctx.term()
    return rtt_summary(samples)


ROLES = {"pull": pull, "push": push, "rep": rep, "req": req}
