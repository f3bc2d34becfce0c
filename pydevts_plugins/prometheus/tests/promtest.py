"""Helpers for the pydevts-prometheus tests: free ports, waiting with deadlines, scraping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping

import anyio
import anyio.abc
import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["NodeProcess", "Scrape", "free_port", "scrape", "wait_until"]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(pred: Callable[[], object], timeout: float = 10.0, what: str = "a condition") -> None:
    """Poll ``pred`` until it is true; fail the test if it is not within ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not pred():
            await anyio.sleep(0.005)
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Scrape:
    """One scrape of ``/metrics``, parsed: ``value(sample_name, **labels)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), float(sample.value)))

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def series(self, metric: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
        """The samples named ``metric`` whose labels include ``labels``."""
        return [
            (have, value)
            for sample, have, value in self.samples
            if sample == metric and all(have.get(k) == v for k, v in labels.items())
        ]

    def value(self, metric: str, /, **labels: str) -> float:
        """The one sample named ``metric`` with exactly these labels (0 when there is none)."""
        found = [v for sample, have, v in self.samples if sample == metric and have == labels]
        assert len(found) <= 1, f"{metric}{labels}: {len(found)} samples"
        return found[0] if found else 0.0

    def by(self, metric: str, label: str, /, **labels: str) -> dict[str, float]:
        """``{value of label: sample value}`` for the samples named ``metric`` matching ``labels``."""
        return {have[label]: value for have, value in self.series(metric, **labels)}

    def histogram_ok(self, name: str, labels: Mapping[str, str]) -> float:
        """Check a histogram series is whole (buckets rise, +Inf is the count); return the count."""
        buckets = sorted(
            (float(have["le"]), value)
            for have, value in self.series(f"{name}_bucket", **labels)
            if {k: v for k, v in have.items() if k != "le"} == dict(labels)
        )
        count = self.value(f"{name}_count", **labels)
        assert buckets, f"no buckets for {name}{dict(labels)}"
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), f"{name}{dict(labels)}: {buckets}"
        assert buckets[-1] == (float("inf"), count), f"{name}{dict(labels)}: {buckets[-1]} vs {count}"
        return count


async def scrape(client: httpx.AsyncClient, url: str) -> Scrape:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


class NodeProcess:
    """A ``pydevts`` command run as a subprocess; its merged output is kept line by line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.process: anyio.abc.Process | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        self.process = await anyio.open_process(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        tg.start_soon(self._read)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        buf = b""
        async for chunk in self.process.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines)

    async def stop(self, timeout: float = 10) -> int:
        """SIGINT (the node leaves), then the exit status; killed if it is still running after ``timeout``."""
        process = self.process
        assert process is not None
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with anyio.move_on_after(timeout):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        return process.returncode if process.returncode is not None else -9
