"""A real 3-node cluster with the plugin on every node: known traffic, then each /metrics over HTTP."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from promtest import Scrape, free_port, scrape, wait_until
from pydevts import Node, NoHandlerError, RemoteHandlerError
from pydevts_prometheus import PrometheusPlugin

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

EMITS = 4  # a.emit("ev"): b and c get each
SENDS_B = 3  # a.send("b", "ev")
NOTES_C = 2  # a.send("c", "note")
UNHANDLED_B = 2  # a.send("b", "unhandled"): b has no handler
ADDS, MISSING, BOOMS = 5, 2, 3  # a.request("b", ...): ok, no_handler, handler raises
C_ADDS = 2  # c.request("a", "add")


def make_nodes() -> tuple[list[Node], dict[str, Counter[str]]]:
    port = free_port()
    nodes = [
        Node(port, node_id=i, connection_plugins=["prometheus"], plugin_options={"prometheus": {"port": 0}})
        for i in ("a", "b", "c")
    ]
    got: dict[str, Counter[str]] = {n.id: Counter() for n in nodes}
    for node in nodes:
        seen = got[node.id]

        for name in ("ev", "note", "fence"):

            async def record(sender: str, payload: Any, name: str = name, seen: Counter[str] = seen) -> None:
                seen[name] += 1

            node.add_handler(name, record)

        @node.on("add")
        async def add(sender: str, payload: list[int]) -> int:
            return sum(payload)

        @node.on("boom")
        async def boom(sender: str, payload: Any) -> None:
            raise ValueError("boom")

    return nodes, got


def link_counts(node: Node) -> list[tuple[str, int, int, int, int, int, int]]:
    return sorted(
        (i.peer, i.frames_in, i.frames_out, i.bytes_in, i.bytes_out, i.batches_in, i.batches_out)
        for i in node.links()
    )


async def wait_quiet(nodes: list[Node], quiet: float = 0.3, timeout: float = 10.0) -> None:
    """Wait until no link of any node has moved for ``quiet`` seconds (ACKs sent, nothing in flight)."""
    with anyio.move_on_after(timeout):
        last = [link_counts(n) for n in nodes]
        since = anyio.current_time()
        while anyio.current_time() - since < quiet:
            await anyio.sleep(0.02)
            now = [link_counts(n) for n in nodes]
            if now != last:
                last, since = now, anyio.current_time()
        return
    raise AssertionError(f"links still busy after {timeout:g} s")


async def test_scrape_a_three_node_cluster(anyio_backend: str) -> None:
    nodes, got = make_nodes()
    a, _, c = nodes
    with anyio.fail_after(45):
        async with AsyncExitStack() as stack:
            for node in nodes:
                await stack.enter_async_context(node)
            await wait_until(
                lambda: all(sum(m.alive for m in n.members) == 3 for n in nodes), what="3 members alive"
            )
            plugins: list[PrometheusPlugin] = [n.plugin("prometheus") for n in nodes]
            assert all(isinstance(p, PrometheusPlugin) for p in plugins)
            assert len({p.port for p in plugins}) == 3 and all(p.port > 0 for p in plugins)

            # -- known traffic
            for _ in range(EMITS):
                await a.emit("ev", 1)
            for _ in range(SENDS_B):
                await a.send("b", "ev", 2)
            for _ in range(NOTES_C):
                await a.send("c", "note", 3)
            for _ in range(UNHANDLED_B):
                await a.send("b", "unhandled", 4)
            for i in range(ADDS):
                assert await a.request("b", "add", [i, 1], timeout=5) == i + 1
            for _ in range(MISSING):
                with pytest.raises(NoHandlerError):
                    await a.request("b", "missing", None, timeout=5)
            for _ in range(BOOMS):
                with pytest.raises(RemoteHandlerError):
                    await a.request("b", "boom", None, timeout=5)
            for _ in range(C_ADDS):
                assert await c.request("a", "add", [2, 2], timeout=5) == 4
            # Per-origin order: once a's fence arrived, every event a sent before it has been handled.
            await a.send("b", "fence")
            await a.send("c", "fence")
            await wait_until(lambda: got["b"]["fence"] == 1 and got["c"]["fence"] == 1, what="the fences")
            assert got["b"]["ev"] == EMITS + SENDS_B and got["c"]["ev"] == EMITS
            assert got["c"]["note"] == NOTES_C
            await wait_quiet(nodes)

            # -- scrape every node over HTTP
            async with httpx.AsyncClient(timeout=10) as client:
                scrapes = [await scrape(client, p.url or "") for p in plugins]
            sa, sb, sc = scrapes
            links = {n.id: n.links() for n in nodes}

    check_sender(sa)
    check_receiver(sb)
    check_other(sc)
    for node, s in zip(nodes, scrapes, strict=True):
        check_membership(node.id, s)
        check_histograms(s)
    check_links(dict(zip("abc", scrapes, strict=True)), links)


def check_sender(sa: Scrape) -> None:
    sent = sa.by("pydevts_messages_sent_total", "name", kind="event")
    assert sent["ev"] == EMITS + SENDS_B  # an emit counts once, however many get it
    assert sent["note"] == NOTES_C and sent["unhandled"] == UNHANDLED_B and sent["fence"] == 2
    requests = sa.by("pydevts_messages_sent_total", "name", kind="request")
    assert (requests["add"], requests["missing"], requests["boom"]) == (ADDS, MISSING, BOOMS)
    assert sa.value("pydevts_message_bytes_sent_total", kind="request", name="add") > ADDS * len("add")
    # requests a sent, by outcome
    assert sa.value("pydevts_request_seconds_count", name="add", outcome="ok") == ADDS
    assert sa.value("pydevts_request_seconds_count", name="missing", outcome="no_handler") == MISSING
    assert sa.value("pydevts_request_seconds_count", name="boom", outcome="error") == BOOMS
    assert sa.value("pydevts_request_seconds_count", name="add", outcome="error") == 0
    assert 0 < sa.value("pydevts_request_seconds_sum", name="add", outcome="ok") < 5 * ADDS
    # replies and errors are counted by outcome above, not as messages received
    assert sa.by("pydevts_messages_received_total", "kind").keys() <= {"event", "request"}
    # c's requests to a: served here
    assert sa.value("pydevts_messages_received_total", kind="request", name="add") == C_ADDS
    assert sa.value("pydevts_handler_seconds_count", kind="request", name="add") == C_ADDS
    assert sa.value("pydevts_messages_sent_total", kind="reply", name="add") == C_ADDS
    assert sa.by("pydevts_messages_received_total", "name", kind="event") == {}  # nobody sent a an event
    assert sa.value("pydevts_node_counter_total", name="events_received") == 0
    assert sa.value("pydevts_node_counter_total", name="requests_served") == C_ADDS


def check_receiver(sb: Scrape) -> None:
    events = sb.by("pydevts_messages_received_total", "name", kind="event")
    assert events == {"ev": EMITS + SENDS_B, "unhandled": UNHANDLED_B, "fence": 1}
    assert sb.value("pydevts_message_bytes_received_total", kind="event", name="ev") > 0
    requests = sb.by("pydevts_messages_received_total", "name", kind="request")
    assert (requests["add"], requests["missing"], requests["boom"]) == (ADDS, MISSING, BOOMS)
    # handlers: how many ran, how many raised
    assert sb.value("pydevts_handler_seconds_count", kind="event", name="ev") == EMITS + SENDS_B
    assert sb.value("pydevts_handler_seconds_count", kind="request", name="add") == ADDS
    assert sb.value("pydevts_handler_seconds_count", kind="request", name="boom") == BOOMS
    assert sb.value("pydevts_handler_seconds_count", kind="event", name="unhandled") == 0
    assert sb.value("pydevts_handler_errors_total", kind="request", name="boom") == BOOMS
    assert sb.value("pydevts_handler_errors_total", kind="request", name="add") == 0
    assert sb.value("pydevts_handler_errors_total", kind="event", name="ev") == 0
    # drops: the events and requests nobody handles
    drops = {(h["kind"], h["name"], h["reason"]): v for h, v in sb.series("pydevts_drops_total")}
    assert drops == {
        ("event", "unhandled", "no_handler"): UNHANDLED_B,
        ("request", "missing", "no_handler"): MISSING,
    }
    assert sb.value("pydevts_messages_sent_total", kind="reply", name="add") == ADDS
    assert sb.value("pydevts_messages_sent_total", kind="reply", name="boom") == 0  # errors are no replies
    # the node's own counters, read at scrape time
    assert sb.value("pydevts_node_counter_total", name="events_received") == EMITS + SENDS_B + UNHANDLED_B + 1
    assert sb.value("pydevts_node_counter_total", name="requests_served") == ADDS
    assert sb.value("pydevts_node_counter_total", name="handler_errors") == BOOMS


def check_other(sc: Scrape) -> None:
    events = sc.by("pydevts_messages_received_total", "name", kind="event")
    assert events == {"ev": EMITS, "note": NOTES_C, "fence": 1}
    assert sc.value("pydevts_handler_seconds_count", kind="event", name="note") == NOTES_C
    assert sc.value("pydevts_request_seconds_count", name="add", outcome="ok") == C_ADDS
    assert sc.series("pydevts_drops_total") == []
    assert sc.value("pydevts_node_counter_total", name="events_received") == EMITS + NOTES_C + 1


def check_membership(node_id: str, s: Scrape) -> None:
    assert s.by("pydevts_members", "state") == {"alive": 3, "suspect": 0, "failed": 0, "left": 0}
    [(info, one)] = s.series("pydevts_node_info")
    assert info["node_id"] == node_id and info["cluster"] == "default" and one == 1
    assert s.value("pydevts_member_events_total", kind="started") == 1
    assert s.value("pydevts_member_events_total", kind="joined") == 2  # the two others
    assert s.value("pydevts_links", role="member") == 2
    assert s.value("pydevts_links", role="client") == 0
    assert s.value("pydevts_tracked_names_limit") == 256
    assert 0 < s.value("pydevts_tracked_names") <= 256
    assert s.types["pydevts_node_counter"] == "counter" and s.types["pydevts_node_gauge"] == "gauge"
    assert s.series("pydevts_node_gauge", name="limits.open_connections")  # accepted ones: 0 on some
    for name in ("links.resent", "links.undelivered", "limits.connections_refused", "bad_frames"):
        assert s.value("pydevts_node_counter_total", name=name) == 0, name
    # The failure detector's counters, when the router keeps them (peer router: swim_*).
    probes = s.series("pydevts_node_counter_total", name="router.swim_probes_acked")
    if probes:
        assert s.value("pydevts_swim_probe_rtt_seconds_count") == probes[0][1]
        assert s.value("pydevts_swim_probe_rtt_seconds_sum") >= 0


def check_histograms(s: Scrape) -> None:
    for name in ("pydevts_handler_seconds", "pydevts_request_seconds"):
        for labels, _ in s.series(f"{name}_count"):
            assert s.histogram_ok(name, labels) > 0
    running = s.series("pydevts_handlers_running")
    assert running and all(value == 0 for _, value in running)  # every handler has returned


def check_links(scrapes: dict[str, Scrape], links: dict[str, list[Any]]) -> None:
    """Per link: frames/bytes/batches > 0, equal to node.links() (taken once quiet), and each
    direction of a link counts on one side what the other counted on the other side."""
    frames = {
        (me, h["peer"], h["direction"]): v
        for me, s in scrapes.items()
        for h, v in s.series("pydevts_link_frames_total", role="member")
    }
    assert len(frames) == 3 * 2 * 2  # each node: 2 peers, in and out
    for me, s in scrapes.items():
        for info in links[me]:
            for direction in ("in", "out"):
                labels = {"peer": info.peer, "role": "member", "direction": direction}
                assert s.value("pydevts_link_frames_total", **labels) == getattr(info, f"frames_{direction}")
                assert s.value("pydevts_link_bytes_total", **labels) == getattr(info, f"bytes_{direction}")
                batches = s.value("pydevts_link_batches_total", **labels)
                assert batches == getattr(info, f"batches_{direction}")
                assert 0 < batches <= frames[me, info.peer, direction]
            assert s.value("pydevts_link_queued_bytes", peer=info.peer, role="member") == 0
    for (me, peer, direction), count in frames.items():
        assert count > 0
        other = "in" if direction == "out" else "out"
        assert count == frames[peer, me, other], f"{me}->{peer} {direction}: {count} vs {frames}"
    # at least every message counted above crossed its link
    requests = ADDS + MISSING + BOOMS
    assert frames["a", "b", "out"] >= EMITS + SENDS_B + UNHANDLED_B + 1 + requests
    assert frames["a", "b", "in"] >= requests
    assert frames["a", "c", "out"] >= EMITS + NOTES_C + 1 + C_ADDS
    assert frames["c", "a", "out"] >= C_ADDS
