"""Member links that resume without loss: one :class:`Session` per member, across its links.

Theory of operation
-------------------
A transport connection is reliable and ordered while it lives; what it
loses is whatever was queued or in flight when it closes. A *session* is
the state two live members keep about each other that outlives any one
connection between them:

* **Numbering.** Every frame this node sends to the member (events,
  requests, replies, router frames; everything a link's ``send`` takes)
  gets the next number of this session's *stream*. Numbers are implicit:
  the first data frame on a link follows a ``NEXT(epoch, n)`` frame and
  the ones after it count up from ``n``, so a data frame carries no extra
  bytes.
* **Retransmit buffer.** A sent frame stays in the buffer until the member
  acknowledges it. ``ACK(epoch, count)`` is cumulative and batched: sent
  (at once, from the reading task) when ``window / 8`` bytes arrived since
  the last one, after
  :data:`ACK_DELAY` otherwise, and piggybacked on any batch the link writes
  anyway. The buffer is the link's memory: past ``high_water`` bytes
  unacknowledged, ``send`` waits (backpressure, as without sessions).
* **Resumption.** Each new link to the member starts with ``ACK`` (what
  this side has received) and ``NEXT`` (where this side's stream resumes),
  followed by every unacknowledged frame. The newest link is the one sent
  on; when it closes, the next newest open one takes over the same way.
* **De-duplication.** The receiver delivers frame ``n`` only if it is the
  next one it expects; a resent copy of a delivered frame (it was in
  flight on the old link) is dropped. So while both members live, every
  frame is delivered exactly once and in order, across any number of link
  drops and duplicate links.
* **Epochs.** A stream is named by its epoch (a per-process increasing
  number). When this node gives up on a member (it failed, left, or came
  back as a new incarnation), the session is dropped: what the member
  never acknowledged is counted (``statistics()["undelivered"]``), and a
  later session starts a new epoch, which tells the other side to start
  counting afresh. A receiver never goes back to an older epoch.

Links are :class:`~pydevts.wire.link.Link`; this module keeps the numbers and
the buffer, and tells links what to queue. Both sides offer sessions in the
HELLO (``resume`` extension); a link to a peer that does not is plain.
"""

from __future__ import annotations

import itertools
import logging
import math
import struct
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio

from ..errors import ConnectionClosedError, RemoteProtocolError
from ..ratelog import RateLimitedLog

if TYPE_CHECKING:
    from .link import Link

__all__ = [
    "ACK",
    "ACK_DELAY",
    "NEXT",
    "Session",
    "encode_ack",
    "encode_next",
    "keeps",
]

log = logging.getLogger("pydevts.session")
_RATELOG = RateLimitedLog(log)  # what a peer's NEXT frames can make this node say

NEXT = 0x05  # epoch (u64), number of the next data frame (u64), sender's window (u32)
ACK = 0x06  # epoch (u64) of the stream acknowledged, frames received (u64)
_CONTROL = frozenset((NEXT, ACK))
_NEXT = struct.Struct(">QQI")
_ACK = struct.Struct(">QQ")
#: Seconds an acknowledgement may wait for more frames (or a batch to ride on).
ACK_DELAY = 0.02
#: Whether this process offers sessions in its HELLOs (a switch for benchmarks only).
ENABLED = True

_epochs = itertools.count(time.time_ns())


def encode_next(epoch: int, seq: int, window: int) -> bytes:
    return bytes((NEXT,)) + _NEXT.pack(epoch, seq, min(window, 0xFFFFFFFF))


def encode_ack(epoch: int, count: int) -> bytes:
    return bytes((ACK,)) + _ACK.pack(epoch, count)


class Session:
    """Both directions of the exchange with one member, across its links."""

    def __init__(self, peer_id: str, incarnation: int, high_water: int) -> None:
        self.peer_id = peer_id
        self.incarnation = incarnation
        self.high_water = high_water
        self.epoch = next(_epochs)
        self.closed: str | None = None  # why the session was dropped
        self.links: list[Link] = []  # open links, oldest first
        self.link: Link | None = None  # the one sent on
        # Sending: frames base+1 .. base+len(buffer) await acknowledgement.
        self.base = 0
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.resent = 0
        self._space: anyio.Event | None = None
        self._full_since: float | None = None
        # Receiving.
        self.peer_epoch = 0
        self.received = 0
        self.acked_in = 0  # ``received`` when we last sent an ACK
        self.unacked_bytes = 0
        self.ack_every = 64 * 1024
        self.ack_timer = False  # a writer is waiting ACK_DELAY to send an ACK
        self.duplicates = 0
        self._busy = False
        self._turns: deque[anyio.Event] = deque()

    def __repr__(self) -> str:
        return (
            f"<Session {self.peer_id} sent={self.base + len(self.buffer)} acked={self.base} "
            f"received={self.received} links={len(self.links)}>"
        )

    # ------------------------------------------------------------- links

    def attach(self, link: Link) -> None:
        """A new link to the member: send on it from now on, resuming the stream — unless the
        current one is open and the duplicate-link rule keeps it (:func:`keeps`), as routers do."""
        self.links.append(link)
        current = self.link
        if current is None or current.closed or not keeps(current, link):
            self._make_current(link)

    def detach(self, link: Link) -> None:
        """``link`` closed: go on with the newest other open link, or none until one comes."""
        if link in self.links:
            self.links.remove(link)
        self.ack_timer = False
        if self.link is link:
            self.link = None
            if self.links and self.closed is None:
                self._make_current(self.links[-1])

    def _make_current(self, link: Link) -> None:
        old, self.link = self.link, link
        if old is not None and old is not link:
            old._drop_queued()  # they are in the buffer: resent on ``link``
        frames = []
        if self.peer_epoch:
            frames.append(self.take_ack())
        frames.append(encode_next(self.epoch, self.base + 1, self.high_water))
        frames.extend(self.buffer)
        self.resent += len(self.buffer)
        link._queue_first(frames, sum(map(len, frames)))

    # ------------------------------------------------------------- sending

    def check_open(self) -> None:
        if self.closed is not None:
            raise ConnectionClosedError(f"no longer linked to {self.peer_id}: {self.closed}")

    def push(self, frame: bytes) -> None:
        """Number ``frame``, keep it until acknowledged, and send it on the current link."""
        self.check_open()
        self.buffer.append(frame)
        self.buffered += len(frame)
        link = self.link
        if link is not None:
            link._enqueue(frame)

    @property
    def full(self) -> bool:
        return self.buffered >= self.high_water and self.closed is None

    async def wait_for_space(self, link: Link, deadline: float | None) -> None:
        """Wait while ``high_water`` bytes are unacknowledged (``deadline``: TimeoutError past it).

        Past ``stall_timeout`` with nothing acknowledged meanwhile, the link
        sent on is cut as a slow consumer; the frames stay here and go out
        again on the member's next link.
        """
        pressure = link.pressure
        pressure.waits += 1
        began = anyio.current_time()
        try:
            await self._wait_until_room(link, deadline)
        finally:
            pressure.wait_us += int((anyio.current_time() - began) * 1e6)

    async def _wait_until_room(self, link: Link, deadline: float | None) -> None:
        while self.full:
            if self._space is None:
                self._space = anyio.Event()
            now = anyio.current_time()
            if self._full_since is None:
                self._full_since = now
            stall = link.stall_timeout
            cut = math.inf if stall is None or self.link is None else self._full_since + stall
            until = cut if deadline is None else min(deadline, cut)
            with anyio.move_on_after(until - now) as waited:
                await self._space.wait()
            if not waited.cancelled_caught or not self.full:
                continue
            if deadline is not None and deadline <= cut:
                raise TimeoutError
            current = self.link
            self._full_since = None
            if current is not None:
                await current._cut_slow_consumer(anyio.current_time() - now)

    def _on_ack(self, epoch: int, count: int) -> None:
        if epoch != self.epoch or self.closed is not None:
            return  # about a stream this side dropped
        done = count - self.base
        if done <= 0:
            return
        if done > len(self.buffer):
            raise RemoteProtocolError(
                f"{self.peer_id} acknowledged frame {count}; only {self.base + len(self.buffer)} were sent"
            )
        self.buffered -= sum(map(len, self.buffer[:done]))
        del self.buffer[:done]
        self.base = count
        self._full_since = None
        if self._space is not None and self.buffered < self.high_water:
            self._space.set()
            self._space = None

    # ------------------------------------------------------------- receiving

    def accept(self, link: Link, frames: list[bytes]) -> list[bytes]:
        """The frames of a batch read from ``link`` that are new, in order (control frames taken out)."""
        if link.in_epoch == self.peer_epoch and link.in_next == self.received + 1 and link.in_epoch:
            try:
                for frame in frames:
                    if frame[0] in _CONTROL:
                        break
                else:
                    n = len(frames)
                    self.received += n
                    link.in_next += n
                    self._received_bytes(sum(map(len, frames)))
                    return frames
            except IndexError:
                pass  # an empty frame: the slow path passes it on, the dispatcher refuses it
        return self._accept_slowly(link, frames)

    def _accept_slowly(self, link: Link, frames: list[bytes]) -> list[bytes]:
        kept: list[bytes] = []
        size = 0
        for frame in frames:
            kind = frame[0] if frame else -1
            if kind == ACK:
                self._on_ack(*_unpack(_ACK, frame, "ACK"))
            elif kind == NEXT:
                self._on_next(link, *_unpack(_NEXT, frame, "NEXT"))
            elif not link.in_epoch:
                raise RemoteProtocolError(f"{self.peer_id} sent a frame before numbering its stream (NEXT)")
            else:
                n = link.in_next
                link.in_next = n + 1
                if link.in_epoch != self.peer_epoch or n <= self.received:
                    self.duplicates += 1  # resent (or of a stream the peer dropped)
                    continue
                self.received = n
                kept.append(frame)
                size += len(frame)
        if size:
            self._received_bytes(size)
        return kept

    def _on_next(self, link: Link, epoch: int, seq: int, window: int) -> None:
        if seq < 1:
            raise RemoteProtocolError(f"{self.peer_id} numbered its stream from {seq}")
        if epoch < self.peer_epoch:
            link.in_epoch, link.in_next = epoch, seq  # an old stream's frames: dropped on arrival
            return
        if epoch > self.peer_epoch:
            # A new stream (the peer gave us up and started over, or we did): count afresh.
            if self.peer_epoch:
                _RATELOG.info("session.epoch", "%s started a new stream; counting afresh", self.peer_id)
            self.peer_epoch, self.received, self.acked_in = epoch, seq - 1, seq - 1
        elif seq > self.received + 1:
            # The peer resumes past what we received: it cannot, unless it lost track. Skip the gap.
            _RATELOG.warning(
                "session.gap",
                "%s resumed its stream at frame %d but frame %d is the next one here",
                *(self.peer_id, seq, self.received + 1),
            )
            self.received = self.acked_in = seq - 1
        link.in_epoch, link.in_next = epoch, seq
        self.ack_every = max(4096, window // 8)

    def _received_bytes(self, size: int) -> None:
        self.unacked_bytes += size
        link = self.link if self.link is not None else (self.links[-1] if self.links else None)
        if link is None:
            return
        if self.unacked_bytes >= self.ack_every:
            link._queue_control(self.take_ack())
        elif not self.ack_timer:
            link._poke()  # its writer sends an ACK within ACK_DELAY, or with its next batch

    def ack_owed(self) -> bool:
        return self.received != self.acked_in and self.peer_epoch != 0

    def take_ack(self) -> bytes:
        self.acked_in = self.received
        self.unacked_bytes = 0
        return encode_ack(self.peer_epoch, self.received)

    # ------------------------------------------------------------- delivering in turn

    async def take_turn(self) -> None:
        """Wait until no other link of this session is handing frames to the node (FIFO)."""
        if not self._busy:
            self._busy = True
            return
        event = anyio.Event()
        self._turns.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.end_turn()
            else:
                self._turns.remove(event)
            raise

    def end_turn(self) -> None:
        if self._turns:
            self._turns.popleft().set()  # handed over: still busy
        else:
            self._busy = False

    # ------------------------------------------------------------- the end

    def drop(self, reason: str) -> int:
        """Give the member up: return how many frames it never acknowledged."""
        if self.closed is not None:
            return 0
        self.closed = reason
        lost = len(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        if self._space is not None:
            self._space.set()
            self._space = None
        return lost


def keeps(existing: Link, new: Link) -> bool:
    """Of two links to one peer, whether to keep ``existing``: the one opened by the smaller node id.

    Both ends apply the same rule, so they close the same link when both
    dialled at once. When one side opened both (a reconnect), the newer wins.
    """

    def opener(link: Link) -> str:
        return link.local.node_id if link.initiated else link.peer_id

    if opener(existing) == opener(new):
        return False
    return opener(existing) < opener(new)


def _unpack(layout: struct.Struct, frame: bytes, what: str) -> tuple[int, ...]:
    if len(frame) != 1 + layout.size:
        raise RemoteProtocolError(f"malformed {what} frame ({len(frame)} bytes)")
    return layout.unpack_from(frame, 1)
