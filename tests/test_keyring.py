"""Keyring mode with real nodes over TCP: who gets in, what an outsider learns, sealed probes."""

from __future__ import annotations

import logging
import socket
from typing import Any

import anyio
import pytest
from inproc import RawPeer, alive_ids, cluster, free_port, raw_hello, wait_until
from pydevts import HandshakeRefusedError, JoinError, Node
from pydevts.wire import REFUSE
from pydevts.wire.keyring import Keyring

pytestmark = pytest.mark.anyio

RING = Keyring([bytes(range(32))])
OTHER = Keyring([bytes(range(1, 33))])
SECRET_NAME = "cluster-name-nobody-may-learn"


async def echo(sender: str, payload: Any) -> Any:
    return payload


def keyed(port: int, node_id: str, ring: Keyring | None = RING, **kw: Any) -> Node:
    node = Node(port, node_id=node_id, cluster=SECRET_NAME, keyring=ring, **kw)
    node.add_handler("echo", echo)
    return node


async def test_nodes_with_a_shared_key_form_a_cluster_and_talk() -> None:
    port = free_port()
    a, b, c = (keyed(port, n) for n in ("a", "b", "c"))
    got: list[Any] = []

    @c.on("news")
    async def news(sender: str, payload: Any) -> None:
        got.append((sender, payload))

    with anyio.fail_after(20):
        async with cluster(a, b, c):
            assert await a.request("c", "echo", {"x": [1, 2]}, timeout=5) == {"x": [1, 2]}
            assert await c.request("b", "echo", "hi", timeout=5) == "hi"
            await b.emit("news", 42)
            await wait_until(lambda: got == [("b", 42)], what="c to get b's event")


@pytest.mark.parametrize(
    ("ring", "joiner_told"),
    [
        (None, "this cluster requires a key (--keyring) and this node has none"),
        (OTHER, "not authenticated: no key in common"),
    ],
    ids=["no-keyring", "another-key"],
)
async def test_a_node_without_the_key_is_refused_and_learns_nothing(
    ring: Keyring | None, joiner_told: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    a = keyed(port, "a")
    with anyio.fail_after(20):
        async with a:
            outsider = keyed(port, "x", ring=ring, join_only=True)
            with pytest.raises((HandshakeRefusedError, JoinError)) as refused:
                async with outsider:
                    pytest.fail("a node without the key joined")
            assert joiner_told in str(refused.value)
            assert SECRET_NAME not in str(refused.value)
            await wait_until(
                lambda: any(
                    "not authenticated" in r.getMessage() for r in caplog.records if r.name == "pydevts.node"
                ),
                what="a's log of the refusal",
            )
            assert alive_ids(a) == {"a"}
            late = keyed(port, "late")  # the right key still gets in
            async with late:
                assert await late.request("a", "echo", 1, timeout=5) == 1


async def test_a_raw_hello_gets_a_refusal_that_names_nothing() -> None:
    port = free_port()
    with anyio.fail_after(15):
        async with keyed(port, "a"):
            async with RawPeer.connect(port) as raw:
                await raw.send_frames(raw_hello("spy", cluster=SECRET_NAME))
                frames = await raw.receive_until_eof()
    assert len(frames) == 1 and frames[0][0] == REFUSE
    text = frames[0][1:].decode()
    assert "requires a key" in text
    assert SECRET_NAME not in text and "msgpack" not in text and "peer" not in text


async def test_a_keyed_node_cannot_join_an_open_cluster_and_is_told_why() -> None:
    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="open"):
            with pytest.raises(
                (HandshakeRefusedError, JoinError), match="this node uses a keyring; the cluster at"
            ):
                async with keyed(port, "k", join_only=True):
                    pytest.fail("joined")


async def test_unsealed_datagrams_are_dropped_counted_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    a, b = keyed(port, "a"), keyed(port, "b")
    with anyio.fail_after(20):
        async with cluster(a, b):
            caplog.set_level(logging.WARNING, logger="pydevts.node")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoof:
                for i in range(200):
                    spoof.sendto(b"\x81\xa1t\xa4ping" + bytes([i]), ("127.0.0.1", port))
            await wait_until(
                lambda: a.statistics().get("keyring.datagrams_dropped", 0) >= 200, what="200 drops counted"
            )
            lines = [r for r in caplog.records if "dropped a datagram" in r.getMessage()]
            assert 1 <= len(lines) <= 10, len(lines)
            assert alive_ids(a) == alive_ids(b) == {"a", "b"}
            assert await b.request("a", "echo", "still here", timeout=5) == "still here"


async def test_an_open_node_warns_once_that_anyone_can_join(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pydevts.node")
    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="open"):
            pass
        async with keyed(port, "closed"):
            pass
    warnings = [r.getMessage() for r in caplog.records if "open cluster" in r.getMessage().lower()]
    assert len(warnings) == 1 and "--keyring" in warnings[0], warnings


async def test_pickle_refuses_an_open_cluster() -> None:
    from pydevts import ConfigurationError

    with pytest.raises(ConfigurationError, match="keyring"):
        async with Node(free_port(), serializer="pickle", serializer_options={"trusted": True}):
            pass


async def test_over_quic_the_keyring_authenticates_both_ends() -> None:
    """QUIC's own TLS is verified by the dialling side at most; the keyring adds both ends' proof."""
    port = free_port()
    a = keyed(port, "qa", transport="quic")
    b = keyed(port, "qb", transport="quic")
    with anyio.fail_after(30):
        async with cluster(a, b):
            assert await a.request("qb", "echo", [1], timeout=5) == [1]
            with pytest.raises((HandshakeRefusedError, JoinError), match="no key in common"):
                async with keyed(port, "qx", ring=OTHER, transport="quic", join_only=True):
                    pytest.fail("a QUIC node with another key joined")
            assert alive_ids(a) == {"qa", "qb"}
