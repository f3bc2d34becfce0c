"""The plugin without a cluster: options, the name bound, drop reasons, the dashboard, the server."""

from __future__ import annotations

import re
import socket

import anyio
import httpx
import pytest
from prometheus_client import generate_latest
from promtest import Scrape, free_port, scrape
from pydevts import ConfigurationError, Member, MemberEvent, MessageInfo, Node, Registry
from pydevts_prometheus import METRICS, PrometheusPlugin, dashboard_path, load_dashboard
from pydevts_prometheus.collect import BUCKETS, DROP_REASONS, drop_reason, sample_names

pytestmark = pytest.mark.timeout(60)


def scraped(plugin: PrometheusPlugin) -> Scrape:
    return Scrape(generate_latest(plugin.registry).decode())


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"nope": "1"}, ["unknown option(s): nope", "accepted: host, max_names, port, serve"]),
        ({"port": "abc"}, ["option port='abc' is not an int"]),
        ({"port": "70000"}, ["port must be an integer from 0 to 65535"]),
        ({"max_names": "0"}, ["max_names must be from 1 to 65536"]),
        ({"host": ""}, ["host must be a host name or address"]),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Registry().create("connection_plugin", "prometheus", **options)
    for word in words:
        assert word in str(caught.value)


def test_options_from_strings_and_defaults() -> None:
    plugin = Registry().create("connection_plugin", "prometheus", port="0", max_names="3", serve="false")
    assert isinstance(plugin, PrometheusPlugin)
    assert (plugin.port, plugin.max_names, plugin.serve, plugin.host) == (0, 3, False, "127.0.0.1")
    default = PrometheusPlugin()
    assert (default.port, default.host, default.max_names, default.serve) == (9464, "127.0.0.1", 256, True)
    assert default.url is None  # not serving before the node starts


def test_registries_are_separate_and_not_the_global_one() -> None:
    from prometheus_client import REGISTRY

    one, two = PrometheusPlugin(), PrometheusPlugin()
    one.on_message_out(MessageInfo("event", "x", None, 10))
    assert one.registry is not two.registry and REGISTRY not in (one.registry, two.registry)
    assert scraped(one).value("pydevts_messages_sent_total", kind="event", name="x") == 1
    assert scraped(two).value("pydevts_messages_sent_total", kind="event", name="x") == 0
    assert "pydevts_messages_sent_total" not in generate_latest(REGISTRY).decode()


# --------------------------------------------------------------------------- what the hooks count


def test_names_past_the_bound_count_as_other() -> None:
    plugin = PrometheusPlugin(max_names=2, serve=False)
    for name in ("a", "b", "c", "d", "a", "c"):
        finish = plugin.on_handle(MessageInfo("event", name, "peer", 5))
        assert finish is not None
        finish(0.001, None)
    plugin.on_message_out(MessageInfo("request", "e", "peer", 7))
    plugin.on_drop(MessageInfo("event", "f", "peer", 5), "no handler")
    s = scraped(plugin)
    assert s.by("pydevts_handler_seconds_count", "name", kind="event") == {"a": 2, "b": 1, "_other": 3}
    assert s.value("pydevts_messages_sent_total", kind="request", name="_other") == 1
    assert s.value("pydevts_drops_total", kind="event", name="_other", reason="no_handler") == 1
    assert s.value("pydevts_handler_seconds_count", kind="event", name="_other") == 3
    # what arrived: handled or dropped for having no handler
    assert s.value("pydevts_messages_received_total", kind="event", name="_other") == 4
    assert s.value("pydevts_message_bytes_received_total", kind="event", name="_other") == 20
    assert s.value("pydevts_tracked_names") == 2 and s.value("pydevts_tracked_names_limit") == 2
    assert set(plugin.names) == {"a", "b"}  # names past the bound are not remembered


def test_histograms_and_the_other_hooks() -> None:
    plugin = PrometheusPlugin(serve=False)
    msg = MessageInfo("request", "get", "b", 20)
    for seconds, error in ((0.0003, None), (2.0, ValueError("x")), (100.0, None)):  # 100: above every bound
        finish = plugin.on_handle(msg)
        assert finish is not None
        finish(seconds, error)
    for seconds, outcome in ((0.001, "ok"), (0.002, "ok"), (5.0, "timeout")):
        plugin.on_request_done(msg, seconds, outcome)
    plugin.on_relay(MessageInfo("event", "ev", "c", 9), "d")
    member = Member("b", "127.0.0.1:1")
    plugin.on_member(MemberEvent("joined", member))
    plugin.on_member(MemberEvent("failed", member))
    s = scraped(plugin)
    labels = {"kind": "request", "name": "get"}
    assert s.histogram_ok("pydevts_handler_seconds", labels) == 3
    assert s.value("pydevts_handler_seconds_bucket", le="0.0005", **labels) == 1
    assert s.value("pydevts_handler_seconds_bucket", le="2.5", **labels) == 2
    assert s.value("pydevts_handler_seconds_bucket", le="30.0", **labels) == 2
    assert s.value("pydevts_handler_seconds_bucket", le="+Inf", **labels) == 3
    assert s.value("pydevts_handler_seconds_sum", **labels) == pytest.approx(102.0003)
    assert s.value("pydevts_handler_errors_total", **labels) == 1
    assert s.histogram_ok("pydevts_request_seconds", {"name": "get", "outcome": "ok"}) == 2
    assert s.value("pydevts_request_seconds_bucket", name="get", outcome="ok", le="0.001") == 1
    assert s.histogram_ok("pydevts_request_seconds", {"name": "get", "outcome": "timeout"}) == 1
    assert s.value("pydevts_relays_total", kind="event") == 1
    assert s.by("pydevts_member_events_total", "kind") == {"joined": 1, "failed": 1}
    assert len(s.series("pydevts_handler_seconds_bucket", **labels)) == len(BUCKETS) + 1
    assert s.value("pydevts_handlers_running", **labels) == 0
    assert s.value("pydevts_messages_received_total", **labels) == 3
    assert s.value("pydevts_message_bytes_received_total", **labels) == 60
    plugin.on_handle(MessageInfo("request", "get", "b", 20))  # begun, not finished
    s = scraped(plugin)
    assert s.value("pydevts_handlers_running", **labels) == 1
    assert s.value("pydevts_messages_received_total", **labels) == 4
    assert s.value("pydevts_handler_seconds_count", **labels) == 3
    assert not s.series("pydevts_node_info")  # no node: only what the hooks counted


def test_drop_reasons_are_classes() -> None:
    assert drop_reason("no handler") == "no_handler"
    assert drop_reason("its hop limit ran out at n3") == "hop_limit"
    assert drop_reason("no route to it from n3") == "no_route"
    assert drop_reason("its link to n4 stayed full for 5 s") == "link_full"
    assert drop_reason("something new") == "other"
    assert set(DROP_REASONS) == {"no_handler", "hop_limit", "no_route", "link_full", "other"}


# --------------------------------------------------------------------------- the dashboard


def test_dashboard_panels_name_exported_metrics() -> None:
    assert dashboard_path().is_file() and dashboard_path().parent.name == "pydevts_prometheus"
    dashboard = load_dashboard()
    exported = sample_names()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bpydevts_[a-z_]+", target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= exported, f"{panel['title']}: {names - exported} not exported"
            used |= names
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(re.findall(r"\bpydevts_[a-z_]+", variables["instance"]["definition"])) <= exported
    # every family appears on the dashboard
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert set(METRICS) - families == set(), set(METRICS) - families


# --------------------------------------------------------------------------- the server


@pytest.mark.anyio
async def test_serves_while_the_node_runs_and_frees_the_port(anyio_backend: str) -> None:
    metrics_port = free_port()
    node = Node(
        free_port(),
        node_id="solo",
        connection_plugins=["prometheus"],
        plugin_options={"prometheus": {"port": metrics_port}},
    )
    with anyio.fail_after(20):
        async with httpx.AsyncClient(timeout=5) as client:
            async with node:
                plugin = node.plugin("prometheus")
                assert plugin.port == metrics_port
                assert plugin.url == f"http://127.0.0.1:{metrics_port}/metrics"
                s = await scrape(client, plugin.url)
                assert s.by("pydevts_members", "state")["alive"] == 1
                [(info, _)] = s.series("pydevts_node_info")
                assert info["node_id"] == "solo"
                # OpenMetrics when asked for it
                response = await client.get(
                    plugin.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
                )
                assert response.headers["content-type"].startswith("application/openmetrics-text")
                assert response.text.rstrip().endswith("# EOF")
            assert plugin.url is None
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    # the port is free again at once: the same node starts again on it
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", metrics_port))


@pytest.mark.anyio
@pytest.mark.parametrize("given", ["by name", "as an object"])
async def test_a_restarted_node_serves_again(anyio_backend: str, given: str) -> None:
    if given == "by name":
        node = Node(
            free_port(),
            node_id="again",
            connection_plugins=["prometheus"],
            plugin_options={"prometheus": {"port": 0}},
        )
    else:
        node = Node(free_port(), node_id="again", connection_plugins=[PrometheusPlugin(port=0)])
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(2):
                async with node:
                    url = node.plugin("prometheus").url
                    assert url is not None
                    s = await scrape(client, url)
                    assert s.value("pydevts_members", state="alive") == 1
                with pytest.raises(httpx.ConnectError):
                    await client.get(url)


@pytest.mark.anyio
async def test_a_metrics_port_already_taken_fails_the_nodes_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = Node(
            free_port(), connection_plugins=["prometheus"], plugin_options={"prometheus": {"port": port}}
        )
        with anyio.fail_after(10), pytest.raises(ConfigurationError) as caught:
            async with node:
                pass
    assert f"'prometheus' could not start: cannot serve /metrics on 127.0.0.1:{port}" in str(caught.value)
