"""Three nodes as three processes on loopback: join, events, leave and kill."""

from __future__ import annotations

import signal

import anyio
import pytest
from agents import agents, free_port, wait_alive

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _received(proc, name, sender):  # type: ignore[no-untyped-def]
    return [
        e for e in proc.events if e.get("ev") == "received" and e["name"] == name and e["sender"] == sender
    ]


async def test_three_processes_join_exchange_leave_and_die(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(60):
        async with agents([("n1", [str(port), "--id", "n1"])], anyio_backend) as (n1,):
            first = await n1.wait_for(lambda e: e.get("ev") == "started", 15, "start")
            assert first["new_cluster"] is True
            assert first["address"] == f"127.0.0.1:{port}"
            await n1.wait_log(f"started a new cluster 'default' on cluster port 127.0.0.1:{port}")
            specs = [(n, [str(port), "--id", n]) for n in ("n2", "n3")]
            async with agents(specs, anyio_backend) as (n2, n3):
                for proc in (n2, n3):
                    started = await proc.wait_for(lambda e: e.get("ev") == "started", 15, "start")
                    assert started["new_cluster"] is False
                    assert not started["address"].endswith(f":{port}")
                    await proc.wait_log("joined cluster 'default' through cluster port")
                everyone = {"n1", "n2", "n3"}
                for proc in (n1, n2, n3):
                    await wait_alive(proc, everyone)

                # broadcast: every other node once, never the sender
                assert (await n1.call(op="emit", name="greet", payload={"k": 1}))["ok"]
                for proc in (n2, n3):
                    await proc.wait_for(lambda e: e.get("ev") == "received" and e["sender"] == "n1", 10)
                # unicast: only the target
                assert (await n2.call(op="send", to="n3", name="greet", payload="direct"))["ok"]
                await n3.wait_for(lambda e: e.get("ev") == "received" and e["payload"] == "direct", 10)
                # request/reply
                reply = await n3.call(op="request", to="n1", name="ping", payload=[1, 2], timeout=5)
                assert reply["ok"] and reply["value"] == {"echo": [1, 2], "by": "n1"}
                # unknown node
                bad = await n1.call(op="send", to="nobody", name="greet", payload=None)
                assert not bad["ok"] and bad["error"] == "UnknownNodeError"

                assert len(_received(n2, "greet", "n1")) == 1
                assert len(_received(n3, "greet", "n1")) == 1
                assert len(_received(n3, "greet", "n2")) == 1
                assert _received(n1, "greet", "n1") == []
                assert _received(n2, "greet", "n2") == _received(n1, "greet", "n2") == []

                # graceful stop: the others see "left"
                assert await n2.stop() == 0
                for proc in (n1, n3):
                    await proc.wait_for(
                        lambda e: e.get("ev") == "member" and e["id"] == "n2" and e["kind"] == "left", 10
                    )
                    await wait_alive(proc, {"n1", "n3"})

                # SIGKILL: the others see it gone ("failed": no leave was announced)
                n3.signal(signal.SIGKILL)
                await n1.wait_for(
                    lambda e: e.get("ev") == "member" and e["id"] == "n3" and e["kind"] == "failed", 10
                )
                await wait_alive(n1, {"n1"})
                gone = await n1.call(op="request", to="n3", name="ping", payload=None, timeout=2)
                assert not gone["ok"] and gone["error"] == "UnknownNodeError"


async def test_join_race_makes_one_cluster(anyio_backend: str) -> None:
    """Two nodes started at the same moment on a free cluster port end in one cluster."""
    for _ in range(3):
        port = free_port()
        with anyio.fail_after(30):
            specs = [(n, [str(port), "--id", n]) for n in ("r1", "r2")]
            async with agents(specs, anyio_backend) as procs:
                started = [await p.wait_for(lambda e: e.get("ev") == "started", 15, "start") for p in procs]
                assert sorted(s["new_cluster"] for s in started) == [False, True]
                for proc in procs:
                    await wait_alive(proc, {"r1", "r2"})


async def test_join_only_fails_clearly_when_nobody_answers(anyio_backend: str) -> None:
    port = free_port()
    with anyio.fail_after(20):
        async with agents([("j", [str(port), "--join-only"])], anyio_backend) as (proc,):
            err = await proc.wait_for(lambda e: e.get("ev") == "error", 15, "error")
            assert err["error"] == "JoinError"
            assert "join-only" in err["message"] and str(port) in err["message"]
