"""Simulated links: one FIFO pipe per direction, and the session a dropped link leaves behind."""

from __future__ import annotations

from collections import deque

__all__ = ["FIN", "Link", "Pipe", "Resting"]

#: The item a pipe carries when its sender closes the link (after everything sent before it).
FIN = None


class Pipe:
    """One direction of a link: what ``src`` sent that ``dst`` has not read yet, in order.

    Each item put in gets one arrival event tagged with the pipe's ``epoch``;
    an arrival takes the head item, so arrivals can never reorder the pipe.
    Bumping ``epoch`` voids the events already scheduled (a stall or a break).
    """

    __slots__ = ("dst", "epoch", "items", "last", "link", "src", "stalled")

    def __init__(self, link: Link, src: str, dst: str) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.items: deque[bytes | None] = deque()
        self.last = 0.0  # arrival time of the newest item: the next one arrives no sooner
        self.epoch = 0
        self.stalled = False  # held by a partition: no arrival events until it heals

    def take_frames(self) -> list[bytes]:
        """Empty the pipe (the link broke); return the frames it held, in order."""
        frames = [item for item in self.items if item is not FIN]
        self.items.clear()
        self.epoch += 1
        self.stalled = False
        return frames


class Link:
    """A link between two node incarnations (``gen`` is unique in the simulation)."""

    __slots__ = ("dead", "gen", "incarnations", "opener", "pipes", "silent", "up_since")

    def __init__(
        self, gen: int, opener: str, acceptor: str, incarnations: dict[str, int], now: float
    ) -> None:
        self.gen = gen
        self.opener = opener
        self.incarnations = incarnations
        self.pipes = {opener: Pipe(self, opener, acceptor), acceptor: Pipe(self, acceptor, opener)}
        self.up_since = now
        self.dead = False
        #: Drops every frame put on it from now on, both ways, without closing (a pulled cable).
        self.silent = False

    def other(self, node_id: str) -> str:
        a, b = self.pipes
        return b if node_id == a else a

    def __repr__(self) -> str:
        a, b = self.pipes
        return f"<link #{self.gen} {a}-{b}{' dead' if self.dead else ''}>"


class Resting:
    """What a node keeps of a link that dropped while it redials: the frames to send once it is back."""

    __slots__ = ("address", "incarnation", "pending")

    def __init__(self, address: str, incarnation: int, pending: list[bytes]) -> None:
        self.address = address
        self.incarnation = incarnation
        self.pending: deque[bytes] = deque(pending)
