"""The handshake: who may join a cluster, and what a refused peer is told."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from inproc import (
    RawPeer,
    alive_ids,
    cluster,
    free_port,
    pydevts_warnings,
    raw_hello,
    wait_for_mesh,
    wait_until,
)
from pydevts import HandshakeRefusedError, Node, SerializationError
from pydevts.wire import PROTOCOL_VERSION, REFUSE, Hello

pytestmark = pytest.mark.anyio


class JsonSerializer:
    """A minimal second serializer, so that two nodes can disagree."""

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj).encode()
        except TypeError as exc:
            raise SerializationError(f"json cannot encode {type(obj).__qualname__}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"payload is not JSON: {exc}") from exc


async def echo(sender: str, payload: Any) -> Any:
    return payload


async def assert_still_serving(port: int, *existing: Node, cluster_name: str = "default") -> None:
    """A fresh node of the right cluster can still join, and requests work both ways."""
    late = Node(port, node_id="zz-late", cluster=cluster_name)
    late.add_handler("echo", echo)
    for node in existing:
        node.add_handler("echo", echo)
    async with late:
        await wait_for_mesh([*existing, late])
        for node in existing:
            assert await late.request(node.id, "echo", ["ping", node.id], timeout=5) == ["ping", node.id]
            assert await node.request(late.id, "echo", 1, timeout=5) == 1


async def test_other_cluster_name_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    y = Node(port, node_id="y1", cluster="y")
    x = Node(port, node_id="x1", cluster="x")
    with anyio.fail_after(15):
        async with y:
            with pytest.raises(HandshakeRefusedError, match="cluster name differs") as refused:
                async with x:
                    pytest.fail("a node of cluster 'x' joined cluster 'y'")
            assert "cluster name differs" in refused.value.reason
            assert refused.value.reason.startswith("cluster name differs: this node is in cluster 'x'; ")
            assert refused.value.reason.endswith(f"the cluster at 127.0.0.1:{port} is 'y'")
            assert not x.started_cluster and x.members == []
            await wait_until(
                lambda: any("cluster name differs" in m for m in pydevts_warnings(caplog.records)),
                what="the refusal to be logged by y",
            )
            assert alive_ids(y) == {"y1"}
            await assert_still_serving(port, y, cluster_name="y")


async def test_other_serializer_is_refused() -> None:
    port = free_port()
    packer = Node(port, node_id="m1")
    jsoner = Node(port, node_id="j1", serializer=JsonSerializer())
    with anyio.fail_after(15):
        async with packer:
            with pytest.raises(HandshakeRefusedError, match="serializer differs") as refused:
                async with jsoner:
                    pytest.fail("a json node joined a msgpack cluster")
            assert "this node uses serializer 'json'" in refused.value.reason
            assert refused.value.reason.endswith("uses 'msgpack'")
            assert alive_ids(packer) == {"m1"}
            await assert_still_serving(port, packer)


async def test_a_node_with_another_router_is_refused() -> None:
    port = free_port()
    meshed = Node(port, node_id="p1")
    hopper = Node(port, node_id="h1", router="hop")
    with anyio.fail_after(15):
        async with meshed:
            with pytest.raises(
                HandshakeRefusedError,
                match=r"router differs: this node uses router 'hop'; the cluster at [\d.]+:\d+ uses 'peer'",
            ):
                async with hopper:
                    pytest.fail("a hop node joined a peer cluster")
            assert alive_ids(meshed) == {"p1"}
            await assert_still_serving(port, meshed)


async def test_a_cluster_of_json_nodes_works() -> None:
    """The custom serializer itself is fine: nodes that all use it form a cluster."""
    port = free_port()
    a = Node(port, node_id="a", serializer=JsonSerializer())
    b = Node(port, node_id="b", serializer=JsonSerializer())
    b.add_handler("echo", echo)
    with anyio.fail_after(15):
        async with cluster(a, b):
            assert await a.request("b", "echo", {"k": [1, 2]}, timeout=5) == {"k": [1, 2]}


async def test_other_protocol_version_is_refused_with_a_refuse_frame() -> None:
    port = free_port()
    node = Node(port, node_id="n1")
    with anyio.fail_after(15):
        async with node:
            async with RawPeer.connect(port) as raw:
                await raw.send_frames(raw_hello("raw-99", protocol=99))
                frames = await raw.receive_until_eof()  # the node answers, then closes
            assert len(frames) == 1, frames
            (refuse,) = frames
            assert refuse[0] == REFUSE == 0x31
            text = refuse[1:].decode()
            assert "protocol version differs" in text
            assert text.startswith("protocol version differs: this node speaks version 99; the cluster at ")
            assert text.endswith(f" speaks {PROTOCOL_VERSION}")
            assert alive_ids(node) == {"n1"}
            await assert_still_serving(port, node)


async def test_raw_client_with_a_valid_hello_gets_the_nodes_hello() -> None:
    """The positive control for the raw-client tests: a right HELLO is answered by a HELLO."""
    port = free_port()
    node = Node(port, node_id="n1", tags={"role": "db"})
    with anyio.fail_after(15):
        async with node:
            async with RawPeer.connect(port) as raw:
                hello = Hello.from_frame(await raw.handshake("raw-ok"))
                assert (hello.node_id, hello.cluster, hello.serializer) == ("n1", "default", "msgpack")
                assert hello.address == node.address and dict(hello.tags) == {"role": "db"}
                await wait_until(lambda: "raw-ok" in alive_ids(node), what="the raw member to be seen")
            await wait_until(lambda: alive_ids(node) == {"n1"}, what="the raw member to be gone")


async def test_duplicate_node_id_of_the_entry_node_is_refused() -> None:
    port = free_port()
    first = Node(port, node_id="same")
    second = Node(port, node_id="same")
    with anyio.fail_after(15):
        async with first:
            with pytest.raises(HandshakeRefusedError, match="already in use"):
                async with second:
                    pytest.fail("a second node with the same id joined")
            assert alive_ids(first) == {"same"}
            await assert_still_serving(port, first)


async def test_duplicate_node_id_of_another_member_is_refused() -> None:
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    b.add_handler("echo", echo)
    impostor = Node(port, node_id="b")
    outcome = "joined"
    with anyio.fail_after(15):
        async with cluster(a, b):
            try:
                async with impostor:
                    pass
            except HandshakeRefusedError:
                outcome = "refused"
            # Whatever happened, the real b must still be a member that A can reach.
            await wait_for_mesh([a, b], timeout=2)
            assert await a.request("b", "echo", "real b?", timeout=5) == "real b?"
    assert outcome == "refused"
