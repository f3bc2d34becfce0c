"""pydevts-framestats: count frames and bytes on every link of a node."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydevts import ConnectionInfo, hookimpl

__all__ = ["FrameStats", "LinkCounters"]

log = logging.getLogger("pydevts.framestats")


@dataclass
class LinkCounters:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class FrameStats:
    """Counts per peer; optionally refuses peers carrying the tag ``deny_tag`` (``k=v``)."""

    name = "framestats"

    def __init__(self, deny_tag: str | None = None) -> None:
        self.links: dict[str, LinkCounters] = {}
        self.closed: dict[str, LinkCounters] = {}
        self._deny = tuple(deny_tag.split("=", 1)) if deny_tag else None

    def on_open(self, info: ConnectionInfo) -> None:
        if self._deny is not None and info.peer_tags.get(self._deny[0]) == self._deny[1]:
            raise PermissionError(f"peers tagged {'='.join(self._deny)} are not accepted")
        self.links[info.peer_id] = LinkCounters()

    def on_frame_out(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        counters = self.links.get(info.peer_id)
        if counters is not None:
            counters.frames_out += 1
            counters.bytes_out += len(frame)
        return frame

    def on_frame_in(self, info: ConnectionInfo, frame: bytes) -> bytes | None:
        counters = self.links.get(info.peer_id)
        if counters is not None:
            counters.frames_in += 1
            counters.bytes_in += len(frame)
        return frame

    def on_close(self, info: ConnectionInfo, reason: str | None) -> None:
        counters = self.links.pop(info.peer_id, None)
        if counters is None:
            return
        self.closed[info.peer_id] = counters
        log.info(
            "link %s closed (%s): %d frames / %d bytes in, %d frames / %d bytes out",
            info.peer_id,
            reason or "by this node",
            counters.frames_in,
            counters.bytes_in,
            counters.frames_out,
            counters.bytes_out,
        )


@hookimpl
def pydevts_register_connection_plugins() -> Mapping[str, Any]:
    return {"framestats": FrameStats}
