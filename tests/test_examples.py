"""The seed's examples, run as their README describes: real processes on loopback."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from agents import LoggedProcess, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test drives processes; each example picks its own event loop


def example(name: str, *args: object, cwd: Path | None = None) -> LoggedProcess:
    return LoggedProcess(
        [sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=str(cwd) if cwd else None
    )


def values(proc: LoggedProcess, prefix: str) -> list[int | None]:
    out: list[int | None] = []
    for line in proc.lines:
        m = re.fullmatch(rf"{prefix}: (\d+|None)", line.strip())
        if m:
            out.append(None if m.group(1) == "None" else int(m.group(1)))
    return out


async def wait_for(predicate, what: str, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    with anyio.move_on_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def stop_all(*procs: LoggedProcess) -> None:
    with anyio.CancelScope(shield=True):
        for proc in procs:
            if proc.process is not None:
                await proc.stop()


@pytest.mark.parametrize("transport", ["tcp", "quic"])
async def test_picklenode_writer_readers_late_reader_and_picklenodewriter(
    tmp_path: Path, transport: str
) -> None:
    port = free_port()
    over = ("--transport", transport)
    writer = example("picklenode.py", port, "w", *over)
    readers = [example("picklenode.py", port, *over) for _ in range(2)]
    filewriter = example("picklenodewriter.py", port, *over, cwd=tmp_path)
    late = example("picklenode.py", port, *over)
    output = tmp_path / "pickleoutput.txt"
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            try:
                await writer.start(tg)
                await wait_listening(port, transport=transport)  # the writer started the cluster
                for proc in (*readers, filewriter):
                    await proc.start(tg)
                # readers print increasing values as the writer updates it every second
                for reader in readers:
                    await wait_for(
                        lambda r=reader: len([v for v in values(r, "value") if v]) >= 3, "3 values"
                    )
                    seen = [v for v in values(reader, "value") if v is not None]
                    assert seen == sorted(seen) and seen[-1] > seen[0], seen
                # picklenodewriter's file follows the writer
                await wait_for(lambda: output.exists() and output.read_text().strip().isdigit(), "the file")
                current = max(v for v in values(writer, "set value") if v is not None)
                await wait_for(
                    lambda: output.exists() and int(output.read_text() or 0) >= current,
                    f"the file to reach {current}",
                )
                # a reader started late prints the current value at once, not None
                at_start = max(v for v in values(writer, "set value") if v is not None)
                await late.start(tg)
                await wait_for(
                    lambda: values(late, "value") != [], "the late reader's first value", timeout=5
                )
                first = values(late, "value")[0]
                assert first is not None and first >= at_start, (first, at_start)
                # stopping the writer leaves the readers running
                assert await writer.stop() == 0
                count = len(values(readers[0], "value"))
                await wait_for(
                    lambda: len(values(readers[0], "value")) >= count + 2, "readers to go on printing"
                )
                for proc in (*readers, late, filewriter):
                    assert proc.process is not None and proc.process.returncode is None
                for proc in (*readers, late, filewriter):
                    assert await proc.stop() == 0, proc.lines[-10:]
            finally:
                await stop_all(writer, *readers, filewriter, late)
                tg.cancel_scope.cancel()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pickleoutput.txt"]


async def test_fastapi_example_two_instances_and_a_late_one() -> None:
    port = free_port()
    http = [free_port() for _ in range(3)]
    apps = [example("fastapi_example.py", port, h) for h in http]
    urls = [f"http://127.0.0.1:{h}" for h in http]
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg, httpx.AsyncClient(timeout=10) as client:

            async def members(i: int) -> list[dict[str, object]]:
                return (await client.get(f"{urls[i]}/members")).json()  # type: ignore[no-any-return]

            try:
                await apps[0].start(tg)
                await apps[0].wait_line("serving http://")  # bound, joined, store fetched
                await apps[1].start(tg)
                await apps[1].wait_line("serving http://")  # bound, joined, store fetched
                a_list: list[dict[str, object]] = []

                async def both_listed() -> bool:
                    nonlocal a_list
                    a_list = await members(0)
                    return len([m for m in a_list if m["state"] == "alive"]) == 2

                with anyio.fail_after(10):
                    while not await both_listed():
                        await anyio.sleep(0.05)
                ports = sorted(m["tags"]["http_port"] for m in a_list)  # type: ignore[index]
                assert ports == sorted(str(h) for h in http[:2])
                assert all(m["http"] == f"http://127.0.0.1:{m['tags']['http_port']}" for m in a_list)  # type: ignore[index]
                ids = {m["tags"]["http_port"]: m["id"] for m in a_list}  # type: ignore[index]

                # set through one, read through the other
                assert (await client.get(f"{urls[0]}/set/colour/blue")).json()["value"] == "blue"
                assert (await client.get(f"{urls[1]}/set/size/10")).json()["set"] == "size"
                with anyio.fail_after(10):
                    for url in urls[:2]:  # each instance applies the other's set when its handler runs
                        while (await client.get(f"{url}/store")).json() != {"colour": "blue", "size": "10"}:
                            await anyio.sleep(0.05)

                # GET / emits a test event that the other instance receives
                emitted = (await client.get(f"{urls[0]}/")).json()
                assert emitted["emitted"] == "test"
                with anyio.fail_after(10):
                    while not (await client.get(f"{urls[1]}/received")).json():
                        await anyio.sleep(0.05)
                got = (await client.get(f"{urls[1]}/received")).json()
                assert got[0]["from"] == ids[str(http[0])]

                # request/reply through HTTP
                reply = (await client.get(f"{urls[1]}/request/{ids[str(http[0])]}")).json()["reply"]
                assert reply == {
                    "id": ids[str(http[0])],
                    "http_port": http[0],
                    "asked_by": ids[str(http[1])],
                    "store_size": 2,
                }
                missing = await client.get(f"{urls[0]}/request/nobody")
                assert missing.status_code == 502 and missing.json()["error"] == "UnknownNodeError"

                # a late instance has the store as soon as it serves HTTP
                await apps[2].start(tg)
                await apps[2].wait_line("serving http://")  # bound, joined, store fetched
                assert (await client.get(f"{urls[2]}/store")).json() == {"colour": "blue", "size": "10"}
                for proc in apps:
                    assert await proc.stop() == 0, proc.lines[-10:]
            finally:
                await stop_all(*apps)
                tg.cancel_scope.cancel()
