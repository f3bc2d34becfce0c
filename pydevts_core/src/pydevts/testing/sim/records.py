"""What a simulation records: deliveries, sends, drops, protocol errors and faults (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Delivery", "DroppedFrame", "Fault", "ProtocolError", "Sent"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event handed to a node's application.

    ``origin`` is who the host (or the router, with ``Deliver``) says sent it;
    ``author`` and ``seq`` are read from the event itself (the simulator's
    ``sim-from`` / ``sim-seq`` headers), so checks can tell a misattributed,
    duplicated or reordered event. ``payload`` is the JSON value sent.
    """

    time: float
    origin: str
    name: str
    payload: Any
    author: str = ""
    seq: int = -1


@dataclass(frozen=True, slots=True)
class Sent:
    """An event a node's application sent: to ``dest``, or broadcast (``dest`` is ``None``)."""

    time: float
    author: str
    seq: int
    dest: str | None
    name: str


@dataclass(frozen=True, slots=True)
class DroppedFrame:
    """A router's ``Dropped`` action at ``node``."""

    time: float
    node: str
    origin: str
    frame: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """``node``'s router refused a frame from ``peer`` (``receive`` raised): the link was closed."""

    time: float
    node: str
    peer: str
    error: str


@dataclass(frozen=True, slots=True)
class Fault:
    """An exception from a machine's ``timer``/``datagram`` or an application handler (``where``)."""

    time: float
    node: str
    where: str
    error: BaseException
