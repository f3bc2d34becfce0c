"""``pydevts trace`` and ``pydevts emit --trace``: following one event through a real cluster."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from pydevts import Node
from pydevts.cli.trace import path_text
from pydevts.observe.tracing import MAX_TRACES, TRACE_HEADER, TraceLog

pytestmark = pytest.mark.anyio


async def cli(*argv: str) -> tuple[int, str, str]:
    with anyio.fail_after(30):
        done = await anyio.run_process([sys.executable, "-m", "pydevts", *argv], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def nodes(port: int) -> list[Node]:
    a, b, c = Node(port, node_id="a"), Node(port, node_id="b"), Node(port, node_id="c")
    got: list[Any] = []

    @b.on("order")
    async def at_b(sender: str, payload: Any) -> None:
        got.append(("b", payload))

    @c.on("order")
    async def at_c(sender: str, payload: Any) -> None:
        raise ValueError("c refuses orders")

    a.got = got  # type: ignore[attr-defined]
    return [a, b, c]


async def test_trace_prints_where_one_event_went_on_every_member() -> None:
    port = free_port()
    a, b, c = nodes(port)
    async with cluster(a, b, c):
        await a.emit("order", 1, headers={TRACE_HEADER: "t-42"})
        await a.emit("order", 2)  # untraced: no record anywhere
        await wait_until(lambda: len(a.got) == 2, 5, "both orders at b")  # type: ignore[attr-defined]
        await wait_until(lambda: c._ctx.traces.rows("t-42"), 5, "the failure recorded at c")
        code, out, err = await cli("trace", "t-42", "--join", f"127.0.0.1:{port}")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "trace t-42: 3 records from 3 of 3 nodes"
        assert any(" a  sent     order -> *" in line for line in lines)
        assert any(" b  handled  order from a" in line for line in lines)
        assert any(" c  failed   order from a  (ValueError: c refuses orders)" in line for line in lines)
        code, out, err = await cli("trace", "nothing", "--join", f"127.0.0.1:{port}", "--json")
        assert code == 0, err
        assert json.loads(out) == {"id": "nothing", "nodes": {"a": [], "b": [], "c": []}, "missing": {}}


async def test_emit_with_trace_shows_the_path_of_the_event_it_sent() -> None:
    port = free_port()
    a, b, c = nodes(port)
    async with cluster(a, b, c):
        code, out, err = await cli(
            "emit", "order", "7", "--join", f"127.0.0.1:{port}", "--trace", "--wait", "1"
        )
        assert code == 0, err
        assert "sent to 3 nodes" in out
        assert " b  handled  order from" in out and " c  failed   order from" in out
        await wait_until(lambda: ("b", 7) in a.got, 5, "the order at b")  # type: ignore[attr-defined]


async def test_a_member_cannot_make_another_gather_every_trace() -> None:
    port = free_port()
    a, b, c = nodes(port)
    async with cluster(a, b, c):
        with pytest.raises(Exception, match="for clients of this node"):
            await a.request("b", "pydevts.trace", {"id": "x", "all": True})
        assert await a.request("b", "pydevts.trace", {"id": "x"}) == {"node": "b", "records": []}
        with pytest.raises(Exception, match="expected"):
            await a.request("b", "pydevts.trace", "x")


def test_the_trace_log_is_bounded() -> None:
    log = TraceLog("n", max_records=3)
    for i in range(MAX_TRACES + 10):
        for _ in range(5):
            log.record(f"id-{i}", "handled", "e", "p", "x" * 1000)
    assert len(log) == MAX_TRACES and log.rows("id-0") == []
    rows = log.rows(f"id-{MAX_TRACES + 9}")
    assert len(rows) == 3 and len(rows[0]["detail"]) == 200
    log.record("k" * 500, "sent", "e", None)
    assert log.rows("k" * 64)[0]["peer"] == ""


def test_the_path_text_names_who_never_saw_it_and_who_did_not_answer() -> None:
    result = {
        "nodes": {
            "a": [{"time": 1.0, "node": "a", "what": "sent", "name": "e", "peer": "*", "detail": ""}],
            "b": [],
        },
        "missing": {"c": "RequestTimeoutError: no reply"},
    }
    text = path_text("t", result)
    assert "never saw it: b" in text and "did not answer: c (RequestTimeoutError: no reply)" in text


async def test_trace_fan_outs_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydevts.node.trace_query as query
    from pydevts import NodeClient

    running, most = [0], [0]
    real = query.ask_members

    async def counted(*args: Any, **kwargs: Any) -> Any:
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            await anyio.sleep(0.02)
            return await real(*args, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(query, "ask_members", counted)
    port = free_port()
    a, b, c = nodes(port)

    async def ask(i: int) -> None:  # a client asks one request at a time: one client each
        async with NodeClient(f"127.0.0.1:{port}") as client:
            assert (await client.trace(f"t{i}"))["missing"] == {}

    async with cluster(a, b, c), anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(ask, i)
    assert most[0] == 1
