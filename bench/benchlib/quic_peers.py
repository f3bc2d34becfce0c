"""Peer programs of ``bench/quic_compare.py``: ``python bench/quic_compare.py peer KIND ROLE [options]``.

They speak the same stdout protocol as the other peers (``ready {json}``, then
``result {json}``; see :mod:`benchlib.common`). Kinds and roles:

``aioquic recv|send`` (always asyncio: aioquic's own asyncio API)
    Raw aioquic on one bidirectional stream: ``recv`` serves (``aioquic.asyncio.serve``,
    a certificate from ``pydevts_quic.make_self_signed()``), counts complete 4-byte
    length-prefixed messages as they arrive and ends at an empty message. ``send``
    connects (``aioquic.asyncio.connect``, ``verify_mode=CERT_NONE``) and calls
    ``send_stream_data`` + ``transmit()`` once per message (``--batch 0``) or once per
    write of about ``--batch`` bytes. aioquic buffers whatever is written without
    limit, so the sender waits while more than :data:`HIGH_WATER` bytes are written
    but not yet acknowledged (the same bound, and the same check, as
    ``pydevts_quic``'s ``send_frames``); it is woken after each datagram received.
``pydevts recv|send|ping``
    The ``pydevts`` row's peers (:mod:`benchlib.pydevts_peers`) with ``--transport``.
``connect listen|dial``
    Cold connects: ``listen`` serves a transport on 127.0.0.1:0; ``dial`` makes
    ``--connects`` sequential connections, each with a new transport object, and
    times ``await transport.connect(address)``.
``join join``
    A new node joins the 1-node cluster on ``--port``; the time from entering
    ``async with node`` to seeing ``--peer-id`` alive.
``mem recv|send``
    A slow receiver: ``recv``'s handler sleeps ``--handler-sleep`` s per event;
    ``send`` sends ``--payload-size``-byte events as fast as it can (at most
    ``--max-bytes`` bytes and ``--seconds`` s). Both sample their RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .common import CHECK_EVERY, PAYLOAD, Counter, Result, SendClock, emit, ready
from .raw_peers import END_FRAME, HEADER, _parse  # the same 4-byte length prefix as the raw TCP rows

#: Written-but-unacknowledged bytes past which the raw aioquic sender waits (pydevts_quic's HIGH_WATER).
HIGH_WATER = 1024 * 1024
MAX_DATAGRAM_SIZE = 1350  # QUICTransport's default
JOIN_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
SAMPLE_EVERY = 0.02  # RSS sampling period (s)
LEAVE_WAIT = 10.0  # the slow receiver waits at most this long for the sender to leave


def peer_arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="one side of a quic_compare test (started by bench/quic_compare.py)"
    )
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("role")
    p.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    p.add_argument("--transport", default="tcp", choices=["tcp", "quic"])
    p.add_argument("--n", type=int, default=200_000, help="messages to send (throughput)")
    p.add_argument("--seconds", type=float, default=10.0, help="stop sending after this long")
    p.add_argument("--count", type=int, default=2000, help="timed round trips / connects")
    p.add_argument("--warmup", type=int, default=200, help="untimed round trips / connects first")
    p.add_argument("--batch", type=int, default=0, help="aioquic: bytes per write (0: one write per message)")
    p.add_argument("--port", type=int, default=0, help="port to connect to (or cluster port)")
    p.add_argument("--peer-id", default="", help="pydevts: id of the other node")
    p.add_argument("--payload-size", type=int, default=100, help="mem: bytes per event")
    p.add_argument("--handler-sleep", type=float, default=0.005, help="mem: seconds the handler sleeps")
    p.add_argument("--max-bytes", type=int, default=200_000_000, help="mem: stop after sending this much")
    p.add_argument("--prebuilt-registry", action="store_true",
                   help="join: find the plugins before the timer starts")  # fmt: skip
    p.add_argument("--deadline", type=float, default=60.0, help="give up after this many seconds")
    return p


# ---------------------------------------------------------------------- memory


def proc_status_kib(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status in KiB (e.g. VmRSS, VmHWM); {} where there is no /proc."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in fields:
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssWatch:
    """RSS at a baseline, then sampled every :data:`SAMPLE_EVERY` s, and VmHWM at the end."""

    def __init__(self) -> None:
        self.baseline_kib = 0
        self.peak_kib = 0
        self.samples = 0
        self.hwm_reset = False

    def start(self) -> None:
        self.hwm_reset = reset_peak_rss()
        self.baseline_kib = proc_status_kib("VmRSS").get("VmRSS", 0)
        self.peak_kib = self.baseline_kib

    def sample(self) -> None:
        rss = proc_status_kib("VmRSS").get("VmRSS", 0)
        self.samples += 1
        self.peak_kib = max(self.peak_kib, rss)

    async def run(self, seconds: float) -> None:
        for _ in range(int(seconds / SAMPLE_EVERY) + 1):
            self.sample()
            await anyio.sleep(SAMPLE_EVERY)

    def result(self) -> Result:
        self.sample()
        status = proc_status_kib("VmRSS", "VmHWM")
        hwm = status.get("VmHWM", 0)
        return {
            "baseline_rss_mib": self.baseline_kib / 1024,
            "peak_rss_mib": self.peak_kib / 1024,
            "end_rss_mib": status.get("VmRSS", 0) / 1024,
            "vmhwm_mib": hwm / 1024,
            "vmhwm_reset": self.hwm_reset,
            "growth_mib": (max(self.peak_kib, hwm if self.hwm_reset else 0) - self.baseline_kib) / 1024,
            "rss_samples": self.samples,
        }


# ---------------------------------------------------------------------- raw aioquic


def _tune(transport: Any) -> None:
    """The UDP socket buffers QUICTransport uses (4 MiB), so that the two differ only above the socket."""
    from pydevts_quic.endpoint import tune_socket

    sock = transport.get_extra_info("socket")
    if sock is not None:
        tune_socket(sock)


def _aioquic_config(is_client: bool) -> Any:
    from aioquic.quic.configuration import QuicConfiguration
    from pydevts_quic import ALPN, make_self_signed

    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=[ALPN], max_datagram_size=MAX_DATAGRAM_SIZE
    )
    if is_client:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.certificate, config.private_key = make_self_signed()
    return config


async def aioquic_recv(args: argparse.Namespace) -> Result:
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.quic import events

    counter = Counter()
    done = asyncio.Event()
    stream_bytes = 0

    class Receiver(QuicConnectionProtocol):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._buf = bytearray()

        def quic_event_received(self, event: Any) -> None:
            nonlocal stream_bytes
            if isinstance(event, events.StreamDataReceived) and not done.is_set():
                buf = self._buf
                buf += event.data
                stream_bytes += len(event.data)
                frames, pos, ended = _parse(buf)
                del buf[:pos]
                if frames:
                    counter.add(frames)
                if ended:
                    done.set()

    server = await serve("127.0.0.1", 0, configuration=_aioquic_config(False), create_protocol=Receiver)
    try:
        _tune(server._transport)
        port = server._transport.get_extra_info("sockname")[1]
        ready(port=port)
        try:
            await asyncio.wait_for(done.wait(), args.deadline)
        except TimeoutError:
            pass
    finally:
        server.close()
    return counter.result(ended=done.is_set(), stream_bytes=stream_bytes)


async def aioquic_send(args: argparse.Namespace) -> Result:
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.quic import events

    class Sender(QuicConnectionProtocol):
        """Wakes the writer when acknowledgements bring the unacknowledged bytes under a limit."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.stream_id = -1
            self.limit = HIGH_WATER
            self.room: asyncio.Event | None = None
            self.terminated = False
            self.waits = 0

        def unacknowledged(self) -> int:
            stream = self._quic._streams.get(self.stream_id)
            if stream is None:
                return 0
            return int(stream.sender._buffer_stop - stream.sender._buffer_start)

        def datagram_received(self, data: bytes | str, addr: Any) -> None:
            super().datagram_received(data, addr)
            if self.room is not None and self.unacknowledged() < self.limit:
                self.room.set()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, events.ConnectionTerminated):
                self.terminated = True
                if self.room is not None:
                    self.room.set()

        async def wait_below(self, limit: int, timeout: float, *, final: bool = False) -> None:
            self.limit = limit
            self.waits += 1
            async with asyncio.timeout(timeout):
                for _ in range(1_000_000):
                    if self.unacknowledged() < limit or self.terminated:
                        break
                    self.room = asyncio.Event()
                    await self.room.wait()
                    self.room = None
            if self.terminated and not final:  # at the end, the receiver closes once it has the end
                raise ConnectionError("aioquic connection terminated while sending")

    frame = HEADER.pack(len(PAYLOAD)) + PAYLOAD
    per_write = max(1, args.batch // len(frame)) if args.batch > 0 else 1
    chunk = frame * per_write
    sent = 0
    async with asyncio.timeout(args.deadline):
        async with connect(
            "127.0.0.1", args.port, configuration=_aioquic_config(True), create_protocol=Sender
        ) as proto:
            assert isinstance(proto, Sender)
            _tune(proto._transport)
            quic = proto._quic
            proto.stream_id = sid = quic.get_next_available_stream_id()
            clock = SendClock(args.seconds)
            checks = max(1, CHECK_EVERY // per_write)
            writes = 0
            while sent < args.n:
                k = min(per_write, args.n - sent)
                quic.send_stream_data(sid, chunk if k == per_write else frame * k)
                proto.transmit()
                sent += k
                writes += 1
                if proto.unacknowledged() >= HIGH_WATER:
                    await proto.wait_below(HIGH_WATER, args.deadline)
                if writes % checks == 0 and clock.expired():
                    break
            quic.send_stream_data(sid, END_FRAME)
            proto.transmit()
            send_s = time.perf_counter() - clock.start
            await proto.wait_below(1, args.deadline, final=True)  # all acknowledged before closing
            waits = proto.waits - 1
    return {**clock.result(sent, args.n), "send_s": send_s, "writes": writes, "high_water_waits": waits}


# ---------------------------------------------------------------------- pydevts rows


def _pydevts_role(name: str) -> Callable[[argparse.Namespace], Awaitable[None]]:
    async def role(args: argparse.Namespace) -> None:
        from . import pydevts_peers

        await pydevts_peers.ROLES[name](args)

    return role


# ---------------------------------------------------------------------- cold connects


def _make_transport(name: str) -> Any:
    if name == "quic":
        from pydevts_quic import QUICTransport

        return QUICTransport()
    from pydevts_tcp import TCPTransport

    return TCPTransport()


async def connect_listen(args: argparse.Namespace) -> Result:
    from pydevts.protocols import Address

    transport = _make_transport(args.transport)
    listener = await transport.listen(Address("127.0.0.1", 0))
    accepted = 0

    async def handler(conn: Any) -> None:
        nonlocal accepted
        accepted += 1
        try:
            with anyio.move_on_after(args.deadline):
                for _ in range(1_000_000):
                    await conn.receive_frames()
        except Exception:
            pass
        finally:
            await conn.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        ready(port=listener.address.port)
        await anyio.sleep(args.deadline)
        tg.cancel_scope.cancel()
    await listener.aclose()
    return {"accepted": accepted}


async def connect_dial(args: argparse.Namespace) -> Result:
    from pydevts.protocols import Address

    address = Address("127.0.0.1", args.port)
    samples: list[int] = []
    with anyio.fail_after(args.deadline):
        for i in range(args.warmup + args.count):
            transport = _make_transport(args.transport)  # a new one each time: nothing is reused
            t0 = time.perf_counter_ns()
            with anyio.fail_after(CONNECT_TIMEOUT):
                conn = await transport.connect(address)
            dt = time.perf_counter_ns() - t0
            await conn.aclose()
            if i >= args.warmup:
                samples.append(dt)
    return _percentiles_ms(samples)


def _percentiles_ms(samples_ns: list[int]) -> Result:
    ms = sorted(s / 1e6 for s in samples_ns)
    if not ms:
        return {"count": 0}

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return {
        "count": len(ms),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


# ---------------------------------------------------------------------- join


async def join(args: argparse.Namespace) -> None:
    from pydevts import MemberEvent, Node
    from pydevts.plugins import Registry

    registry_ms = 0.0
    registry = None
    if args.prebuilt_registry:  # plugin discovery (entry points) outside the timed part
        t = time.perf_counter()
        registry = Registry()
        registry_ms = (time.perf_counter() - t) * 1e3
    node = Node(args.port, join_only=True, transport=args.transport, registry=registry)
    seen = anyio.Event()

    async def on_member(event: MemberEvent) -> None:
        if event.member.id == args.peer_id and event.member.alive:
            seen.set()

    node.on_lifecycle(on_member)
    with anyio.fail_after(args.deadline):
        t0 = time.perf_counter()
        async with node:
            entered = time.perf_counter()
            if not any(m.id == args.peer_id and m.alive for m in node.members):
                with anyio.fail_after(JOIN_TIMEOUT):
                    await seen.wait()
            t1 = time.perf_counter()
            emit(
                "result",
                join_ms=(t1 - t0) * 1e3,
                enter_ms=(entered - t0) * 1e3,
                prebuilt_registry=args.prebuilt_registry,
                registry_ms=registry_ms,
            )
        # leaving is not timed


# ---------------------------------------------------------------------- slow receiver


async def mem_recv(args: argparse.Namespace) -> None:
    from pydevts import MemberEvent, Node

    node = Node(args.port, transport=args.transport)
    counter = Counter()
    done = anyio.Event()
    received_bytes = 0
    watch = RssWatch()

    @node.on("blob")
    async def blob(sender: str, payload: Any) -> None:
        nonlocal received_bytes
        counter.add()
        received_bytes += len(payload)
        await anyio.sleep(args.handler_sleep)

    @node.on("drained")  # queued behind every event sent before it: answered once they are handled
    async def drained(sender: str, payload: Any) -> int:
        done.set()
        return counter.count

    sender_gone = anyio.Event()

    @node.on_lifecycle
    async def on_member(event: MemberEvent) -> None:
        if event.kind in ("left", "failed"):
            sender_gone.set()

    async with node:
        watch.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run, args.deadline)
            ready(id=node.id, address=node.address)
            with anyio.move_on_after(args.deadline):
                await done.wait()
            tg.cancel_scope.cancel()
        emit(
            "result",
            **counter.result(ended=done.is_set(), received_bytes=received_bytes),
            **watch.result(),
            statistics=node.statistics(),
        )
        # Stay a member until the sender has its reply and leaves (leaving now could drop the reply).
        with anyio.move_on_after(LEAVE_WAIT):
            await sender_gone.wait()


async def mem_send(args: argparse.Namespace) -> None:
    from pydevts import MemberEvent, Node

    node = Node(args.port, join_only=True, transport=args.transport)
    seen = anyio.Event()

    async def on_member(event: MemberEvent) -> None:
        if event.member.id == args.peer_id and event.member.alive:
            seen.set()

    node.on_lifecycle(on_member)
    payload = b"x" * args.payload_size
    limit = max(1, args.max_bytes // args.payload_size)
    watch = RssWatch()
    sent = 0
    longest_ns = 0
    send_s = drain_s = 0.0
    delivered = -1
    error = ""
    async with node:
        if not any(m.id == args.peer_id and m.alive for m in node.members):
            with anyio.fail_after(JOIN_TIMEOUT):
                await seen.wait()
        watch.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run, args.deadline)
            clock = SendClock(args.seconds)
            try:
                with anyio.fail_after(args.deadline):
                    while sent < limit and not clock.expired():
                        t0 = time.perf_counter_ns()
                        await node.send(args.peer_id, "blob", payload)
                        longest_ns = max(longest_ns, time.perf_counter_ns() - t0)
                        sent += 1
                    send_s = time.perf_counter() - clock.start
                    remaining = clock.start + args.deadline - time.perf_counter()
                    delivered = await node.request(args.peer_id, "drained", None, timeout=remaining)
                    drain_s = time.perf_counter() - clock.start - send_s
            except Exception as exc:  # reported, not raised: the numbers so far still count
                send_s = send_s or time.perf_counter() - clock.start
                error = f"{type(exc).__name__}: {exc}"
            tg.cancel_scope.cancel()
        emit(
            "result",
            sent=sent,
            limit=limit,
            sent_bytes=sent * args.payload_size,
            send_s=send_s,
            sent_per_s=sent / send_s if send_s > 0 else 0.0,
            longest_send_ms=longest_ns / 1e6,
            delivered=delivered,
            drain_s=drain_s,
            error=error,
            **watch.result(),
        )


# ---------------------------------------------------------------------- dispatch

ASYNCIO_ONLY = {"aioquic"}

KINDS: dict[str, dict[str, Callable[[argparse.Namespace], Awaitable[Any]]]] = {
    "aioquic": {"recv": aioquic_recv, "send": aioquic_send},
    "pydevts": {name: _pydevts_role(name) for name in ("recv", "send", "ping")},
    "connect": {"listen": connect_listen, "dial": connect_dial},
    "join": {"join": join},
    "mem": {"recv": mem_recv, "send": mem_send},
}


def main(argv: list[str]) -> int:
    args = peer_arguments().parse_args(argv)
    roles = KINDS[args.kind]
    if args.role not in roles:
        raise SystemExit(f"unknown role {args.role!r} for {args.kind}; choose from {sorted(roles)}")
    role = roles[args.role]
    if args.kind in ASYNCIO_ONLY:
        result = asyncio.run(role(args))
    else:
        result = anyio.run(role, args, backend=args.backend)
    if result is not None:
        emit("result", **result)
    return 0
