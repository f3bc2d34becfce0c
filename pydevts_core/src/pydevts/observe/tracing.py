"""Following one message through the cluster: "why didn't node X get event Y?"

A message whose headers carry :data:`TRACE_HEADER` (``pydevts-trace``, any
id of 1 to 64 characters) is *traced*: every node it passes records what
happened to it — ``sent``, ``relayed`` (to which neighbour), ``handled``,
``failed`` (the handler raised), ``dropped`` (and why) — in a small
bounded log (:class:`TraceLog`: the last :data:`MAX_TRACES` ids, at most
:data:`MAX_RECORDS` records each). ``pydevts trace ID`` asks every member
for its records of ``ID`` and prints the path; a member with none never
saw the message. Untraced messages cost nothing: the check is made only on
messages that carry headers.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Any

__all__ = ["MAX_RECORDS", "MAX_TRACES", "TRACE_HEADER", "TraceLog", "new_trace_id"]

TRACE_HEADER = "pydevts-trace"
MAX_TRACES = 64
MAX_RECORDS = 64
_MAX_ID = 64
_MAX_DETAIL = 200


def new_trace_id() -> str:
    """A fresh random trace id (16 hex digits)."""
    return os.urandom(8).hex()


class TraceLog:
    """The trace records of one node: at most MAX_TRACES ids (oldest forgotten first)."""

    def __init__(self, node_id: str, *, max_traces: int = MAX_TRACES, max_records: int = MAX_RECORDS) -> None:
        self.node_id = node_id
        self.max_traces = max_traces
        self.max_records = max_records
        self._traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def record(self, trace_id: str, what: str, name: str, peer: str | None, detail: str = "") -> None:
        """Note that this node ``what`` (sent, relayed, handled, failed, dropped) message ``name``."""
        trace_id = trace_id[:_MAX_ID]
        records = self._traces.get(trace_id)
        if records is None:
            if len(self._traces) >= self.max_traces:
                self._traces.popitem(last=False)
            records = self._traces[trace_id] = []
        if len(records) < self.max_records:
            records.append(
                {
                    "time": time.time(),
                    "node": self.node_id,
                    "what": what,
                    "name": name,
                    "peer": peer or "",
                    "detail": detail[:_MAX_DETAIL],
                }
            )

    def rows(self, trace_id: str) -> list[dict[str, Any]]:
        """This node's records of ``trace_id`` (oldest first); empty if it never saw it."""
        return list(self._traces.get(trace_id[:_MAX_ID], ()))

    def __len__(self) -> int:
        return len(self._traces)
