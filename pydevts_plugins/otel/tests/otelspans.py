"""Helpers for the pydevts-otel tests: an SDK provider with an in-memory exporter, span lookups."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["Recorded", "named", "one"]


class Recorded:
    """A TracerProvider whose spans are kept in memory as soon as they end."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return named(self.spans(), name)

    def has(self, *names: str) -> bool:
        """Has every span of ``names`` ended?"""
        return all(self.named(name) for name in names)

    def one(self, name: str) -> ReadableSpan:
        return one(self.spans(), name)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"expected one span {name!r}, got {len(found)} among {[s.name for s in spans]}"
    return found[0]
