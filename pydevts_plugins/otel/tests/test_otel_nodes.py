"""pydevts-otel across real in-process nodes on loopback TCP, each with its own SDK provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Getter, Setter, TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otelspans import Recorded
from pydevts import Node, NoHandlerError, RemoteHandlerError, RequestTimeoutError
from pydevts_otel import OtelPlugin

pytestmark = pytest.mark.anyio

TIMEOUT = 30
# The hop router, quick enough for a test; no node opens links of its own (max_neighbours=0),
# so the nodes that joined through the same node are linked only to it: a chain.
HOP = {
    "router": "hop",
    "router_options": {
        "tick_interval": 0.05,
        "keepalive_interval": 0.2,
        "dead_interval": 2.0,
        "settle_time": 0.3,
        "connect_delay": 0.1,
        "max_neighbours": 0,
    },
}


def traced_nodes(*ids: str, **kw: Any) -> tuple[list[Node], dict[str, Recorded]]:
    port = free_port()
    recorded = {i: Recorded() for i in ids}
    nodes = [
        Node(
            port,
            node_id=i,
            host="127.0.0.1",
            connection_plugins=[OtelPlugin(tracer_provider=recorded[i].provider)],
            request_timeout=10,
            **kw,
        )
        for i in ids
    ]
    return nodes, recorded


def child_of(child: ReadableSpan, parent: ReadableSpan, *, remote: bool) -> None:
    """``child``'s parent is ``parent``, in the same trace (across nodes: a remote parent)."""
    assert child.context is not None and parent.context is not None and child.parent is not None
    assert child.context.trace_id == parent.context.trace_id, (child.name, parent.name)
    assert child.parent.span_id == parent.context.span_id, f"{child.name} is not a child of {parent.name}"
    assert child.parent.is_remote is remote, (child.name, child.parent.is_remote)


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    assert span.attributes is not None
    return span.attributes


async def test_a_request_and_the_event_its_handler_sends_make_one_trace() -> None:
    (a, b, c), rec = traced_nodes("a", "b", "c")
    got: list[Any] = []

    @b.on("add")
    async def add(sender: str, payload: list[int]) -> int:
        await b.send("c", "note", sum(payload))
        return sum(payload)

    @c.on("note")
    async def note(sender: str, payload: int) -> None:
        got.append(payload)

    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b, c):
            tracer = rec["a"].provider.get_tracer("test")
            with tracer.start_as_current_span("job"):
                assert await a.request("b", "add", [1, 2, 3]) == 6
            await wait_until(lambda: rec["c"].has("handle note"), what="c's handler span")
    assert got == [6]

    job, client = rec["a"].one("job"), rec["a"].one("request add")
    server, producer = rec["b"].one("handle add"), rec["b"].one("send note")
    consumer = rec["c"].one("handle note")
    assert (client.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert (producer.kind, consumer.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    child_of(client, job, remote=False)
    child_of(server, client, remote=True)
    child_of(producer, server, remote=False)
    child_of(consumer, producer, remote=True)

    assert attributes(client)["pydevts.node"] == "a" and attributes(client)["pydevts.peer"] == "b"
    assert attributes(client)["pydevts.event"] == "add" and attributes(client)["pydevts.outcome"] == "ok"
    assert attributes(client)["rpc.method"] == "add"
    assert attributes(server)["pydevts.node"] == "b" and attributes(server)["pydevts.peer"] == "a"
    assert attributes(producer)["pydevts.peer"] == "c"
    assert attributes(producer)["messaging.operation.name"] == "send"
    assert attributes(consumer)["pydevts.node"] == "c" and attributes(consumer)["pydevts.peer"] == "b"
    assert attributes(consumer)["messaging.message.envelope.size"] > 0
    for span in (client, server, producer, consumer):
        assert span.status.status_code is StatusCode.UNSET, (span.name, span.status)
    # the client span lasts until the reply came; the server span lies inside it
    assert client.start_time is not None and client.end_time is not None
    assert server.start_time is not None and server.end_time is not None
    assert client.start_time <= server.start_time <= server.end_time <= client.end_time


async def test_an_emit_reaches_every_handler_as_children_of_one_producer_span() -> None:
    (a, b, c), rec = traced_nodes("a", "b", "c")
    seen: dict[str, Mapping[str, str]] = {}

    for node in (b, c):

        @node.on("greet")
        async def greet(sender: str, payload: Any, *, headers: Mapping[str, str], me: str = node.id) -> None:
            seen[me] = headers

    @b.on("continued")
    async def continued_handler(sender: str, payload: Any) -> None:
        pass

    # context the caller put in the headers itself, with no current span: the emit span's parent
    foreign_trace, foreign_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    foreign = {"traceparent": f"00-{foreign_trace}-{foreign_span}-01"}
    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b, c):
            await a.emit("greet", "hi", headers={"app-key": "v1"})
            await wait_until(lambda: rec["b"].has("handle greet") and rec["c"].has("handle greet"))
            await a.send("b", "continued", None, headers=foreign)
            await wait_until(lambda: rec["b"].has("handle continued"))
    continued = rec["a"].one("send continued")
    assert continued.parent is not None and continued.context is not None
    assert format(continued.context.trace_id, "032x") == foreign_trace
    assert format(continued.parent.span_id, "016x") == foreign_span
    child_of(rec["b"].one("handle continued"), continued, remote=True)

    producer = rec["a"].one("emit greet")
    assert producer.kind is SpanKind.PRODUCER and producer.parent is None  # no current span: a root
    assert "pydevts.peer" not in attributes(producer)
    for n in ("b", "c"):
        consumer = rec[n].one("handle greet")
        child_of(consumer, producer, remote=True)
        assert seen[n]["app-key"] == "v1"  # the application's headers are kept
        assert seen[n]["traceparent"].split("-")[2] == format(producer.context.span_id, "016x")


async def test_failures_set_error_status_on_both_sides() -> None:
    (a, b), rec = traced_nodes("a", "b")

    @b.on("boom")
    async def boom(sender: str, payload: Any) -> None:
        raise ValueError("no good")

    @b.on("bad-event")
    async def bad_event(sender: str, payload: Any) -> None:
        raise KeyError("missing")

    release = anyio.Event()

    @b.on("slow")
    async def slow(sender: str, payload: Any) -> None:
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b):
            with pytest.raises(RemoteHandlerError):
                await a.request("b", "boom", None)
            with pytest.raises(NoHandlerError):
                await a.request("b", "nobody", None)
            await a.send("b", "bad-event", None)
            with pytest.raises(RequestTimeoutError):
                await a.request("b", "slow", None, timeout=0.2)
            release.set()
            await wait_until(lambda: rec["b"].has("handle bad-event", "handle slow"))

    client = rec["a"].one("request boom")
    assert client.status.status_code is StatusCode.ERROR and attributes(client)["pydevts.outcome"] == "error"
    server = rec["b"].one("handle boom")
    child_of(server, client, remote=True)
    assert server.status.status_code is StatusCode.ERROR and "no good" in str(server.status.description)
    assert attributes(server)["error.type"] == "ValueError"
    assert [e.name for e in server.events] == ["exception"]

    unhandled = rec["a"].one("request nobody")
    assert attributes(unhandled)["pydevts.outcome"] == "no_handler"
    assert unhandled.status.status_code is StatusCode.ERROR
    dropped = rec["b"].one("drop nobody")  # b dropped it: no handler
    child_of(dropped, unhandled, remote=True)
    assert attributes(dropped)["pydevts.drop.reason"] == "no handler"

    late = rec["a"].one("request slow")
    assert attributes(late)["pydevts.outcome"] == "timeout" and late.status.status_code is StatusCode.ERROR
    child_of(rec["b"].one("handle slow"), late, remote=True)  # it ran on after the requester gave up

    event_span = rec["b"].one("handle bad-event")
    assert (
        event_span.status.status_code is StatusCode.ERROR
        and attributes(event_span)["error.type"] == "KeyError"
    )


async def test_the_reply_carries_the_handler_span_and_the_plugin_is_found_by_name() -> None:
    port = free_port()
    rec = {"a": Recorded(), "b": Recorded()}
    a, b = (
        Node(
            port,
            node_id=i,
            host="127.0.0.1",
            connection_plugins=["otel"],  # through the entry point, with an object as option
            plugin_options={"otel": {"tracer_provider": rec[i].provider, "system": "false"}},
        )
        for i in ("a", "b")
    )

    @b.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return payload

    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b):
            plugin = a.plugin("otel")
            assert isinstance(plugin, OtelPlugin) and plugin.system is False and plugin.node_id == "a"
            reply = await a.request_reply("b", "echo", 7)
    assert reply.value == 7
    server = rec["b"].one("handle echo")
    assert reply.headers["traceparent"].split("-")[2] == format(server.context.span_id, "016x")


async def test_trace_context_that_does_not_fit_is_left_out_and_nothing_fails() -> None:
    (a, b), rec = traced_nodes("a", "b")
    seen: list[Mapping[str, str]] = []

    @b.on("full")
    async def full(sender: str, payload: Any, *, headers: Mapping[str, str]) -> None:
        seen.append(headers)

    crowded = {f"h{i}": "x" for i in range(32)}  # the most headers a message may carry
    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b):
            await a.send("b", "full", 1, headers=crowded)
            await a.send("b", "full", 2, headers={"h0": "x"})
            await wait_until(lambda: len(seen) == 2)
            assert a.plugin("otel").context_dropped == 1
    assert dict(seen[0]) == crowded
    assert "traceparent" in seen[1]
    sends = rec["a"].named("send full")
    handles = rec["b"].named("handle full")
    assert len(sends) == 2 and len(handles) == 2
    assert handles[0].parent is None  # the first one arrived with no context: a new trace
    child_of(handles[1], sends[1], remote=True)


class BrokenPropagator(TextMapPropagator):
    """A propagator that fails whatever it is asked."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] | None = None
    ) -> Context:
        raise RuntimeError("broken extract")

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] | None = None
    ) -> None:
        raise RuntimeError("broken inject")

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


async def test_a_failing_propagator_costs_only_the_trace(caplog: pytest.LogCaptureFixture) -> None:
    """b's propagator fails: b cannot read a's context nor write its own; every message still goes."""
    (a,), rec = traced_nodes("a")
    b = Node(
        a.cluster_address.port,
        node_id="b",
        host="127.0.0.1",
        connection_plugins=[OtelPlugin(tracer_provider=rec["a"].provider, propagator=BrokenPropagator())],
    )
    got: list[Any] = []

    @b.on("ev")
    async def ev(sender: str, payload: Any) -> None:
        got.append(payload)

    @a.on("twice")
    async def twice(sender: str, payload: int) -> int:
        return 2 * payload

    with anyio.fail_after(TIMEOUT):
        async with cluster(a, b):
            await a.send("b", "ev", 1)
            assert await b.request("a", "twice", 21) == 42
            await wait_until(lambda: got == [1])
    failed = {r.getMessage() for r in caplog.records if r.name == "pydevts.otel"}
    assert failed >= {"pydevts-otel failed in on_handle", "pydevts-otel failed in on_message_out"}
    client = rec["a"].one("request twice")  # b's request span, ended all the same
    assert attributes(client)["pydevts.outcome"] == "ok"
    assert rec["a"].one("handle twice").parent is None  # the request came without context


async def test_the_hop_router_relay_joins_the_trace() -> None:
    """A chain a - b - c (a and c not linked): a's request to c and c's event to a pass through b."""
    (b, a, c), rec = traced_nodes("b", "a", "c", **HOP)
    got: list[Any] = []

    @c.on("work")
    async def work(sender: str, payload: list[int]) -> int:
        await c.send("a", "note", sum(payload))
        return sum(payload)

    @a.on("note")
    async def note(sender: str, payload: int) -> None:
        got.append(payload)

    with anyio.fail_after(TIMEOUT):
        async with cluster(b, a, c):  # b starts the cluster; a and c join through it
            await wait_until(
                lambda: {m.id: (m.next_hop, m.distance) for m in a.members}.get("c") == ("b", 2),
                10,
                "a's route to c through b",
            )
            assert "c" not in {link.peer for link in a.links()}
            tracer = rec["a"].provider.get_tracer("test")
            with tracer.start_as_current_span("job"):
                assert await a.request("c", "work", [1, 2, 3]) == 6
            await wait_until(
                lambda: (
                    rec["a"].has("handle note") and rec["b"].has("relay work", "relay note", "relay reply")
                ),
                what="the handler and relay spans",
            )
    assert got == [6]

    job, client = rec["a"].one("job"), rec["a"].one("request work")
    server, producer = rec["c"].one("handle work"), rec["c"].one("send note")
    consumer = rec["a"].one("handle note")
    relay_request, relay_reply = rec["b"].one("relay work"), rec["b"].one("relay reply")
    relay_note = rec["b"].one("relay note")
    child_of(client, job, remote=False)
    child_of(relay_request, client, remote=True)
    child_of(server, client, remote=True)
    child_of(producer, server, remote=False)
    child_of(relay_note, producer, remote=True)
    child_of(consumer, producer, remote=True)
    child_of(relay_reply, server, remote=True)
    assert attributes(relay_request)["pydevts.node"] == "b"
    assert attributes(relay_request)["pydevts.peer"] == "a"  # its origin
    assert attributes(relay_request)["pydevts.relay.to"] == "c"
    assert attributes(relay_note)["pydevts.relay.to"] == "a"
    assert attributes(relay_reply)["pydevts.message.kind"] == "reply"
    assert {relay_request.kind, relay_note.kind, relay_reply.kind} == {SpanKind.INTERNAL}
