"""``pydevts node --plugin prometheus --plugin-option prometheus.port=N``: real processes, scraped."""

from __future__ import annotations

import sys
from collections.abc import Callable

import anyio
import httpx
import pytest
from promtest import NodeProcess, Scrape, free_port, scrape

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PYDEVTS = [sys.executable, "-m", "pydevts"]


async def scrape_until(
    client: httpx.AsyncClient,
    url: str,
    proc: NodeProcess,
    check: Callable[[Scrape], object],
    what: str,
    timeout: float = 30,
) -> Scrape:
    """Scrape ``url`` until ``check(scrape)`` holds (the endpoint may not be up yet)."""
    last: Scrape | None = None
    with anyio.move_on_after(timeout):
        while True:
            assert proc.process is not None
            if proc.process.returncode is not None:
                raise AssertionError(f"the node exited ({proc.process.returncode}): {proc.lines[-20:]}")
            try:
                last = await scrape(client, url)
            except httpx.TransportError:
                pass  # not listening yet
            else:
                if check(last):
                    return last
            await anyio.sleep(0.05)
    raise AssertionError(f"never {what}; last scrape: {last and last.text[-2000:]}; log {proc.lines[-20:]}")


async def test_cli_node_serves_metrics(anyio_backend: str) -> None:
    cluster_port, metrics_port = free_port(), free_port()
    base = [*PYDEVTS, "node", str(cluster_port), "--backend", anyio_backend]
    first = NodeProcess(
        [*base, "--id", "p1", "--plugin", "prometheus", "--plugin-option", f"prometheus.port={metrics_port}"]
    )
    second = NodeProcess([*base, "--id", "p2"])
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg, httpx.AsyncClient(timeout=5) as client:
            try:
                await first.start(tg)
                s = await scrape_until(client, url, first, lambda s: s.series("pydevts_node_info"), "up")
                [(info, _)] = s.series("pydevts_node_info")
                assert info["node_id"] == "p1" and info["cluster"] == "default"
                assert s.value("pydevts_member_events_total", kind="started") == 1
                await second.start(tg)
                frames_in = {"peer": "p2", "role": "member", "direction": "in"}
                s = await scrape_until(
                    client,
                    url,
                    first,
                    lambda s: (
                        s.value("pydevts_members", state="alive") == 2
                        and s.value("pydevts_link_frames_total", **frames_in) > 0
                    ),
                    "p2 alive and linked",
                )
                assert s.value("pydevts_member_events_total", kind="joined") == 1
                assert s.value("pydevts_links", role="member") == 1
                assert await second.stop() == 0
                s = await scrape_until(
                    client, url, first, lambda s: s.value("pydevts_members", state="left") == 1, "p2 left"
                )
                assert s.value("pydevts_member_events_total", kind="left") == 1
                assert s.value("pydevts_members", state="alive") == 1
                assert await first.stop() == 0
                with pytest.raises(httpx.ConnectError):  # the process is gone, and its endpoint with it
                    await client.get(url)
            finally:
                with anyio.CancelScope(shield=True):
                    for proc in (first, second):
                        if proc.process is not None:
                            await proc.stop()
                tg.cancel_scope.cancel()


async def test_cli_unknown_option_fails_naming_it(anyio_backend: str) -> None:
    argv = [
        *PYDEVTS,
        "node",
        str(free_port()),
        "--plugin",
        "prometheus",
        "--plugin-option",
        "prometheus.nope=1",
    ]
    with anyio.fail_after(60):
        done = await anyio.run_process(argv, check=False)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode != 0, output
    assert "connection plugin 'prometheus'" in output
    assert "unknown option(s): nope" in output
    assert "accepted: host, max_names, port, serve" in output
    assert "Traceback" not in output
