"""The public Node API against real in-process clusters on loopback."""

from __future__ import annotations

import logging
import socket
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from inproc import alive_ids, cluster, free_port, wait_for_mesh, wait_stalled, wait_until
from pydevts import (
    FrameTooLargeError,
    JoinError,
    MemberEvent,
    MemberState,
    Node,
    NoHandlerError,
    RemoteHandlerError,
    RequestTimeoutError,
    SerializationError,
    UnknownNodeError,
)

pytestmark = pytest.mark.anyio


class Recorder:
    """Handlers that record ``(sender, payload)`` per event name on one node."""

    def __init__(self, node: Node, *names: str) -> None:
        self.got: dict[str, list[tuple[str, Any]]] = {name: [] for name in names}
        for name in names:
            node.add_handler(name, self._make(name))

    def _make(self, name: str) -> Any:
        async def record(sender: str, payload: Any) -> Any:
            self.got[name].append((sender, payload))
            return payload

        return record

    def __getitem__(self, name: str) -> list[tuple[str, Any]]:
        return self.got[name]


def three_nodes(**kw: Any) -> tuple[Node, Node, Node]:
    port = free_port()
    return tuple(Node(port, node_id=i, **kw) for i in ("a", "b", "c"))  # type: ignore[return-value]


# --------------------------------------------------------------------------- delivery


async def test_emit_send_request_reach_the_right_nodes() -> None:
    a, b, c = three_nodes()
    recs = {n.id: Recorder(n, "ev", "direct", "fence") for n in (a, b, c)}

    for n in (a, b, c):

        @n.on("double")
        async def double(sender: str, payload: int, me: str = n.id) -> dict[str, Any]:
            return {"sender": sender, "me": me, "value": payload * 2}

    with anyio.fail_after(15):
        async with cluster(a, b, c):
            assert a.started_cluster and not b.started_cluster and not c.started_cluster

            await a.emit("ev", {"k": [1, 2, 3]})
            await a.send("c", "direct", "only-c")
            # Per-origin order holds, so once the fence arrived nothing earlier is still on its way.
            await a.emit("fence", None)
            await wait_until(lambda: recs["b"]["fence"] and recs["c"]["fence"], what="the fence")

            assert recs["b"]["ev"] == [("a", {"k": [1, 2, 3]})]
            assert recs["c"]["ev"] == [("a", {"k": [1, 2, 3]})]
            assert recs["a"]["ev"] == [] and recs["a"]["fence"] == []
            assert recs["c"]["direct"] == [("a", "only-c")]
            assert recs["a"]["direct"] == [] and recs["b"]["direct"] == []

            assert await a.request("c", "double", 21) == {"sender": "a", "me": "c", "value": 42}
            assert await c.request("b", "double", 5) == {"sender": "c", "me": "b", "value": 10}
            assert await b.request("a", "double", -1, timeout=5) == {"sender": "b", "me": "a", "value": -2}
            assert a.statistics()["requests_served"] == 1
            assert b.statistics()["events_received"] == 2


async def test_find_by_tags() -> None:
    port = free_port()
    a = Node(port, node_id="a", tags={"role": "web"})
    b = Node(port, node_id="b", tags={"role": "db", "zone": "1"})
    c = Node(port, node_id="c", tags={"role": "db", "zone": "2"})
    with anyio.fail_after(15):
        async with cluster(a, b, c):
            assert [m.id for m in a.find(role="db")] == ["b", "c"]
            assert [m.id for m in a.find(role="db", zone="2")] == ["c"]
            assert a.find(role="cache") == []
            assert [m.id for m in b.find(role="db")] == ["c"]  # never itself
            assert [m.id for m in c.find()] == ["a", "b"]
            assert dict(a.find(zone="1")[0].tags) == {"role": "db", "zone": "1"}


# --------------------------------------------------------------------------- errors


async def test_delivery_errors() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    never = anyio.Event()
    served: list[int] = []

    @b.on("slow")
    async def slow(sender: str, payload: Any) -> None:
        await never.wait()

    @b.on("fails")
    async def fails(sender: str, payload: Any) -> None:
        raise ValueError(f"bad value {payload}")

    @b.on("ok")
    async def ok(sender: str, payload: int) -> int:
        served.append(payload)
        return payload + 1

    with anyio.fail_after(15):
        async with cluster(a, b):
            with pytest.raises(UnknownNodeError) as unknown:
                await a.send("nobody", "ok", 1)
            assert unknown.value.node_id == "nobody"
            with pytest.raises(UnknownNodeError):
                await a.request("nobody", "ok", 1, timeout=5)
            with pytest.raises(UnknownNodeError):
                await a.send("", "ok", 1)

            with pytest.raises(NoHandlerError, match="no handler for 'missing'"):
                await a.request("b", "missing", None, timeout=5)

            start = anyio.current_time()
            with pytest.raises(RequestTimeoutError):
                await a.request("b", "slow", None, timeout=0.3)
            assert 0.25 <= anyio.current_time() - start < 3

            with pytest.raises(RemoteHandlerError) as remote:
                await a.request("b", "fails", 7, timeout=5)
            assert remote.value.remote_type == "ValueError"
            assert "bad value 7" in str(remote.value)

            # B still serves the next request.
            assert await a.request("b", "ok", 41, timeout=5) == 42
            assert served[-1] == 41
            never.set()


async def test_unhandled_event_counts_and_is_not_fatal() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    rec = Recorder(b, "fence", "echo")
    with anyio.fail_after(15):
        async with cluster(a, b):
            await a.send("b", "nobody-listens", {"x": 1})
            await a.emit("nobody-listens", 2)
            await a.send("b", "fence")
            await wait_until(lambda: rec["fence"], what="the fence")
            stats = b.statistics()
            assert stats["events_unhandled"] == 2
            assert stats["events_received"] == 3
            assert await a.request("b", "echo", "still here", timeout=5) == "still here"


async def test_event_handler_exception_is_logged_and_node_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    rec = Recorder(b, "fence", "echo")

    @b.on("explode-event")
    async def explode(sender: str, payload: Any) -> None:
        raise RuntimeError("kaboom")

    with anyio.fail_after(15):
        async with cluster(a, b):
            await a.send("b", "explode-event", 1)
            await a.send("b", "fence")
            await wait_until(lambda: rec["fence"], what="the fence")
            logged = [r for r in caplog.records if "explode-event" in r.getMessage()]
            assert logged, [r.getMessage() for r in caplog.records]
            assert logged[0].levelno >= logging.ERROR
            assert logged[0].exc_info is not None and "kaboom" in str(logged[0].exc_info[1])
            assert b.statistics()["handler_errors"] == 1
            await a.send("b", "explode-event", 2)
            assert await a.request("b", "echo", 3, timeout=5) == 3
            await wait_until(lambda: b.statistics()["handler_errors"] == 2, what="second handler error")


async def test_request_back_to_the_caller_does_not_deadlock() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")

    for node in (a, b):

        @node.on("chain")
        async def chain(sender: str, depth: int, node: Node = node) -> list[str]:
            if depth == 0:
                return [node.id]
            return [node.id, *await node.request(sender, "chain", depth - 1, timeout=5)]

        @node.on("whoami")
        async def whoami(sender: str, payload: Any, node: Node = node) -> str:
            return node.id

    @b.on("ask-back")
    async def ask_back(sender: str, payload: Any) -> str:
        return "b saw " + await b.request(sender, "whoami", None, timeout=5)

    with anyio.fail_after(15):
        async with cluster(a, b):
            assert await a.request("b", "ask-back", None, timeout=5) == "b saw a"
            # A -> B -> A (nested), and deeper, each handler awaiting the other side.
            assert await a.request("b", "chain", 1, timeout=5) == ["b", "a"]
            assert await a.request("b", "chain", 6, timeout=5) == ["b", "a", "b", "a", "b", "a", "b"]
            # Many at once, both directions.
            results: dict[int, list[str]] = {}

            async def one(i: int, src: Node, dst: str) -> None:
                results[i] = await src.request(dst, "chain", 3, timeout=5)

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i, a if i % 2 else b, "b" if i % 2 else "a")
            assert all(len(r) == 4 for r in results.values()) and len(results) == 20


class Widget:
    pass


async def test_unencodable_payload_raises_serialization_error() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    rec = Recorder(b, "echo")
    with anyio.fail_after(15):
        async with cluster(a, b):
            with pytest.raises(SerializationError, match="Widget"):
                await a.send("b", "echo", Widget())
            with pytest.raises(SerializationError, match="Widget"):
                await a.request("b", "echo", {"nested": [1, Widget()]}, timeout=5)
            with pytest.raises(SerializationError, match="object"):
                await a.emit("echo", object())
            with pytest.raises(SerializationError, match="set"):
                await a.send("b", "echo", {1, 2})
            assert await a.request("b", "echo", [1, "two"], timeout=5) == [1, "two"]
            assert rec["echo"] == [("a", [1, "two"])]


async def test_frame_over_max_frame_size_raises_and_cluster_keeps_working() -> None:
    port = free_port()
    limit = 64 * 1024
    a, b, c = (Node(port, node_id=i, max_frame_size=limit) for i in ("a", "b", "c"))
    rec = Recorder(b, "echo")
    big = bytes(100 * 1024)
    with anyio.fail_after(15):
        async with cluster(a, b, c):
            with pytest.raises(FrameTooLargeError) as too_large:
                await a.send("b", "echo", big)
            assert too_large.value.limit == limit and too_large.value.size > limit
            with pytest.raises(FrameTooLargeError):
                await a.request("b", "echo", big, timeout=5)
            with pytest.raises(FrameTooLargeError):
                await a.emit("echo", big)
            # Just under the limit still goes through.
            fits = bytes(limit - 100)
            assert await a.request("b", "echo", fits, timeout=5) == fits
            assert await a.request("b", "echo", "small", timeout=5) == "small"
            await wait_for_mesh([a, b, c])
            assert [p for _, p in rec["echo"]] == [fits, "small"]


# --------------------------------------------------------------------------- backpressure


async def test_slow_handler_pushes_back_on_sender_and_nothing_is_lost() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    release = anyio.Event()
    received: list[int] = []
    total = 5000
    pad = bytes(10 * 1024)

    @b.on("bulk")
    async def bulk(sender: str, payload: dict[str, Any]) -> None:
        await release.wait()
        received.append(payload["i"])

    sent = 0
    all_sent = anyio.Event()

    async def sender() -> None:
        nonlocal sent
        for i in range(total):
            await a.send("b", "bulk", {"i": i, "pad": pad})
            sent += 1
        all_sent.set()

    with anyio.fail_after(15):
        async with cluster(a, b), anyio.create_task_group() as tg:
            tg.start_soon(sender)
            with anyio.move_on_after(2) as blocked:
                await all_sent.wait()
            assert blocked.cancelled_caught, "every send completed although the receiver never read"
            assert 0 < sent < total
            stalled_at = sent
            assert received == []

            release.set()
            await wait_until(all_sent.is_set, 10, "the sender to finish")
            assert stalled_at < sent == total
            await wait_until(lambda: len(received) >= total, 10, f"{total} deliveries")
            assert received == list(range(total))
            assert b.statistics()["events_received"] == total


async def test_request_timeout_covers_a_send_blocked_by_backpressure() -> None:
    """The timeout covers waiting for queue space too (it once covered only the wait for the reply)."""
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    release = anyio.Event()
    pad = bytes(10 * 1024)

    @b.on("bulk")
    async def bulk(sender: str, payload: Any) -> None:
        await release.wait()

    @b.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return payload

    sent = 0

    async def flood() -> None:
        nonlocal sent
        for i in range(5000):
            await a.send("b", "bulk", {"i": i, "pad": pad})
            sent += 1

    outcome: list[str] = []
    with anyio.fail_after(15):
        async with cluster(a, b), anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await wait_stalled(lambda: sent, quiet=0.5)  # A's queue to B is full and stays full
            assert 0 < sent < 5000
            with anyio.move_on_after(2):
                try:
                    await a.request("b", "echo", 1, timeout=0.5)
                    outcome.append("reply")
                except RequestTimeoutError:
                    outcome.append("timeout")
            release.set()
    assert outcome == ["timeout"], "request(timeout=0.5) was still blocked after 2 s"


# --------------------------------------------------------------------------- running


async def test_join_only_with_nothing_at_the_cluster_port_raises_join_error() -> None:
    node = Node(free_port(), node_id="lonely", join_only=True)
    with anyio.fail_after(5):
        start = anyio.current_time()
        with pytest.raises(JoinError, match="join-only"):
            async with node:
                pass
        assert anyio.current_time() - start < 2
    assert node.members == []


async def test_serve_in_the_users_task_group_and_stop() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")

    @a.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        return [sender, payload]

    ticks = 0
    serve_returned = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def run_a(*, task_status: anyio.abc.TaskStatus[Node]) -> None:
        await a.serve(task_status=task_status)
        serve_returned.set()

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await tg.start(run_a)
            assert a.started_cluster and alive_ids(a) == {"a"}
            async with b:
                await wait_for_mesh([a, b])
                assert await b.request("a", "echo", 1, timeout=5) == ["b", 1]
                ticks_before = ticks
                await wait_until(lambda: ticks > ticks_before, what="the other task to run")
                await a.stop()
                await wait_until(serve_returned.is_set, 5, "serve() to return after stop()")
                assert a.members == []
                await wait_until(lambda: alive_ids(b) == {"b"}, 5, "B to see A gone")
            # The user's other task was never disturbed by the node starting or stopping.
            ticks_before = ticks
            await wait_until(lambda: ticks > ticks_before, what="the other task to keep running")
            tg.cancel_scope.cancel()
    await a.stop()  # idempotent


async def test_graceful_stop_is_seen_as_left_and_fails_pending_requests() -> None:
    a, b, c = three_nodes()
    Recorder(c, "echo")
    events: list[tuple[str, str]] = []
    entered = anyio.Event()
    never = anyio.Event()

    @a.on_lifecycle
    async def on_event(event: MemberEvent) -> None:
        events.append((event.kind, event.member.id))

    @b.on("hang")
    async def hang(sender: str, payload: Any) -> None:
        entered.set()
        await never.wait()

    outcome: list[BaseException] = []

    async def pending_request() -> None:
        try:
            await a.request("b", "hang", None, timeout=12)
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(15):
        async with cluster(a, b, c):
            assert ("started", "a") in events
            await wait_until(lambda: {("joined", "b"), ("joined", "c")} <= set(events), what="joined events")
            async with anyio.create_task_group() as tg:
                tg.start_soon(pending_request)
                await entered.wait()
                start = anyio.current_time()
                await b.stop()
                await wait_until(lambda: outcome, 5, "the pending request to fail")
            assert anyio.current_time() - start < 5
            assert isinstance(outcome[0], UnknownNodeError), repr(outcome[0])
            assert "left" in str(outcome[0])

            await wait_until(lambda: ("left", "b") in events, 5, "a 'left' event for b")
            assert ("failed", "b") not in events
            for node in (a, c):
                await wait_until(lambda node=node: alive_ids(node) == {"a", "c"}, 5, "b gone")
                (gone,) = [m for m in node.members if m.id == "b"]
                assert gone.state == MemberState.LEFT and not gone.alive
            with pytest.raises(UnknownNodeError):
                await a.send("b", "hang")
            with pytest.raises(UnknownNodeError):
                await a.request("b", "hang", timeout=5)
            assert await a.request("c", "echo", "c still serves", timeout=5) == "c still serves"
    assert events[-1] == ("stopping", "a")


# --------------------------------------------------------------------------- mixed load


async def test_large_requests_and_replies_interleaved_with_an_event_flood() -> None:
    """Requests/replies take the direct-write path, events the writer's batches; big frames
    overflow the socket buffer mid-write. Everything must arrive whole, once, and in order."""
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    seen: list[int] = []
    big = bytes(range(256)) * 3500  # ~900 KB: more than a socket buffer takes at once

    @b.on("tick")
    async def tick(sender: str, payload: int) -> None:
        seen.append(payload)

    @b.on("echo")
    async def echo(sender: str, payload: Any) -> Any:
        if payload["wait"]:
            await anyio.lowlevel.checkpoint()  # this handler waits: a successor reader takes over
        return payload

    replies: list[Any] = []

    async def ask(i: int) -> None:
        replies.append(await a.request("b", "echo", {"i": i, "wait": i % 2 == 0, "data": big}, timeout=10))

    with anyio.fail_after(30):
        async with cluster(a, b), anyio.create_task_group() as tg:
            for node, peer in ((a, "b"), (b, "a")):  # small kernel buffers: writes get cut short
                sock = node._ctx.router.links[peer].conn._sock  # type: ignore[attr-defined]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            for i in range(12):
                tg.start_soon(ask, i)
            await anyio.lowlevel.checkpoint()  # let the requests start first
            for n in range(3000):
                await a.send("b", "tick", n)
            await wait_until(lambda: len(replies) == 12 and len(seen) == 3000, 20, "all replies and events")
    assert seen == list(range(3000))
    assert sorted(r["i"] for r in replies) == list(range(12))
    assert all(r["data"] == big for r in replies)


# --------------------------------------------------------------------------- regressions


async def test_requests_to_self_are_answered_and_free_their_slot() -> None:
    """A request to this node's own id runs the local handler (300 > the 256 request slots)."""
    node = Node(free_port(), node_id="solo")

    @node.on("double")
    async def double(sender: str, payload: int) -> int:
        assert sender == "solo"
        return payload * 2

    with anyio.fail_after(15):
        async with node:
            for i in range(300):
                assert await node.request("solo", "double", i, timeout=2) == 2 * i


async def test_stopping_fails_requests_still_waiting() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    hold = anyio.Event()

    @b.on("slow")
    async def slow(sender: str, payload: Any) -> None:
        await hold.wait()

    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await a.request("b", "slow", None, timeout=30)
        except UnknownNodeError as exc:
            errors.append(exc)

    with anyio.fail_after(15):
        async with cluster(b):
            async with anyio.create_task_group() as tg:
                await tg.start(a.serve)
                await wait_for_mesh([a, b])
                tg.start_soon(ask)
                await wait_until(lambda: bool(a._ctx.dispatcher._pending), 5, "the request to be in flight")
                await a.stop()
            hold.set()
    assert len(errors) == 1 and "this node stopped" in str(errors[0])


async def test_a_connection_plugin_that_raises_costs_the_link_not_the_node() -> None:
    class Broken:
        name = "broken"

        def on_open(self, info: Any) -> None: ...

        def on_frame_out(self, info: Any, frame: bytes) -> bytes | None:
            raise RuntimeError("plugin bug")

        def on_frame_in(self, info: Any, frame: bytes) -> bytes | None:
            return frame

        def on_close(self, info: Any, reason: str | None) -> None: ...

    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="a", connection_plugins=[Broken()]) as a:
            async with Node(port, node_id="b"):
                await wait_until(lambda: "b" in alive_ids(a), 5, "a to adopt the link from b")
                # Every frame a sends to b fails in the plugin: the link to b closes (logged),
                # so sending to b fails; b itself is fine (it answers probes) and stays a member.
                with pytest.raises(UnknownNodeError):
                    await a.send("b", "x", None)
                # ... and the node itself keeps serving.
                a.add_handler("ping", _pong)
                assert await a.request("a", "ping", 1, timeout=2) == "pong"


async def _pong(sender: str, payload: Any) -> str:
    return "pong"


def test_bad_advertise_is_a_configuration_error() -> None:
    from pydevts import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"advertise='example\.org:http'"):
        Node(7000, advertise="example.org:http")
    assert Node(7000, advertise="10.1.2.3")._advertise_port is None  # host only: the bound port
    assert Node(7000, advertise="10.1.2.3:9000")._advertise_port == 9000
    assert Node(7000, advertise="[::1]:9000")._advertise_host_given == "::1"


def test_tags_are_limited_in_size() -> None:
    from pydevts import ConfigurationError

    with pytest.raises(ConfigurationError, match="at most 4096"):
        Node(7000, tags={"big": "x" * 5000})
    node = Node(7000, tags={"ok": "y"})
    with pytest.raises(ConfigurationError, match="at most 4096"):
        node.set_tags(big="x" * 5000)
    assert node.tags == {"ok": "y"}
