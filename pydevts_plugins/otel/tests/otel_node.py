"""A traced node process for test_otel_processes.py.

python otel_node.py NAME CLUSTER_PORT BACKEND ROUTER OUT_JSON

Runs node NAME (``peer`` or ``hop`` router) with an OtelPlugin whose SDK
provider keeps spans in memory; prints ``ready`` once it runs. Node ``c``
answers request ``work`` (the sum of the payload) after sending event
``note`` to ``a``; node ``a`` waits until it sees ``b`` and ``c`` (with the
hop router: ``c`` two hops away, through ``b``), then requests ``work`` from
``c`` inside a span ``job`` and prints ``RESULT=N``; when ``note`` arrives it
prints ``NOTE=N``. On SIGINT or SIGTERM the node leaves, then every span
the process finished is written to OUT_JSON and the process exits with 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio
from anyio.abc import TaskStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydevts import Node
from pydevts_otel import OtelPlugin

HOP_OPTIONS = {
    "tick_interval": 0.05,
    "keepalive_interval": 0.2,
    "dead_interval": 2.0,
    "settle_time": 0.3,
    "connect_delay": 0.1,
    "max_neighbours": 0,  # only the links made by joining: a - b - c
}


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": None if span.parent is None else format(span.parent.span_id, "016x"),
        "parent_remote": None if span.parent is None else span.parent.is_remote,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "service": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
    }


async def stop_on_signal(scope: anyio.CancelScope, *, task_status: TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


async def wait_for_route(node: Node, hop: bool) -> None:
    with anyio.fail_after(20):
        while True:
            routes = {m.id: (m.next_hop, m.distance) for m in node.members if m.alive}
            if "b" in routes and "c" in routes and (not hop or routes["c"] == ("b", 2)):
                return
            await anyio.sleep(0.01)


async def main(name: str, port: int, router: str, provider: TracerProvider) -> None:
    hop = router == "hop"
    node = Node(
        port,
        node_id=name,
        host="127.0.0.1",
        connection_plugins=[OtelPlugin(tracer_provider=provider)],
        router=router,
        router_options=HOP_OPTIONS if hop else None,
        request_timeout=15,
    )

    @node.on("work")
    async def work(sender: str, payload: list[int]) -> int:
        await node.send("a", "note", sum(payload))
        return sum(payload)

    @node.on("note")
    async def note(sender: str, payload: int) -> None:
        print(f"NOTE={payload}", flush=True)

    async with anyio.create_task_group() as tg:
        await tg.start(stop_on_signal, tg.cancel_scope)
        async with node:
            print("ready", flush=True)
            if name == "a":
                await wait_for_route(node, hop)
                with provider.get_tracer("otel_node").start_as_current_span("job"):
                    result = await node.request("c", "work", [1, 2, 3])
                print(f"RESULT={result}", flush=True)
            await anyio.sleep_forever()


def run(name: str, port: int, backend: str, router: str, out: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"node-{name}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        anyio.run(main, name, port, router, provider, backend=backend)
    finally:
        spans = [span_dict(s) for s in exporter.get_finished_spans()]
        with open(out + ".tmp", "w") as f:
            json.dump(spans, f)
        os.replace(out + ".tmp", out)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
