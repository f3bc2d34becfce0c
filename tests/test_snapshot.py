"""Snapshots (snapshot.py): a restarted node rejoins through the members it knew, every seed gone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest
from agents import agents, wait_alive
from inproc import alive_ids, free_port, wait_for_mesh, wait_until
from pydevts import Node

pytestmark = pytest.mark.anyio


def listed(path: Path) -> set[str]:
    try:
        return {m["id"] for m in json.loads(path.read_bytes())["members"]}
    except (OSError, ValueError, KeyError):
        return set()


def node_id(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_bytes())["node_id"])
    except (OSError, ValueError, KeyError):
        return None


async def test_a_restarted_node_rejoins_through_its_snapshot_with_its_id_when_the_seed_is_gone(
    tmp_path: Path,
) -> None:
    port, path = free_port(), tmp_path / "c.snapshot"
    a, b = Node(port, node_id="a", merge_interval=0), Node(port, node_id="b", merge_interval=0)
    c = Node(port, snapshot=path, merge_interval=0)
    c_id = c.id
    # a is the seed, b and c join; c goes; a goes; c comes back through b, which its snapshot lists
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(a.serve)
            await tg.start(b.serve)
            async with c:
                await wait_for_mesh([a, b, c])
                await wait_until(lambda: listed(path) == {"a", "b"}, 5, "the snapshot to list a and b")
            assert json.loads(path.read_bytes())["node_id"] == c_id
            await a.stop()
            await wait_until(lambda: alive_ids(b) == {"b"}, 5, "a and c gone")
            again = Node(port, snapshot=path, join_only=True, merge_interval=0)
            assert again.id == c_id  # the snapshot's id: no id was given
            async with again:
                assert not again.started_cluster
                await wait_for_mesh([b, again])
            explicit = Node(port, node_id="d", snapshot=path, join_only=True, merge_interval=0)
            assert explicit.id == "d"  # an id given wins
            async with explicit:
                await wait_for_mesh([b, explicit])
            await b.stop()


async def test_a_corrupt_snapshot_is_ignored_with_a_warning_and_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "snap"
    path.write_bytes(b"\x00{garbage")
    with caplog.at_level(logging.WARNING, "pydevts.snapshot"):
        node = Node(free_port(), snapshot=path, merge_interval=0)
    assert any("not JSON" in r.getMessage() for r in caplog.records)
    with anyio.fail_after(10):
        async with node:
            await wait_until(lambda: node_id(path) == node.id, 5, "a snapshot written")


async def test_an_unwritable_snapshot_never_stops_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "snap"
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, "pydevts.snapshot"):
        async with Node(free_port(), snapshot=path, merge_interval=0) as node:
            await wait_until(lambda: any("could not write" in r.getMessage() for r in caplog.records), 5)
            assert node.members


@pytest.mark.slow
async def test_three_processes_a_restarted_node_rejoins_through_its_snapshot(
    anyio_backend: str, tmp_path: Path
) -> None:
    port, path = free_port(), tmp_path / "c.snapshot"
    with anyio.fail_after(90):
        async with agents([("a", [str(port), "--id", "a"])], anyio_backend) as (a,):
            await a.wait_for(lambda e: e.get("ev") == "started", 15, "start")
            async with agents([("b", [str(port), "--id", "b"])], anyio_backend) as (b,):
                async with agents([("c", [str(port), "--snapshot", str(path)])], anyio_backend) as (c,):
                    for proc in (a, b, c):
                        await proc.wait_for(lambda e: e.get("ev") == "started", 15, "start")
                    everyone = {"a", "b", c.id}
                    for proc in (a, b, c):
                        await wait_alive(proc, everyone, 15)
                    c_id = c.id
                assert listed(path) == {"a", "b"}  # written at stop, at the latest
                await a.stop()
                await wait_alive(b, {"b"}, 15)
                # the seed is gone and nothing listens at the cluster port: only the snapshot leads to b
                argv = [str(port), "--snapshot", str(path), "--join-only"]
                async with agents([("c2", argv)], anyio_backend) as (c2,):
                    started = await c2.wait_for(lambda e: e.get("ev") == "started", 15, "start")
                    assert started["id"] == c_id and started["new_cluster"] is False
                    await wait_alive(b, {"b", c_id}, 15)
                    await wait_alive(c2, {"b", c_id}, 15)
