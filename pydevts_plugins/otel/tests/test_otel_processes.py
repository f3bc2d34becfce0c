"""Tracing across processes: three node processes (otel_node.py), each with its own SDK provider.

b starts the cluster; c, then a, join through it. Each process writes the
spans it finished to a JSON file as it stops; one trace must join them,
parent to child, across the processes (with the hop router, through the
relays of the node in the middle).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import LoggedProcess, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = str(Path(__file__).with_name("otel_node.py"))


def only(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, f"expected one span {name!r}, got {len(found)} among {[s['name'] for s in spans]}"
    return found[0]


def child_of(child: dict[str, Any], parent: dict[str, Any], *, remote: bool) -> None:
    assert child["trace_id"] == parent["trace_id"], (child["name"], parent["name"])
    assert child["parent_id"] == parent["span_id"], f"{child['name']} is not a child of {parent['name']}"
    assert child["parent_remote"] is remote, (child["name"], child["parent_remote"])


@pytest.mark.parametrize("router", ["peer", "hop"])
async def test_one_trace_across_node_processes(anyio_backend: str, router: str, tmp_path: Path) -> None:
    port = free_port()
    out = {n: tmp_path / f"{n}.json" for n in "abc"}
    procs = {
        n: LoggedProcess([sys.executable, SCRIPT, n, str(port), anyio_backend, router, str(out[n])])
        for n in "abc"
    }
    codes: dict[str, int] = {}
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            try:
                # c runs before a asks it anything (a handler that runs while its node is
                # still starting cannot send yet)
                for n in "bca":
                    await procs[n].start(tg)
                    await procs[n].wait_line("ready", timeout=20)
                assert (await procs["a"].wait_line("RESULT=", timeout=30)) == "RESULT=6"
                assert (await procs["a"].wait_line("NOTE=", timeout=10)) == "NOTE=6"
            finally:
                with anyio.CancelScope(shield=True):
                    for n, proc in procs.items():  # every process started here is stopped here
                        if proc.process is not None:
                            codes[n] = await proc.stop()
    assert codes == {"a": 0, "b": 0, "c": 0}, {n: p.lines[-10:] for n, p in procs.items()}

    spans = {n: json.loads(out[n].read_text()) for n in "abc"}
    job, client = only(spans["a"], "job"), only(spans["a"], "request work")
    server, producer = only(spans["c"], "handle work"), only(spans["c"], "send note")
    consumer = only(spans["a"], "handle note")
    assert (client["kind"], server["kind"]) == ("CLIENT", "SERVER")
    assert (producer["kind"], consumer["kind"]) == ("PRODUCER", "CONSUMER")
    child_of(client, job, remote=False)
    child_of(server, client, remote=True)
    child_of(producer, server, remote=False)
    child_of(consumer, producer, remote=True)
    assert len({s["pid"] for s in (client, server)}) == 2
    assert client["attributes"]["pydevts.outcome"] == "ok" and client["service"] == "node-a"
    assert server["attributes"]["pydevts.node"] == "c" and server["attributes"]["pydevts.peer"] == "a"

    relays = [s for s in spans["b"] if s["name"].startswith("relay ")]
    if router == "peer":
        assert relays == []  # a and c are linked: nothing passes through b
    else:
        child_of(only(relays, "relay work"), client, remote=True)
        child_of(only(relays, "relay reply"), server, remote=True)
        child_of(only(relays, "relay note"), producer, remote=True)
        assert {s["attributes"]["pydevts.node"] for s in relays} == {"b"}
    trace_ids = {s["trace_id"] for s in [job, client, server, producer, consumer, *relays]}
    assert len(trace_ids) == 1
