"""What ``Node.links()`` reports about each open link."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .link import Link

__all__ = ["LinkInfo", "link_info"]


@dataclass(frozen=True)
class LinkInfo:
    """One open link of a node, as counted since it opened.

    ``batches_*`` count reads and writes (each carries one or more frames);
    ``queued_bytes`` is what waits to be written now (``send`` waits past
    the link's high-water mark).
    """

    peer: str
    address: str
    role: str  #: ``"member"`` or ``"client"``
    initiated: bool  #: this node dialled it
    age: float  #: seconds since it opened
    frames_in: int
    bytes_in: int
    batches_in: int
    frames_out: int
    bytes_out: int
    batches_out: int
    queued_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def link_info(link: Link) -> LinkInfo:
    return LinkInfo(
        peer=link.peer_id,
        address=link.peer.address,
        role=link.peer.role,
        initiated=link.initiated,
        age=round(time.monotonic() - link.opened_at, 3),
        frames_in=link.frames_in,
        bytes_in=link.bytes_in,
        batches_in=link.batches_in,
        frames_out=link.frames_out,
        bytes_out=link.bytes_out,
        batches_out=link.batches_out,
        queued_bytes=link.queued_bytes,
    )
