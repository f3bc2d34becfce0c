"""Seeds and retry-join (join.py): more ways into a cluster than its cluster port, on both backends."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from inproc import alive_ids, free_port, wait_for_mesh, wait_until
from pydevts import Node
from pydevts.cli.main import _parser
from pydevts.cli.options import node_from_args
from pydevts.errors import ConfigurationError, HandshakeRefusedError, JoinError
from pydevts.protocols import Address

pytestmark = pytest.mark.anyio


async def test_a_node_joins_through_a_seed_when_nothing_answers_at_its_cluster_port() -> None:
    seed_port, own_port = free_port(), free_port()
    with anyio.fail_after(20):
        async with Node(seed_port, node_id="a", merge_interval=0) as a:
            for join_only in (False, True):
                b = Node(
                    own_port,
                    node_id=f"b{join_only:d}",
                    seeds=[Address("127.0.0.1", seed_port)],
                    join_only=join_only,
                    merge_interval=0,
                )
                async with b:
                    assert not b.started_cluster
                    await wait_for_mesh([a, b])


async def test_join_only_with_seeds_fails_at_once_naming_every_target() -> None:
    port, seed = free_port(), free_port()
    node = Node(port, node_id="x", seeds=[f"127.0.0.1:{seed}"], join_only=True)
    with anyio.fail_after(5):
        start = anyio.current_time()
        with pytest.raises(JoinError, match="join-only") as caught:
            async with node:
                pass
        assert anyio.current_time() - start < 2
    assert f"cluster port 127.0.0.1:{port}" in str(caught.value)
    assert f"seed 127.0.0.1:{seed}" in str(caught.value)


async def test_a_node_whose_seeds_are_silent_starts_a_cluster_at_its_cluster_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, seed = free_port(), free_port()
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, "pydevts.join"):
        async with Node(port, node_id="x", seeds=[f"127.0.0.1:{seed}"], merge_interval=0) as node:
            assert node.started_cluster and node.address == f"127.0.0.1:{port}"
    assert any("no seed or known member answered" in r.getMessage() for r in caplog.records)


async def test_retry_join_keeps_trying_until_a_seed_answers(caplog: pytest.LogCaptureFixture) -> None:
    port, seed = free_port(), free_port()
    late = Node(
        port,
        node_id="late",
        seeds=[f"127.0.0.1:{seed}"],
        join_only=True,
        retry_join=True,
        join_timeout=0.5,
        merge_interval=0,
    )
    with anyio.fail_after(20), caplog.at_level(logging.INFO, "pydevts.join"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(late.serve)
            await wait_until(lambda: any("retrying" in r.getMessage() for r in caplog.records), 5, "a retry")
            await anyio.sleep(0.6)  # past join_timeout: retry-join has none
            async with Node(seed, node_id="seed", merge_interval=0) as first:
                await wait_until(lambda: late._running, 10, "late to join")
                await wait_for_mesh([first, late])
                await late.stop()
    assert not late.started_cluster


async def test_a_seed_of_another_cluster_fails_the_join_with_the_reason() -> None:
    port, seed = free_port(), free_port()
    with anyio.fail_after(10):
        async with Node(seed, node_id="other", cluster="blue", merge_interval=0):
            node = Node(port, node_id="x", cluster="red", seeds=[f"127.0.0.1:{seed}"], merge_interval=0)
            with pytest.raises((HandshakeRefusedError, JoinError), match="cluster"):
                async with node:
                    pass


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (["nope"], "HOST:PORT"),
        (["127.0.0.1:0"], "port must be 1 to 65535"),
        (["127.0.0.1:70000"], "HOST:PORT"),
        ("127.0.0.1:7000", "a list of addresses"),
        ([f"127.0.0.1:{p}" for p in range(1, 66)], "at most 64"),
        ([7000], "not an address"),
    ],
)
def test_bad_seeds_are_refused_with_a_clear_message(seeds: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Node(7000, seeds=seeds)


@pytest.mark.parametrize("interval", [-1, float("nan"), float("inf"), "30"])
def test_a_bad_merge_interval_is_refused(interval: Any) -> None:
    with pytest.raises(ConfigurationError, match="merge_interval"):
        Node(7000, merge_interval=interval)


def test_seeds_are_deduplicated_and_zero_disables_merging() -> None:
    node = Node(7000, seeds=["127.0.0.1:7001", Address("127.0.0.1", 7001), "[::1]:7002"], merge_interval=0)
    assert node.seeds == [Address("127.0.0.1", 7001), Address("::1", 7002)]
    assert node.merge_interval == 0


def test_the_cli_takes_join_retry_join_and_merge_interval() -> None:
    args = _parser().parse_args(
        ["node", "7000", "--join", "10.0.0.1:7000", "--join", "7001", "--retry-join", "--merge-interval", "0"]
    )
    node = node_from_args(args)
    assert node.seeds == [Address("10.0.0.1", 7000), Address("127.0.0.1", 7001)]
    assert node.retry_join and node.merge_interval == 0
    watch = _parser().parse_args(["watch", "--join", "7000", "--join", "h:7001"])
    assert [str(a) for a in watch.join] == ["127.0.0.1:7000", "h:7001"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--join", "host"], "HOST:PORT"),
        (["--join", "h:99999"], "out of range"),
        (["--merge-interval", "-1"], "0 or a positive number"),
    ],
)
def test_the_cli_refuses_bad_join_and_merge_interval(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["node", "7000", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


async def test_watch_with_several_joins_uses_the_first_as_cluster_port_and_the_rest_as_seeds() -> None:
    seed = free_port()
    with anyio.fail_after(20):
        async with Node(seed, node_id="a", merge_interval=0) as a:
            args = _parser().parse_args(["watch", "--join", str(free_port()), "--join", str(seed)])
            args.cluster_port, args.cluster_host = args.join[0].port, args.join[0].host
            args.seeds, args.node_id = args.join[1:], "w"
            async with node_from_args(args) as w:
                await wait_until(lambda: alive_ids(a) == {"a", "w"}, 5, "w to join")
                assert not w.started_cluster
