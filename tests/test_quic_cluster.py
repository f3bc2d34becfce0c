"""Clusters over the QUIC transport: in one process, and as separate processes (both backends)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import agents, wait_alive
from certs import CA
from inproc import cluster, free_port, wait_for_mesh, wait_until
from pydevts import Node
from pydevts.errors import JoinError
from pydevts.plugins import Registry
from pydevts.testing import check_router
from pydevts_peer import PeerRouter

pytestmark = pytest.mark.anyio

PYDEVTS = [sys.executable, "-m", "pydevts"]


def quic_node(port: int, node_id: str, got: list[tuple[str, str, Any]], **options: Any) -> Node:
    node = Node(port, node_id=node_id, transport="quic", transport_options=options or None)

    @node.on("greet")
    async def greet(sender: str, payload: Any) -> None:
        got.append((node_id, sender, payload))

    @node.on("whoami")
    async def whoami(sender: str, payload: Any) -> Any:
        return {"me": node_id, "you": sender, "echo": payload}

    return node


async def test_three_nodes_over_quic_exchange_and_leave() -> None:
    port, got = free_port(), []
    nodes = [quic_node(port, f"q{i}", got) for i in range(3)]
    left: list[str] = []

    @nodes[0].on_lifecycle
    async def record(event: Any) -> None:
        if event.kind == "left":
            left.append(event.member.id)

    with anyio.fail_after(30):
        async with cluster(nodes[0], nodes[1]) as (q0, q1):
            async with nodes[2] as q2:
                await wait_for_mesh([q0, q1, q2])
                await q0.emit("greet", "all")
                await q1.send("q2", "greet", "one")
                assert await q2.request("q0", "whoami", [1]) == {"me": "q0", "you": "q2", "echo": [1]}
                await wait_until(lambda: len(got) == 3, 5, "3 deliveries")
                assert sorted(got) == [("q1", "q0", "all"), ("q2", "q0", "all"), ("q2", "q1", "one")]
            await wait_until(lambda: left == ["q2"], 5, "q2 reported left")


async def test_a_cluster_with_its_own_ca_refuses_a_node_it_does_not_trust(tmp_path: Path) -> None:
    ours, theirs = CA(tmp_path, "ours"), CA(tmp_path, "theirs")
    port, got = free_port(), []
    with anyio.fail_after(30):
        first = quic_node(port, "c0", got, **ours.issue("c0"))
        second = quic_node(port, "c1", got, **ours.issue("c1"))
        async with cluster(first, second):
            await first.emit("greet", "signed")
            await wait_until(lambda: got == [("c1", "c0", "signed")], 5, "delivery in the CA cluster")
            stranger = Node(
                port, node_id="x", transport="quic", transport_options=theirs.issue("x"), join_timeout=5
            )
            with pytest.raises(JoinError, match=r"TLS handshake with .* failed: unable to get local issuer"):
                async with stranger:
                    pass
            assert {m.id for m in first.members} == {"c0", "c1"}


async def test_the_peer_router_honours_its_contract_with_quic_installed() -> None:
    # The router contract runs over the in-memory transport; this makes sure the
    # quic distribution being installed changes nothing there. The whole contract
    # (every rule, same router, same transport) runs in pydevts_routers/peer/tests/
    # test_state.py, in this same environment: here only a few quick rules.
    assert "quic" in Registry().names("transport")
    await check_router(lambda: PeerRouter(), rules=["join", "exactly-once emit", "send and request"])


SENDER = """
import sys, time, anyio
from pydevts import Node

async def main(port, peer):
    node = Node(port, transport="quic", join_only=True)
    async with node:
        with anyio.fail_after(10):
            while not any(m.id == peer and m.alive for m in node.members):
                await anyio.sleep(0.01)
        sent, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5 and sent < 5000:
            await node.send(peer, "blob", b"x" * 16384)
            sent += 1
        await node.send(peer, "end", sent)
    # the node has left; the process ends now, with what it sent maybe still unacknowledged

anyio.run(main, int(sys.argv[1]), sys.argv[2], backend=sys.argv[3])
"""


@pytest.mark.slow
async def test_what_a_node_sent_before_leaving_arrives_though_its_process_exits(
    anyio_backend: str, tmp_path: Path
) -> None:
    port = free_port()
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    receiver = Node(port, node_id="slow", transport="quic")
    handled, ended = 0, anyio.Event()
    announced: list[int] = []

    @receiver.on("blob")
    async def blob(sender: str, payload: Any) -> None:
        nonlocal handled
        handled += 1
        await anyio.sleep(0.002)  # slower than the sender: the flow-control window fills

    @receiver.on("end")
    async def end(sender: str, payload: Any) -> None:
        announced.append(payload)
        ended.set()

    with anyio.fail_after(60):
        async with receiver:
            done = await anyio.run_process([sys.executable, str(script), str(port), "slow", anyio_backend])
            assert done.returncode == 0
            with anyio.fail_after(20):
                await ended.wait()
            assert announced and handled == announced[0], f"handled {handled} of {announced}"


@pytest.mark.slow
async def test_three_processes_over_quic_join_exchange_and_detect_a_kill(anyio_backend: str) -> None:
    port = free_port()
    quic = ["--transport", "quic"]
    with anyio.fail_after(60):
        async with agents([("u1", [str(port), "--id", "u1", *quic])], anyio_backend) as (u1,):
            first = await u1.wait_for(lambda e: e.get("ev") == "started", 15, "start")
            assert first["new_cluster"] is True
            specs = [(n, [str(port), "--id", n, *quic]) for n in ("u2", "u3")]
            async with agents(specs, anyio_backend) as (u2, u3):
                everyone = {"u1", "u2", "u3"}
                for proc in (u1, u2, u3):
                    await wait_alive(proc, everyone)
                assert (await u1.call(op="emit", name="greet", payload={"k": 1}))["ok"]
                for proc in (u2, u3):
                    await proc.wait_for(lambda e: e.get("ev") == "received" and e["sender"] == "u1", 10)
                assert (await u2.call(op="send", to="u3", name="greet", payload="direct"))["ok"]
                await u3.wait_for(lambda e: e.get("ev") == "received" and e["payload"] == "direct", 10)
                reply = await u3.call(op="request", to="u1", name="ping", payload=[1, 2], timeout=5)
                assert reply["ok"] and reply["value"] == {"echo": [1, 2], "by": "u1"}

                killed_at = anyio.current_time()
                u3.signal(signal.SIGKILL)
                for proc in (u1, u2):
                    await proc.wait_for(
                        lambda e: e.get("ev") == "member" and e["id"] == "u3" and e["kind"] == "failed",
                        8,
                        "u3 failed",
                    )
                    await wait_alive(proc, {"u1", "u2"})
                assert anyio.current_time() - killed_at < 8

                # the CLI talks QUIC too, with transport options passed through
                cli = [*PYDEVTS, "members", "--join", f"127.0.0.1:{port}", "--json"]
                cli += ["--transport", "quic", "--transport-option", "idle_timeout=5"]
                done = await anyio.run_process(cli, check=False)
                assert done.returncode == 0, done.stderr.decode()
                listed = {m["id"]: m["state"] for m in json.loads(done.stdout)}
                assert listed == {"u1": "alive", "u2": "alive", "u3": "failed"}
