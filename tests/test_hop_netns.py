"""The hop router across real, isolated networks: Linux network namespaces and veth pairs.

::

    netns A (10.201.N.1)  --veth--  netns X, the bridge  --veth--  netns B (10.202.N.2)
      nodes a1, a2         10.201.N.0/24   node x    10.202.N.0/24   nodes b1, b2

X does not forward packets, so nodes in A cannot reach nodes in B at all:
everything between them goes through the node in X, over TCP. The test
makes the namespaces and removes them; it needs root and ``ip`` (iproute2,
which ``make install`` installs when missing) and is skipped, saying why,
without them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import pytest
from agents import AgentProcess, wait_alive

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PORT = 7000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed; `make install` installs it"
    probe = f"pdprobe{os.getpid()}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace here: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Networks:
    """Namespaces A, X (the bridge) and B, wired A-X and X-B; removed on close."""

    def __init__(self) -> None:
        n = os.getpid() % 200 + 1
        tag = f"{os.getpid() % 100000}"
        self.a, self.x, self.b = f"pdA{tag}", f"pdX{tag}", f"pdB{tag}"
        self.ip_a, self.ip_xa = f"10.201.{n}.1", f"10.201.{n}.2"
        self.ip_xb, self.ip_b = f"10.202.{n}.1", f"10.202.{n}.2"
        self.xb_link = f"xb{tag}"  # X's end of the X-B cable

    def up(self) -> None:
        for ns in (self.a, self.x, self.b):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        self._cable(self.a, f"ax{self._tag}", self.ip_a, self.x, f"xa{self._tag}", self.ip_xa)
        self._cable(self.x, self.xb_link, self.ip_xb, self.b, f"bx{self._tag}", self.ip_b)
        _ip("netns", "exec", self.x, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")

    @property
    def _tag(self) -> str:
        return self.a[3:]

    @staticmethod
    def _cable(ns1: str, if1: str, ip1: str, ns2: str, if2: str, ip2: str) -> None:
        _ip("link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
        for ns, name, addr in ((ns1, if1, ip1), (ns2, if2, ip2)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", name)
            _ip("-n", ns, "link", "set", name, "up")

    def set_bridge_link(self, up: bool) -> None:
        _ip("-n", self.x, "link", "set", self.xb_link, "up" if up else "down")

    def down(self) -> None:
        for ns in (self.a, self.x, self.b):
            _ip("netns", "del", ns, check=False)  # deleting a namespace deletes its veth ends


@pytest.fixture
def nets() -> Iterator[Networks]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    nets = Networks()
    try:
        nets.up()
        yield nets
    finally:
        nets.down()


def in_netns(ns: str, proc: AgentProcess) -> AgentProcess:
    proc.argv = ["ip", "netns", "exec", ns, *proc.argv]
    return proc


def hop_node(node_id: str, host: str, port: int, cluster_host: str, advertise: str = "") -> list[str]:
    argv = [str(PORT), "--id", node_id, "--router", "hop", "--host", host, "--port", str(port)]
    argv += ["--cluster-host", cluster_host]
    if advertise:
        argv += ["--advertise", advertise]
    return argv


def failed(node_id: str, after: float = 0.0) -> object:
    """Matches a "failed" member event for ``node_id`` written at or after wall-clock time ``after``."""
    return lambda e: (
        e.get("ev") == "member" and e["id"] == node_id and e["kind"] == "failed" and e["t"] >= after
    )


async def test_two_networks_talk_through_a_bridge_node_and_heal(nets: Networks, anyio_backend: str) -> None:
    everyone = {"a1", "a2", "x", "b1", "b2"}
    with anyio.fail_after(90):
        specs = [
            (nets.x, "x", hop_node("x", "0.0.0.0", PORT, nets.ip_xa, advertise=nets.ip_xa)),
            (nets.a, "a1", hop_node("a1", nets.ip_a, 7101, nets.ip_xa)),
            (nets.a, "a2", hop_node("a2", nets.ip_a, 7102, nets.ip_xa)),
            (nets.b, "b1", hop_node("b1", nets.ip_b, 7201, nets.ip_xb)),
            (nets.b, "b2", hop_node("b2", nets.ip_b, 7202, nets.ip_xb)),
        ]
        procs = {
            name: in_netns(ns, AgentProcess(name, [*argv, "--backend", anyio_backend]))
            for ns, name, argv in specs
        }
        try:
            async with anyio.create_task_group() as tg:
                for name, proc in procs.items():
                    await proc.start(tg)
                    await proc.wait_for(lambda e: e.get("ev") == "started", 20, f"{name} started")
                for proc in procs.values():
                    await wait_alive(proc, everyone, timeout=20)
                a1, b2 = procs["a1"], procs["b2"]
                members = (await a1.call(op="members"))["members"]
                route = {m["id"]: (m["next_hop"], m["distance"]) for m in members}
                assert route["b2"] == ("x", 2) and route["x"] == ("x", 1), route

                # emit, send and request across the bridge
                assert (await a1.call(op="emit", name="greet", payload="hello all"))["ok"]
                for name in everyone - {"a1"}:
                    await procs[name].wait_for(
                        lambda e: e.get("ev") == "received" and e["payload"] == "hello all", 10, name
                    )
                assert (await a1.call(op="send", to="b2", name="greet", payload="to b2"))["ok"]
                await b2.wait_for(lambda e: e.get("ev") == "received" and e["payload"] == "to b2", 10)
                reply = await b2.call(op="request", to="a1", name="ping", payload=[7], timeout=5)
                assert reply["ok"] and reply["value"] == {"echo": [7], "by": "a1"}, reply

                # the bridge loses its cable to B: each side reports the other failed
                nets.set_bridge_link(False)
                for name in ("b1", "b2"):
                    await a1.wait_for(failed(name), 15, f"a1 sees {name} failed")  # type: ignore[arg-type]
                    await procs["a2"].wait_for(failed(name), 15, f"a2 sees {name} failed")  # type: ignore[arg-type]
                for name in ("a1", "a2", "x"):
                    await b2.wait_for(failed(name), 15, f"b2 sees {name} failed")  # type: ignore[arg-type]
                lost = await a1.call(op="send", to="b2", name="greet", payload="lost")
                assert not lost["ok"] and lost["error"] == "UnknownNodeError", lost
                assert "unreachable" in lost["message"], lost

                # the cable comes back: routes and members heal with no help
                nets.set_bridge_link(True)
                for proc in procs.values():
                    await wait_alive(proc, everyone, timeout=30)
                reply = await b2.call(op="request", to="a1", name="ping", payload=[8], timeout=5)
                assert reply["ok"], reply
                received = [e for e in b2.events if e.get("ev") == "received" and e["payload"] == "hello all"]
                assert len(received) == 1, "a broadcast was delivered twice"

                # the CLI shows each member's next hop and distance
                cli = ["ip", "netns", "exec", nets.a, sys.executable, "-m", "pydevts", "members"]
                with anyio.move_on_after(15):  # routes settle a moment after the views heal
                    while True:
                        done = await anyio.run_process([*cli, "--join", f"{nets.ip_a}:7101"], check=False)
                        table = done.stdout.decode()
                        assert done.returncode == 0, done.stderr.decode()
                        rows = {line.split()[0]: line.split() for line in table.strip().split("\n")[1:]}
                        if rows.get("b1", [])[2:5] == ["alive", "x", "2"]:
                            break
                        await anyio.sleep(0.2)
                assert table.split("\n")[0].split() == ["ID", "ADDRESS", "STATE", "VIA", "HOPS", "TAGS"]
                assert rows["b1"][2:5] == ["alive", "x", "2"], table

                # the bridging node dies: its connections reset, each side fails the other at once
                killed = time.time()
                procs["x"].signal(signal.SIGKILL)
                for name in ("b1", "b2", "x"):
                    gone = failed(name, killed)
                    await a1.wait_for(gone, 10, f"a1 sees {name} failed after the bridge died")  # type: ignore[arg-type]
                await b2.wait_for(failed("a1", killed), 10, "b2 sees a1 failed after the bridge died")  # type: ignore[arg-type]
                assert time.time() - killed < 5
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for proc in procs.values():
                    await proc.stop(timeout=5)
