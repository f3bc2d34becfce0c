"""Headers, plugin hooks, plugin options and traces on real nodes: peer router over TCP, hop over memory."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from pydevts import (
    ConfigurationError,
    MemberEvent,
    MessageInfo,
    Node,
    NoHandlerError,
    Plugin,
    RemoteHandlerError,
    Reply,
    RequestTimeoutError,
    hookimpl,
)
from pydevts.observe import Observers
from pydevts.observe.tracing import TRACE_HEADER
from pydevts.plugins import Registry, create_plugin_manager
from pydevts.plugins.choices import Choices
from pydevts.testing import MemoryNetwork, MemoryTransport
from pydevts_hop import HopRouter
from test_hop_memory import FAST  # the hop timings the suite tests with

pytestmark = pytest.mark.anyio


class Recorder(Plugin):
    """Records every message hook it sees."""

    name = "recorder"

    def __init__(self, label: str = "", add: str = "") -> None:
        self.label = label
        self.add = add  # a header value to add to every message out
        self.out: list[MessageInfo] = []
        self.inbound: list[MessageInfo] = []
        self.handled: list[tuple[str, str, str | None]] = []
        self.done: list[tuple[str, str]] = []
        self.relays: list[tuple[str, str, str]] = []
        self.drops: list[tuple[str, str]] = []
        self.members: list[str] = []
        self.started: list[str] = []

    def on_start(self, node: Node) -> None:
        self.started.append(node.id)

    def on_member(self, event: MemberEvent) -> None:
        self.members.append(f"{event.kind}:{event.member.id}")

    def on_message_out(self, msg: MessageInfo) -> Mapping[str, str] | None:
        self.out.append(msg)
        return {"added": self.add} if self.add else None

    def on_message_in(self, msg: MessageInfo) -> None:
        self.inbound.append(msg)

    def on_handle(self, msg: MessageInfo) -> Any:
        def finish(seconds: float, error: BaseException | None) -> None:
            assert seconds >= 0
            self.handled.append((msg.kind, msg.name, type(error).__name__ if error else None))

        return finish

    def on_request_done(self, msg: MessageInfo, seconds: float, outcome: str) -> None:
        self.done.append((msg.name, outcome))

    def on_relay(self, msg: MessageInfo, to: str) -> None:
        self.relays.append((msg.name, str(msg.peer), to))

    def on_drop(self, msg: MessageInfo, reason: str) -> None:
        self.drops.append((msg.name, reason))


class Broken(Plugin):
    """Every hook raises: the node must go on as if it were not there."""

    name = "broken"

    def on_message_out(self, msg: MessageInfo) -> Mapping[str, str] | None:
        raise RuntimeError("out")

    def on_message_in(self, msg: MessageInfo) -> None:
        raise RuntimeError("in")

    def on_handle(self, msg: MessageInfo) -> Any:
        raise RuntimeError("handle")

    def on_member(self, event: MemberEvent) -> None:
        raise RuntimeError("member")


def tcp_node(port: int, *plugins: object, **kw: Any) -> Node:
    node = Node(port, request_timeout=3, connection_plugins=list(plugins), **kw)  # type: ignore[arg-type]
    seen = node.seen = []  # type: ignore[attr-defined]

    @node.on("ev")
    async def ev(sender: str, payload: Any, *, headers: Mapping[str, str]) -> None:
        seen.append((sender, payload, dict(headers)))

    @node.on("plain")
    async def plain(sender: str, payload: Any) -> None:
        seen.append((sender, payload, None))

    @node.on("echo")
    async def echo(sender: str, payload: Any, *, headers: Mapping[str, str]) -> Reply:
        return Reply({"got": dict(headers)}, headers={"answered-by": node.id})

    @node.on("boom")
    async def boom(sender: str, payload: Any) -> None:
        raise ValueError("boom")

    @node.on("slow")
    async def slow(sender: str, payload: Any) -> None:
        await anyio.sleep(5)

    return node


async def test_headers_travel_with_events_requests_and_replies() -> None:
    port = free_port()
    a, b = tcp_node(port), tcp_node(port)
    with anyio.fail_after(20):
        async with cluster(a, b):
            await a.emit("ev", 1, headers={"k": "v", "traceparent": "00-x"})
            await a.send(b.id, "ev", 2, headers={"only": "to-b"})
            await a.send(b.id, "ev", 3)  # no headers: an empty mapping
            await a.send(b.id, "plain", 4, headers={"ignored": "yes"})  # a handler without headers
            await wait_until(lambda: len(b.seen) == 4, 5, "four events at b")  # type: ignore[attr-defined]
            assert b.seen == [  # type: ignore[attr-defined]
                (a.id, 1, {"k": "v", "traceparent": "00-x"}),
                (a.id, 2, {"only": "to-b"}),
                (a.id, 3, {}),
                (a.id, 4, None),
            ]
            reply = await a.request_reply(b.id, "echo", None, headers={"q": "1"})
            assert reply.value == {"got": {"q": "1"}} and dict(reply.headers) == {"answered-by": b.id}
            assert await a.request(b.id, "echo", None) == {"got": {}}


async def test_plugin_hooks_see_names_outcomes_and_members_and_add_headers() -> None:
    port = free_port()
    ra, rb = Recorder(add="from-a"), Recorder()
    a, b = tcp_node(port, ra), tcp_node(port, rb)
    with anyio.fail_after(20):
        async with cluster(a, b):
            assert ra.started == [a.id] and f"joined:{b.id}" in ra.members
            await a.send(b.id, "ev", 1)
            await wait_until(lambda: len(b.seen) == 1, 5, "the event at b")  # type: ignore[attr-defined]
            assert b.seen[0][2] == {"added": "from-a"}  # type: ignore[attr-defined]
            await a.request(b.id, "echo", None)
            with pytest.raises(RemoteHandlerError):
                await a.request(b.id, "boom", None)
            with pytest.raises(NoHandlerError):
                await a.request(b.id, "nothing-here", None)
            with pytest.raises(RequestTimeoutError):
                await a.request(b.id, "slow", None, timeout=0.2)
            await a.send(b.id, "unhandled-event", None)
            await wait_until(lambda: ("unhandled-event", "no handler") in rb.drops, 5, "the drop at b")
            assert [d for d in ra.done if not d[0].startswith("pydevts.")] == [
                ("echo", "ok"),
                ("boom", "error"),
                ("nothing-here", "no_handler"),
                ("slow", "timeout"),
            ]
            assert [(m.kind, m.name, m.peer) for m in ra.out if not m.name.startswith("pydevts.")] == [
                ("event", "ev", b.id),
                ("request", "echo", b.id),
                ("request", "boom", b.id),
                ("request", "nothing-here", b.id),
                ("request", "slow", b.id),
                ("event", "unhandled-event", b.id),
            ]
            assert ("reply", "echo", b.id) in [(m.kind, m.name, m.peer) for m in ra.inbound]
            names_in = [(m.kind, m.name) for m in rb.inbound if not m.name.startswith("pydevts.")]
            assert names_in[:2] == [("event", "ev"), ("request", "echo")]
            assert ("event", "ev", None) in rb.handled and ("request", "boom", "ValueError") in rb.handled
            assert ("reply", "echo", a.id) in [(m.kind, m.name, m.peer) for m in rb.out]
            assert all(m.size > 0 for m in rb.inbound)


async def test_a_plugin_whose_hooks_raise_costs_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    a, b = tcp_node(port, Broken()), tcp_node(port, Broken())
    with anyio.fail_after(20):
        async with cluster(a, b):
            await a.send(b.id, "ev", 1)
            assert await a.request(b.id, "echo", None) == {"got": {}}
            await wait_until(lambda: len(b.seen) == 1, 5, "the event at b")  # type: ignore[attr-defined]
    assert any("plugin 'broken' failed in on_message_out" in r.getMessage() for r in caplog.records)


async def test_a_plugin_that_overrides_nothing_costs_nothing() -> None:
    idle = Plugin()
    assert not Observers([idle]).messages and Observers([idle]).links == ()
    port = free_port()
    a, b = tcp_node(port, idle), tcp_node(port)
    with anyio.fail_after(20):
        async with cluster(a, b):
            ctx = a._ctx
            assert not ctx.observers.messages and ctx.plugins == ()
            assert all(not link.plugins_in and not link.plugins_out for link in ctx.open_links)


async def test_links_count_what_they_carry() -> None:
    port = free_port()
    a, b = tcp_node(port), tcp_node(port)
    with anyio.fail_after(20):
        async with cluster(a, b):
            before = {i.peer: i for i in a.links()}[b.id]
            for i in range(50):
                await a.send(b.id, "plain", i)
            await wait_until(lambda: len(b.seen) == 50, 5, "50 events at b")  # type: ignore[attr-defined]
            after = {i.peer: i for i in a.links()}[b.id]
            assert after.frames_out - before.frames_out >= 50
            assert after.bytes_out - before.bytes_out >= 50 * 8
            assert after.batches_out > before.batches_out and after.role == "member"
            back = {i.peer: i for i in b.links()}[a.id]
            assert back.frames_in >= after.frames_out - 5  # the last ACKs may still be in flight


# ---------------------------------------------------------------- plugin options by name


class _Registration:
    @hookimpl
    def pydevts_register_connection_plugins(self) -> dict[str, Any]:
        return {"recorder": Recorder}


def registry() -> Registry:
    return Registry(create_plugin_manager([_Registration()]))


async def test_plugins_chosen_by_name_take_options_and_the_node_hands_them_out() -> None:
    port = free_port()
    node = Node(
        port,
        registry=registry(),
        connection_plugins=["recorder"],
        plugin_options={"recorder": {"label": "seen"}, "tcp": {}},
    )
    with anyio.fail_after(10):
        async with node:
            plugin = node.plugin("recorder")
            assert isinstance(plugin, Recorder) and plugin.label == "seen" and plugin.started == [node.id]
            assert node.plugin("tcp") is node._ctx.transport
            assert node.plugin("peer") is node._ctx.router.machine  # type: ignore[attr-defined]
            with pytest.raises(KeyError, match="no plugin named 'nope'"):
                node.plugin("nope")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"recorder": {"colour": "red"}}, r"unknown option\(s\): colour \(accepted: add, label\)"),
        (
            {"prometheus": {"port": 1}},
            "'prometheus', which this node does not use; it uses tcp, peer, msgpack",
        ),
        ({"recorder": 3}, "must be a mapping"),
    ],
)
def test_bad_plugin_options_are_refused_naming_them(options: dict[str, Any], says: str) -> None:
    choices = Choices("tcp", "peer", "msgpack", ["recorder"], {}, registry(), options)
    with pytest.raises(ConfigurationError, match=says):
        choices.resolve()


# ---------------------------------------------------------------- the hop router: relays, traces


@asynccontextmanager
async def hop_chain(*plugins: Plugin) -> AsyncIterator[dict[str, Node]]:
    """n0 - n1 - n2 over the memory network: n0 and n2 reach each other only through n1."""
    net = MemoryNetwork(seed=3)
    hosts = ["n0", "n1", "n2"]
    net.partition(["n0"], ["n2"])
    nodes: dict[str, Node] = {}
    async with AsyncExitStack() as stack:
        for i, (host, plugin) in enumerate(zip(hosts, plugins, strict=True)):
            node = Node(
                7000,
                host=host,
                port=7000,
                node_id=host,
                cluster_host=hosts[max(i - 1, 0)],
                transport=MemoryTransport(net, host=host),
                router=HopRouter(config=FAST),
                connection_plugins=[plugin],
                request_timeout=3,
            )
            got = node.seen = []  # type: ignore[attr-defined]

            @node.on("ev")
            async def ev(
                sender: str, payload: Any, *, headers: Mapping[str, str], got: list[Any] = got
            ) -> None:
                got.append((sender, payload, dict(headers)))

            nodes[host] = node
            await stack.enter_async_context(node)
        await wait_until(
            lambda: all({m.id for m in n.members if m.alive} == set(hosts) for n in nodes.values()),
            10,
            "the chain to form",
        )
        yield nodes


async def test_the_hop_router_shows_relayed_broadcasts_and_unicasts_by_name() -> None:
    recorders = [Recorder(), Recorder(), Recorder()]
    with anyio.fail_after(30):
        async with hop_chain(*recorders) as nodes:
            await nodes["n0"].emit("ev", "all", headers={"h": "1"})
            await nodes["n0"].send("n2", "ev", "far", headers={"h": "2"})
            await wait_until(lambda: len(nodes["n2"].seen) == 2, 5, "both at n2")  # type: ignore[attr-defined]
            assert [h for _, _, h in nodes["n2"].seen] == [{"h": "1"}, {"h": "2"}]  # type: ignore[attr-defined]
            assert ("ev", "n0", "n2") in recorders[1].relays
            assert recorders[1].relays.count(("ev", "n0", "n2")) == 2  # the broadcast and the unicast
            assert not recorders[0].relays and not recorders[2].relays


async def test_a_traced_event_leaves_a_record_on_every_node_it_passes() -> None:
    with anyio.fail_after(30):
        async with hop_chain(Plugin(), Plugin(), Plugin()) as nodes:
            trace = {TRACE_HEADER: "t-1"}
            await nodes["n0"].emit("ev", 1, headers=trace)
            await nodes["n0"].send("n2", "nobody-handles", 2, headers={TRACE_HEADER: "t-2"})
            await wait_until(lambda: len(nodes["n2"].seen) == 1, 5, "the event at n2")  # type: ignore[attr-defined]

            def what(host: str, trace_id: str) -> list[str]:
                return [f"{r['what']}:{r['peer']}" for r in nodes[host]._ctx.traces.rows(trace_id)]

            await wait_until(lambda: what("n2", "t-2") == ["dropped:n0"], 5, "the drop at n2")
            assert what("n0", "t-1") == ["sent:*"]
            assert what("n1", "t-1") == ["relayed:n2", "handled:n0"]
            assert what("n2", "t-1") == ["handled:n0"]
            assert what("n1", "t-2") == ["relayed:n2"]
            assert nodes["n2"]._ctx.traces.rows("t-2")[0]["detail"] == "no handler"
            assert not any(nodes[h]._ctx.traces.rows("unknown") for h in nodes)


def test_the_recorders_hooks_are_all_seen_as_overridden() -> None:
    obs = Observers([Recorder()])
    hooks = (obs.out, obs.inbound, obs.handle, obs.request_done, obs.relay, obs.drop, obs.member, obs.start)
    assert all(len(h) == 1 for h in hooks) and obs.messages and not obs.stop
    assert list(itertools.chain(obs.links)) == []


async def test_the_peer_router_counts_links_dials_and_probes() -> None:
    port = free_port()
    a, b = tcp_node(port), tcp_node(port)
    with anyio.fail_after(20):
        async with cluster(a, b):
            acked = "router.swim_probes_acked"
            await wait_until(lambda: b.statistics()[acked] >= 2, 10, "two probes answered")
            stats = b.statistics()
            assert stats["router.links"] == 1 and stats["router.links_adopted"] >= 1
            assert stats["router.swim_probes"] >= stats["router.swim_probes_acked"]
            assert 0 < stats["router.swim_probe_rtt_us"] < 2_000_000 * stats["router.swim_probes_acked"]
            assert stats["router.swim_suspicions"] == stats["router.swim_failures"] == 0


def test_plugin_options_on_the_command_line() -> None:
    import argparse

    from pydevts.cli.options import plugin_option, plugin_options

    assert plugin_option("prometheus.port=9464") == ("prometheus", "port", "9464")
    assert plugin_option("my.plugin.key=a=b") == ("my.plugin", "key", "a=b")
    given = [plugin_option("hop.dead_interval=2"), plugin_option("hop.max_neighbours=3")]
    assert plugin_options(given) == {"hop": {"dead_interval": "2", "max_neighbours": "3"}}
    for bad in ("port=1", "prometheus.port", ".port=1", "prometheus.=1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected NAME\.KEY=VALUE"):
            plugin_option(bad)


async def test_backpressure_waits_and_queues_are_counted() -> None:
    port = free_port()
    a, b = tcp_node(port), tcp_node(port)
    release = anyio.Event()
    handled: list[int] = []

    @b.on("big")
    async def big(sender: str, payload: Any) -> None:
        await release.wait()
        handled.append(1)

    with anyio.fail_after(30):
        async with cluster(a, b):

            async def flood() -> None:
                for _ in range(200):
                    await a.send(b.id, "big", b"x" * 65536)

            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                waits = "links.send_waits"
                await wait_until(lambda: a.statistics()[waits] >= 1, 10, "a send to wait for room")
                assert b.statistics()["inbox.queued_batches"] >= 1
                assert a.statistics()["links.queued_bytes"] + a.statistics()["links.unacknowledged"] > 0
                release.set()
            await wait_until(lambda: len(handled) == 200, 10, "every event handled")
            assert a.statistics()["links.send_wait_us"] > 0
            await wait_until(lambda: b.statistics()["inbox.queued_batches"] == 0, 5, "b's inbox empty")


class Starts(Plugin):
    name = "starts"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.log: list[str] = []

    def on_start(self, node: Node) -> None:
        if self.fail:
            raise OSError("port 9464 is taken")
        self.log.append("start")

    def on_stop(self, node: Node) -> None:
        self.log.append("stop")


async def test_a_plugin_that_cannot_start_fails_the_start_and_the_others_are_stopped() -> None:
    good, bad = Starts(), Starts(fail=True)
    node = Node(free_port(), connection_plugins=[good, bad])
    with (
        anyio.fail_after(10),
        pytest.raises(ConfigurationError, match="'starts' could not start: port 9464 is taken"),
    ):
        async with node:
            pass
    assert good.log == ["start", "stop"] and not node._running
    again = Node(free_port(), connection_plugins=[good])
    async with again:
        assert good.log == ["start", "stop", "start"]
    assert good.log == ["start", "stop", "start", "stop"]
