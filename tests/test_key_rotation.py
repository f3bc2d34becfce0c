"""Online key rotation (install, use, remove) through one node: no member and no event is lost."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import pytest
from inproc import alive_ids, cluster, free_port, wait_until
from pydevts import HandshakeRefusedError, JoinError, Node
from pydevts.errors import RemoteHandlerError
from pydevts.node.client import NodeClient
from pydevts.wire.keyring import generate_key, key_fingerprint

pytestmark = pytest.mark.anyio


def ring_file(path: Path, *keys: str) -> Path:
    path.write_text("".join(f"{k}\n" for k in keys))
    return path


async def test_the_documented_rotation_loses_no_member_and_no_event(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    old_fp, new_fp = (key_fingerprint(base64.b64decode(k)) for k in (old, new))
    port = free_port()
    files = {n: ring_file(tmp_path / f"{n}.keyring", old) for n in ("a", "b", "c")}
    a, b, c = (Node(port, node_id=n, keyring=files[n]) for n in ("a", "b", "c"))
    got: list[int] = []

    @c.on("n")
    async def number(sender: str, payload: int) -> None:
        got.append(payload)

    sent = 0
    with anyio.fail_after(40):
        async with cluster(a, b, c):
            client_ring = ring_file(tmp_path / "client.keyring", old)
            async with anyio.create_task_group() as tg:

                async def stream() -> None:  # b sends numbered events to c all along
                    nonlocal sent
                    while True:
                        await b.send("c", "n", sent)
                        sent += 1
                        await anyio.sleep(0.002)

                tg.start_soon(stream)
                async with NodeClient(f"127.0.0.1:{port}", keyring=client_ring) as client:
                    for op, key in (("install", new), ("use", new), ("remove", old)):
                        results = await client.keys(op, key)
                        assert set(results) == {"a", "b", "c"}, results
                        assert all("error" not in r for r in results.values()), results
                        await anyio.sleep(0.2)  # let traffic flow between the steps
                    listed = await client.keys("list")
                    assert all(r["keys"] == [new_fp] and r["primary"] == new_fp for r in listed.values())
                tg.cancel_scope.cancel()
            await wait_until(lambda: len(got) == sent, timeout=10, what="every event to arrive")
            assert got == list(range(sent)) and sent > 100
            for node in (a, b, c):
                assert alive_ids(node) == {"a", "b", "c"}
                assert node.statistics()["keyring.datagrams_dropped"] == 0
            # the files were written back: a restart keeps the new ring
            for path in files.values():
                assert path.read_text() == f"{new}\n"
            # a newcomer with the new key gets in; one with only the old key does not
            async with Node(port, node_id="d", keyring=[new]):
                await wait_until(lambda: "d" in alive_ids(a), what="d to join")
            with pytest.raises((HandshakeRefusedError, JoinError), match="no key in common"):
                async with Node(port, node_id="e", keyring=[old], join_only=True):
                    pytest.fail("a node with the removed key joined")
    assert old_fp != new_fp


async def test_rotation_refusals_say_why_per_member(tmp_path: Path) -> None:
    key, other = generate_key(), generate_key()
    port = free_port()
    a, b = Node(port, node_id="a", keyring=[key]), Node(port, node_id="b", keyring=[key])
    with anyio.fail_after(20):
        async with cluster(a, b):
            async with NodeClient(f"127.0.0.1:{port}", keyring=[key]) as client:
                results = await client.keys("remove", key)  # the primary cannot be removed
                assert all("primary" in r["error"] for r in results.values()), results
                results = await client.keys("use", other)  # not installed
                assert all("not installed" in r["error"] for r in results.values()), results
                with pytest.raises(RemoteHandlerError, match="expected"):
                    await client.request("pydevts.keys", {"op": "explode"})
            # a member cannot be made to act for a client, nor a client reach the member-only half
            with pytest.raises(RemoteHandlerError, match="for clients of this node"):
                await b.request("a", "pydevts.keys", {"op": "list"}, timeout=5)
            async with NodeClient(f"127.0.0.1:{port}", keyring=[key]) as client:
                with pytest.raises(RemoteHandlerError, match="is for members"):
                    await client.request("pydevts.keyring", {"op": "list"})


async def test_an_open_cluster_has_no_keys_to_change() -> None:
    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="a"):
            async with NodeClient(f"127.0.0.1:{port}") as client:
                results: dict[str, Any] = await client.keys("list")
    assert "no keyring" in results["a"]["error"]
