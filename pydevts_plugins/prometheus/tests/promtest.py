"""Helpers for the pydevts-prometheus tests: free ports, waiting with deadlines, scraping."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx
from agents import LoggedProcess as NodeProcess  # tests/ (on the test path): shared with the suite
from inproc import free_port
from inproc import wait_until as _wait_until
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["NodeProcess", "Scrape", "free_port", "scrape", "wait_until"]


async def wait_until(pred: Callable[[], object], timeout: float = 10.0, what: str = "a condition") -> None:
    """``inproc.wait_until`` with a longer default deadline (scrapes cross threads)."""
    await _wait_until(pred, timeout, what)


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
