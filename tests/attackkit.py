"""A kit for attacking a real cluster: three agent processes (open or keyring mode), raw packets, RSS.

Used by ``test_attacks.py`` and ``test_attacks_resources.py``. The attacker is
the test process: it sends failure-detector datagrams from a plain UDP
socket, speaks pydevts framing over raw TCP (:class:`inproc.RawPeer`), or
runs the real handshake (with or without a key) and then sends frames no
real node would send. The nodes are :class:`AgentProcess` es, driven by JSON
lines; what they report (``received`` events, membership, stderr log lines)
is what the tests assert on.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from agents import AgentProcess, free_port
from pydevts.protocols import Address, Connection
from pydevts.wire import Hello
from pydevts.wire.handshake import open_link
from pydevts.wire.keyring import Keyring, generate_key
from pydevts.wire.secure import SealedDatagrams

__all__ = [
    "CLUSTER_NAME",
    "MODES",
    "Cluster",
    "crash_datagrams",
    "handshaken",
    "log_lines_since",
    "pydevts_cli",
    "received",
    "received_payload",
    "rss_mib",
    "seal",
    "send_udp",
    "swim_datagram",
    "three_nodes",
    "wait_log_since",
    "write_keyring",
]

MODES = ("open", "keyring")
#: The cluster name: an outsider of a keyed cluster must never learn it.
CLUSTER_NAME = "attack-secret-cluster-name"
PYDEVTS = [sys.executable, "-m", "pydevts"]


# ------------------------------------------------------------------ files, processes


def write_keyring(directory: Path, name: str = "cluster.keyring") -> Path:
    """A keyring file with one new key (mode 0600)."""
    path = directory / name
    path.write_text(generate_key() + "\n")
    path.chmod(0o600)
    return path


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for process {pid}")


def received(
    proc: AgentProcess, pred: Callable[[dict[str, Any]], bool] = lambda e: True
) -> list[dict[str, Any]]:
    """The ``received`` events (handled events and requests) ``proc`` reported that match ``pred``."""
    return [e for e in proc.events if e.get("ev") == "received" and pred(e)]


def received_payload(payload: Any) -> Callable[[dict[str, Any]], bool]:
    """A ``wait_for`` predicate: a ``received`` event with exactly this payload."""
    return lambda e: e.get("ev") == "received" and e.get("payload") == payload


def log_lines_since(proc: AgentProcess, start: int, *words: str) -> list[str]:
    """``proc``'s stderr lines from index ``start`` on that contain every one of ``words``."""
    return [line for line in proc.log[start:] if all(w in line for w in words)]


async def wait_log_since(proc: AgentProcess, start: int, text: str, timeout: float = 5.0) -> str:
    """The first stderr line of ``proc`` from index ``start`` on with ``text``; fail after ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            for line in proc.log[start:]:
                if text in line:
                    return line
            await anyio.sleep(0.02)
    raise AssertionError(
        f"{proc.name}: no log line with {text!r} within {timeout:g} s; tail: {proc.log[-15:]}"
    )


async def pydevts_cli(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m pydevts ARGS``; (exit status, stdout, stderr). Killed after ``timeout``."""
    with anyio.fail_after(timeout):
        done = await anyio.run_process([*PYDEVTS, *args], check=False)
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


class Cluster:
    """Three (or more) agent processes of one cluster, in ``mode`` "open" or "keyring"."""

    def __init__(
        self, mode: str, port: int, keyring_path: Path | None, procs: list[AgentProcess], backend: str
    ) -> None:
        self.mode = mode
        self.port = port
        self.keyring_path = keyring_path
        self.keyring = Keyring.from_file(keyring_path) if keyring_path is not None else None
        self.procs = procs
        self.backend = backend
        self.baseline_rss: dict[str, float] = {}

    @property
    def keyed(self) -> bool:
        return self.keyring is not None

    def node_options(self) -> list[str]:
        """The options every node (and every CLI client) of this cluster needs."""
        extra = ["--keyring", str(self.keyring_path)] if self.keyring_path is not None else []
        return ["--cluster", CLUSTER_NAME, *extra]

    def client_options(self, proc: AgentProcess | None = None) -> list[str]:
        """``--join HOST:PORT --cluster NAME [--keyring PATH]`` for ``pydevts members``/``emit``."""
        return ["--join", self.address(proc or self.procs[0]), *self.node_options()]

    def proc(self, name: str) -> AgentProcess:
        return next(p for p in self.procs if p.name == name)

    @staticmethod
    def address(proc: AgentProcess) -> str:
        return str(proc.started["address"])

    @staticmethod
    def port_of(proc: AgentProcess) -> int:
        return int(Cluster.address(proc).rsplit(":", 1)[1])

    @staticmethod
    def pid(proc: AgentProcess) -> int:
        assert proc.process is not None
        return int(proc.process.pid)

    # ------------------------------------------------------------ health

    def assert_up(self) -> None:
        """Every node process still runs."""
        for proc in self.procs:
            assert proc.process is not None
            assert proc.process.returncode is None, (
                f"{proc.name} exited with status {proc.process.returncode}; log tail: {proc.log[-30:]}"
            )

    async def views(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Each node's member list: {node name: {member id: member record}}."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for proc in self.procs:
            result = await proc.call(op="members", timeout=5)
            out[proc.name] = {m["id"]: m for m in result["members"]}
        return out

    async def wait_all_alive(
        self,
        timeout: float = 10.0,
        extra: Callable[[dict[str, dict[str, dict[str, Any]]]], bool] | None = None,
    ) -> float:
        """Wait until every node sees every node (and only those) ``alive``; seconds it took."""
        ids = {p.name for p in self.procs}
        start = time.monotonic()
        last: dict[str, dict[str, dict[str, Any]]] = {}
        with anyio.move_on_after(timeout):
            while True:
                self.assert_up()
                last = await self.views()
                if all(
                    {i for i, m in view.items() if m["state"] in ("alive", "suspect")} == ids
                    and all(view.get(i, {}).get("state") == "alive" for i in ids)
                    for view in last.values()
                ) and (extra is None or extra(last)):
                    return time.monotonic() - start
                await anyio.sleep(0.05)
        summary = {
            name: {i: (m["state"], m["incarnation"]) for i, m in view.items()} for name, view in last.items()
        }
        raise AssertionError(f"not every member alive in every view after {timeout:g} s: {summary}")

    async def assert_flowing(self, tag: str, timeout: float = 5.0) -> float:
        """Events (emit, send) reach everyone exactly once and requests are answered; seconds it took."""
        start = time.monotonic()
        for sender in self.procs:
            payload = {"tag": tag, "from": sender.name}
            result = await sender.call(op="emit", name="greet", payload=payload, timeout=timeout)
            assert result["ok"], f"{sender.name} could not emit: {result}"
        for proc in self.procs:
            for sender in self.procs:
                if sender is proc:
                    continue
                await proc.wait_for(
                    received_payload({"tag": tag, "from": sender.name}),
                    timeout,
                    f"{sender.name}'s event {tag!r}",
                )
        a, b, c = self.procs[:3]
        sent = await c.call(op="send", to=b.name, name="greet", payload={"tag": tag, "send": "c->b"})
        assert sent["ok"], sent
        await b.wait_for(
            lambda e: e.get("ev") == "received" and e.get("payload") == {"tag": tag, "send": "c->b"},
            timeout,
            f"c's send {tag!r}",
        )
        for asker, target in ((c, b), (a, c), (b, a)):
            reply = await asker.call(
                op="request", to=target.name, name="ping", payload=tag, timeout=timeout + 1
            )
            assert reply["ok"] and reply["value"] == {"echo": tag, "by": target.name}, (
                f"{asker.name} -> {target.name}: {reply}"
            )
        await anyio.sleep(0.2)  # any duplicate would have arrived by now
        for proc in self.procs:
            mine = received(
                proc, lambda e: isinstance(e.get("payload"), dict) and e["payload"].get("tag") == tag
            )
            want = len(self.procs) - 1 + (1 if proc is b else 0)  # the emits, and c's send to b
            assert len(mine) == want, (
                f"{proc.name} got {len(mine)} messages tagged {tag!r}, not {want}: {mine}"
            )
        return time.monotonic() - start

    async def assert_healthy(self, tag: str, timeout: float = 10.0) -> float:
        """Processes up, everyone alive in every view, events and requests flowing; seconds to recover."""
        start = time.monotonic()
        await self.wait_all_alive(timeout)
        await self.assert_flowing(tag)
        self.assert_up()
        return time.monotonic() - start

    # ------------------------------------------------------------ memory

    def rss(self) -> dict[str, float]:
        return {p.name: round(rss_mib(self.pid(p)), 1) for p in self.procs}

    def record_baseline(self) -> dict[str, float]:
        self.baseline_rss = self.rss()
        return self.baseline_rss

    async def rss_settled(
        self, slack_mib: float = 30.0, timeout: float = 15.0
    ) -> tuple[bool, dict[str, float]]:
        """Wait until every RSS is within ``slack_mib`` of its baseline: (whether it is, last figures)."""
        assert self.baseline_rss, "record_baseline() first"
        now = self.rss()
        with anyio.move_on_after(timeout):
            while True:
                now = self.rss()
                if all(now[n] <= self.baseline_rss.get(n, now[n]) + slack_mib for n in now):
                    return True, now
                await anyio.sleep(0.25)
        return False, now

    async def wait_rss_back(self, slack_mib: float = 30.0, timeout: float = 15.0) -> dict[str, float]:
        """Wait until every node's RSS is within ``slack_mib`` of its baseline; the last figures."""
        back, now = await self.rss_settled(slack_mib, timeout)
        assert back, (
            f"RSS (MiB) not back within {slack_mib:g} MiB of the baseline after {timeout:g} s: "
            f"baseline {self.baseline_rss}, now {now}"
        )
        return now


@asynccontextmanager
async def three_nodes(
    directory: Path,
    mode: str,
    *,
    backend: str = "asyncio",
    names: Sequence[str] = ("a", "b", "c"),
    extra: Sequence[str] = (),
    wrap: Sequence[str] = (),
    keyring_path: Path | None = None,
) -> AsyncIterator[Cluster]:
    """Start one agent per name (the first starts the cluster, the others join); stop them all on exit.

    ``wrap`` goes before the agent's command line (e.g. ``prlimit --nofile=1024``).
    """
    assert mode in MODES, mode
    port = free_port()
    if mode == "keyring" and keyring_path is None:
        keyring_path = write_keyring(directory)
    if mode == "open":
        keyring_path = None
    options = ["--cluster", CLUSTER_NAME, *(["--keyring", str(keyring_path)] if keyring_path else [])]
    procs = [
        AgentProcess(name, [str(port), "--id", name, *options, "--backend", backend, *extra])
        for name in names
    ]
    for proc in procs:
        proc.argv = [*wrap, *proc.argv]
    cluster = Cluster(mode, port, keyring_path, procs, backend)
    async with anyio.create_task_group() as tg:
        try:
            await procs[0].start(tg)
            await procs[0].wait_for(lambda e: e.get("ev") == "started", 20, "start")
            for proc in procs[1:]:
                await proc.start(tg)
            for proc in procs[1:]:
                await proc.wait_for(lambda e: e.get("ev") == "started", 20, "start")
            await cluster.wait_all_alive(20)
            yield cluster
        finally:
            with anyio.CancelScope(shield=True):
                for proc in procs:
                    await proc.stop(timeout=5)
            tg.cancel_scope.cancel()


# ------------------------------------------------------------------ datagrams


def swim_datagram(message: Any, sender: str = "c", cluster: str = CLUSTER_NAME) -> bytes:
    """A failure-detector datagram as the peer router sends it (JSON: cluster, sender, SWIM message)."""
    return json.dumps({"c": cluster, "f": sender, "m": message}).encode()


def crash_datagrams(victim_id: str, cluster: str = CLUSTER_NAME) -> list[bytes]:
    """The datagrams that each crashed a node of the old main (and some that are merely malformed)."""
    nul = "127.0.0.1\x00:7000"
    messages: list[Any] = [
        {"t": "gossip", "u": [["alive", "evil", nul, 1, {}]]},  # an invented member at a NUL address
        {"t": "gossip", "u": [["suspect", victim_id, nul, 0, None]]},
        {"t": "ping", "seq": 1, "addr": nul},
        {"t": "ping-req", "seq": 1, "target": "evil", "addr": nul},
        {"t": "gossip", "u": [["suspect", victim_id, "127.0.0.1:1", 10**4299, None]]},  # 4,300 digits
        {"t": "ping", "seq": 10**4299},
        {"t": "gossip", "u": [["alive", "evil", "127.0.0.1:1", True, {}]]},
    ]
    return [
        *(swim_datagram(m, cluster=cluster) for m in messages),
        swim_datagram({"t": "ping", "seq": 1}, sender="evil\x00", cluster=cluster),
        b"[" * 50_000,
        b"\xff",
    ]


def send_udp(address: str, datagrams: Iterable[bytes], prefix: bytes = b"") -> int:
    """Send each datagram to ``address`` (HOST:PORT) from a plain socket; how many were sent."""
    host, port = address.rsplit(":", 1)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(prefix + data, (host, int(port)))
            sent += 1
    return sent


class _NoEndpoint:
    def send(self, data: bytes, address: Address) -> None:
        raise AssertionError("not for sending")

    async def receive(self) -> bytes:
        raise AssertionError("not for receiving")

    async def aclose(self) -> None:
        pass


def seal(keyring: Keyring, data: bytes) -> bytes:
    """``data`` sealed as a member of a keyed cluster seals its datagrams (an insider's datagram)."""
    return SealedDatagrams(_NoEndpoint(), keyring).seal(data)


# ------------------------------------------------------------------ connections


@asynccontextmanager
async def handshaken(
    address: str,
    *,
    node_id: str,
    role: str = "client",
    keyring: Keyring | None = None,
    cluster: str = CLUSTER_NAME,
    advertise: str = "0.0.0.0:0",
    extensions: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[tuple[Connection, list[bytes]]]:
    """A TCP connection to ``address`` after the real handshake (keyed if ``keyring``).

    Yields the connection (sealed in keyring mode: what is sent on it is sealed, so
    frames reach the node's parsers) and the frames that came with the node's HELLO.
    """
    from pydevts_tcp import TCPTransport

    conn = await TCPTransport().connect(Address.parse(address))
    hello = Hello(
        cluster=cluster,
        node_id=node_id,
        address=advertise,
        serializer="msgpack",
        role=role,
        extensions=extensions or {},
    )
    link = await open_link(conn, hello, initiated=True, timeout=timeout, keyring=keyring)
    try:
        yield link.conn, list(link._early)
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await link.conn.aclose()
            except Exception:
                pass
