"""A node bound to a wildcard address advertises an address other hosts can reach.

The unit tests feed :func:`pydevts.settings.advertise_host_for` made-up
answers; the scenario test runs two nodes in two network namespaces joined by
a veth cable, the second bound to ``0.0.0.0`` (its host name resolves to
loopback, as on a default Debian or Ubuntu install), and checks that the first
reaches it at its cable address and keeps it alive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import anyio
import pytest
from agents import AgentProcess, wait_alive
from pydevts import settings
from test_hop_netns import _ip, _skip_reason, in_netns

pytestmark = pytest.mark.anyio


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """What the kernel would route from, per target; what the host name resolves to."""
    answers: dict[str, str | None] = {"hostname": "127.0.0.1"}

    def source(family: object, target: str) -> str | None:
        return answers.get(target)

    async def getaddrinfo(host: str, port: object, **kw: object) -> list[tuple[object, ...]]:
        resolved = answers["hostname"]
        if resolved is None:
            raise OSError("no such host")
        return [(None, None, None, "", (resolved, 0))]

    monkeypatch.setattr(settings, "_source_address", source)
    monkeypatch.setattr(settings.anyio, "getaddrinfo", getaddrinfo)
    return answers


async def test_a_given_address_or_a_specific_bind_is_kept(routes: dict[str, str | None]) -> None:
    assert await settings.advertise_host_for("0.0.0.0", "db1.example") == "db1.example"
    assert await settings.advertise_host_for("10.1.2.3", None) is None  # the bound host itself


async def test_a_wildcard_node_advertises_its_address_toward_the_cluster(
    routes: dict[str, str | None],
) -> None:
    routes["10.9.0.1"] = "10.9.0.7"
    routes["198.51.100.1"] = "192.168.1.5"
    assert await settings.advertise_host_for("0.0.0.0", None, toward="10.9.0.1") == "10.9.0.7"


async def test_a_loopback_cluster_host_falls_back_to_the_host_name_then_the_default_route(
    routes: dict[str, str | None],
) -> None:
    routes["127.0.0.1"] = "127.0.0.1"
    routes["198.51.100.1"] = "192.168.1.5"
    assert await settings.advertise_host_for("0.0.0.0", None, toward="127.0.0.1") == "192.168.1.5"
    routes["hostname"] = "10.0.0.4"
    assert await settings.advertise_host_for("0.0.0.0", None, toward="127.0.0.1") == "10.0.0.4"


async def test_no_routable_address_advertises_loopback_and_names_the_flag(
    routes: dict[str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    routes["hostname"] = None
    with caplog.at_level(logging.WARNING, logger="pydevts.node"):
        assert await settings.advertise_host_for("0.0.0.0", None, toward="127.0.0.1") == "127.0.0.1"
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "--advertise" in record.getMessage() and "only nodes on this machine" in record.getMessage()


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str, str, str]]:
    """Namespaces A and B on one cable: (ns_a, ip_a, ns_b, ip_b); removed on exit."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tag, n = f"{os.getpid() % 100000}", os.getpid() % 200 + 1
    ns_a, ns_b, ip_a, ip_b = f"pdAdvA{tag}", f"pdAdvB{tag}", f"10.203.{n}.1", f"10.203.{n}.2"
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            f"adva{tag}",
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            f"advb{tag}",
            "netns",
            ns_b,
        )
        for ns, dev, addr in ((ns_a, f"adva{tag}", ip_a), (ns_b, f"advb{tag}", ip_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield ns_a, ip_a, ns_b, ip_b
    finally:
        for ns in (ns_a, ns_b):
            _ip("netns", "del", ns, check=False)


@pytest.mark.slow
async def test_a_node_bound_to_0_0_0_0_is_reachable_from_another_host(
    two_hosts: tuple[str, str, str, str], anyio_backend: str
) -> None:
    ns_a, ip_a, ns_b, ip_b = two_hosts
    a = in_netns(ns_a, AgentProcess("a", ["7000", "--id", "a", "--host", ip_a, "--backend", anyio_backend]))
    b = in_netns(
        ns_b,
        AgentProcess(
            "b",
            ["7000", "--id", "b", "--host", "0.0.0.0", "--cluster-host", ip_a, "--backend", anyio_backend],
        ),
    )
    with anyio.fail_after(60):
        try:
            async with anyio.create_task_group() as tg:
                await a.start(tg)
                await a.wait_for(lambda e: e.get("ev") == "started", 20, "a started")
                await b.start(tg)
                started = await b.wait_for(lambda e: e.get("ev") == "started", 20, "b started")
                assert started["address"].startswith(f"{ip_b}:"), started
                await wait_alive(a, {"a", "b"}, timeout=20)
                # Before the fix b advertised 127.0.0.1, which from A is A itself: A's probes went
                # nowhere and b was failed within about 2 s. Watch a few probe rounds.
                with anyio.move_on_after(3):
                    await a.wait_for(lambda e: e.get("ev") == "member" and e["kind"] == "failed", 10)
                    pytest.fail(f"a reported a member failed: {a.log[-10:]}")
                members = {m["id"]: m for m in (await a.call(op="members"))["members"]}
                assert members["b"]["state"] == "alive" and members["b"]["address"].startswith(f"{ip_b}:")
                reply = await a.call(op="request", to="b", name="ping", payload=1, timeout=5)
                assert reply["ok"], reply
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await a.stop(5)
                await b.stop(5)


@pytest.mark.parametrize("bad", ["bad:addr:x", "host:99999", "host:", "a b", "h\x00st", "[::1"])
def test_a_malformed_advertise_is_refused_when_the_node_is_made(bad: str) -> None:
    from pydevts import ConfigurationError, Node

    with pytest.raises(ConfigurationError, match="advertise="):
        Node(7000, advertise=bad)


@pytest.mark.parametrize(
    ("good", "parsed"),
    [
        ("db1", ("db1", None)),
        ("10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("[::1]:7", ("::1", 7)),
        ("fe80::1", ("fe80::1", None)),
    ],
)
def test_good_advertise_forms_parse(good: str, parsed: tuple[str, int | None]) -> None:
    assert settings.parse_advertise(good) == parsed
