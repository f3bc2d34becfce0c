"""The sending side of a :class:`~pydevts.wire.link.Link`: queue, coalescing writer, backpressure.

Sending never writes to the socket directly: frames are queued and a writer
task sends everything queued since its last pass in one write (coalescing).
When more than ``high_water`` bytes wait, :meth:`LinkWriter.send` blocks
until the writer has taken them — so a slow peer pushes back on its sender
instead of growing memory. A sender that has waited ``stall_timeout`` seconds
with nothing written meanwhile closes the link: the peer does not read (a
slow consumer, see :mod:`pydevts.limits`).

:class:`LinkWriter` is a base class of :class:`~pydevts.wire.link.Link` only; its
state is set up by ``Link.__init__``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, cast

import anyio

from ..errors import ConnectionClosedError, FrameTooLargeError, PydevtsError
from ..protocols import Connection, ConnectionInfo, ConnectionPlugin
from .messages import ERROR, REPLY, REPLY_H, REQUEST, REQUEST_H
from .session import ACK_DELAY, Session

if TYPE_CHECKING:
    from .link import Link, OnLimit

__all__ = ["SEND_DEADLINE", "LinkWriter"]

log = logging.getLogger("pydevts.link")

#: A deadline (``anyio.current_time()`` clock) for waiting for queue space in
#: :meth:`Link.send`; past it, ``send`` raises TimeoutError (the frame stays
#: queued). Set by ``request`` so that its timeout covers a blocked send too,
#: without a cancel scope on the fast path.
SEND_DEADLINE: ContextVar[float | None] = ContextVar("pydevts_send_deadline", default=None)


class Pressure:
    """Sends that waited for room on a link or in a member's retransmit buffer (backpressure)."""

    __slots__ = ("wait_us", "waits")

    def __init__(self) -> None:
        self.waits = 0
        self.wait_us = 0


_DIRECT_KINDS = frozenset((REQUEST, REPLY, ERROR, REQUEST_H, REPLY_H))
#: Seconds a link whose writes fail keeps reading what already arrived, before it closes.
WRITE_FAILED_DRAIN = 1.0


class LinkWriter:
    """Queueing and writing frames to one peer (the sending half of a link)."""

    conn: Connection
    peer_id: str
    plugins: tuple[ConnectionPlugin, ...]
    plugins_out: tuple[ConnectionPlugin, ...]  # those that transform outgoing frames
    pressure: Pressure  # the node's count of sends that waited for room (and for how long)
    # What this link carried (``Node.links()``): writes, frames and bytes out (batches: writes).
    batches_out: int
    frames_out: int
    bytes_out: int
    info: ConnectionInfo
    high_water: int
    max_frame_size: int
    closed: bool
    close_reason: str | None
    stall_timeout: float | None
    on_limit: OnLimit | None
    _pending: list[bytes]
    _pending_bytes: int
    _wake: anyio.Event | None
    _space: anyio.Event | None
    _idle: anyio.Event | None
    _writing: bool
    _write_error: str | None
    _scope: anyio.CancelScope | None
    _write_now: Callable[[Sequence[bytes]], bool] | None
    _flush_needed: bool
    _inflight: int
    _full_since: float | None
    #: The member session this link carries (None: a plain link, e.g. a client's).
    session: Session | None

    async def aclose(self, reason: str | None = None) -> None:
        raise NotImplementedError  # Link.aclose

    # ------------------------------------------------------------- sending

    def _prepare(self, frame: bytes) -> bytes | None:
        if self.closed and self.session is None:
            raise ConnectionClosedError(f"link to {self.peer_id} is closed ({self.close_reason})")
        if self.plugins_out:
            out = self._filter_out(frame)
            if out is None:
                return None
            frame = out
        if len(frame) > self.max_frame_size:
            raise FrameTooLargeError(len(frame), self.max_frame_size)
        return frame

    @property
    def queued_bytes(self) -> int:
        """Bytes queued or being written (``send`` waits past ``high_water``)."""
        return self._pending_bytes + self._inflight

    @property
    def _can_write_now(self) -> bool:
        """Whether a frame may go to the transport from the caller's task (nothing queued or
        being written before it; the transport can write without waiting)."""
        return (
            self._write_now is not None
            and not self._pending
            and not self._writing
            and not self._flush_needed
            and self._scope is not None
        )

    @property
    def has_room(self) -> bool:
        """Whether ``send`` would queue at once (no backpressure now)."""
        session = self.session
        if session is not None:
            return not session.full
        return self._pending_bytes + self._inflight < self.high_water

    def send_nowait(self, frame: bytes) -> None:
        """Queue ``frame`` without waiting for queue space (small control frames only)."""
        session = self.session
        if session is not None:
            session.check_open()
            prepared = self._prepare(frame)
            if prepared is not None:
                session.push(prepared)
            return
        prepared = self._prepare(frame)
        if prepared is not None:
            self._append(prepared)

    async def send(self, frame: bytes) -> None:
        """Queue ``frame``; wait only if more than ``high_water`` bytes are queued.

        Requests and replies sent while nothing else is queued or being
        written go straight to the transport from the caller's task, without
        waiting (``send_frames_nowait``): one task switch less on the
        round-trip path. Everything else is batched by the writer task.

        On a member link the frame belongs to the member's session: it is
        sent on the member's newest link and kept until acknowledged, and
        this waits while ``high_water`` bytes are unacknowledged (see
        :mod:`pydevts.wire.session`). It is not lost if this link closes.
        """
        session = self.session
        if session is not None:  # the hot path of a member link: Session.push, inlined
            if session.buffered >= session.high_water or session.closed is not None:
                if session.closed is None:
                    await session.wait_for_space(cast("Link", self), SEND_DEADLINE.get())
                session.check_open()
            size = len(frame)
            if self.plugins_out or size > self.max_frame_size:
                prepared = self._prepare(frame)
                if prepared is None:
                    return
                frame, size = prepared, len(prepared)
            session.buffer.append(frame)
            session.buffered += size
            link = session.link
            if link is None:
                return
            if frame[0] in _DIRECT_KINDS:
                link._enqueue(frame)
                return
            link._pending.append(frame)
            link._pending_bytes += size
            wake = link._wake
            if wake is not None and not link._writing:
                link._wake = None
                wake.set()
            return
        if frame[0] in _DIRECT_KINDS and self._can_write_now:
            prepared = self._prepare(frame)
            if prepared is not None:
                self._write_direct(prepared)
            return
        if self._pending_bytes + self._inflight >= self.high_water and not self.closed:
            await self._wait_for_space(SEND_DEADLINE.get())
        self.send_nowait(frame)

    async def _wait_for_space(self, deadline: float | None) -> None:
        # Wait *before* queueing: queued plus in-flight bytes stay under
        # high_water + one frame, however many tasks send at once. Past
        # ``deadline`` raise TimeoutError; past stall_timeout with nothing
        # written since a sender began to wait, cut the link.
        pressure = self.pressure
        pressure.waits += 1
        began = anyio.current_time()
        try:
            await self._wait_until_room(deadline)
        finally:
            pressure.wait_us += int((anyio.current_time() - began) * 1e6)

    async def _wait_until_room(self, deadline: float | None) -> None:
        while self._pending_bytes + self._inflight >= self.high_water and not self.closed:
            if self._space is None:
                self._space = anyio.Event()
            now = anyio.current_time()
            if self._full_since is None:
                self._full_since = now
            cut = math.inf if self.stall_timeout is None else self._full_since + self.stall_timeout
            until = cut if deadline is None else min(deadline, cut)
            with anyio.move_on_after(until - now) as waited:
                await self._space.wait()
            if not waited.cancelled_caught:
                continue
            if self._pending_bytes + self._inflight < self.high_water or self.closed:
                return
            if deadline is not None and deadline <= cut:
                raise TimeoutError
            await self._cut_slow_consumer(anyio.current_time() - self._full_since)

    async def _cut_slow_consumer(self, waited: float) -> None:
        reason = f"slow consumer: {self.queued_bytes} bytes queued and none written for {waited:.1f} s"
        if self.on_limit is not None:
            self.on_limit(cast("Link", self), "slow_consumer", reason)
        with anyio.CancelScope(shield=True):
            await self.aclose(reason)

    def _write_direct(self, frame: bytes) -> None:
        write_now = self._write_now
        assert write_now is not None  # callers checked _can_write_now
        self.batches_out += 1
        self.frames_out += 1
        self.bytes_out += len(frame)
        try:
            complete = write_now([frame])
        except PydevtsError as exc:
            self._write_failed(f"send failed: {exc}")
            raise ConnectionClosedError(f"link to {self.peer_id} failed: {exc}") from exc
        if not complete:
            # The transport kept the rest of the frame: the writer sends it next.
            self._flush_needed = True
            self._poke()

    # ------------------------------------------------------------- for sessions

    def _enqueue(self, frame: bytes) -> None:
        """Send a frame its session numbered: directly if it is a request or reply and nothing waits."""
        if frame[0] in _DIRECT_KINDS and self._can_write_now:
            try:
                self._write_direct(frame)
            except ConnectionClosedError:
                pass  # the link is failing; the session sends the frame again on the next one
            return
        self._append(frame)

    def _append(self, frame: bytes) -> None:
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        self._poke()

    def _queue_first(self, frames: list[bytes], size: int) -> None:
        """Queue ``frames`` before anything queued (a session resuming its stream on this link)."""
        self._pending = frames + self._pending
        self._pending_bytes += size
        self._poke()

    def _queue_control(self, frame: bytes) -> None:
        """Send a frame that is no part of the stream (an acknowledgement): at once if nothing is
        queued (no task switch: the sender may be waiting for it), else after what is queued."""
        if self._can_write_now and not self.closed:
            try:
                self._write_direct(frame)
            except ConnectionClosedError:
                pass  # the link is failing; the next one starts with an ACK
            return
        self._append(frame)

    def _drop_queued(self) -> None:
        """Forget what is queued: the session sends it on a newer link."""
        self._pending = []
        self._pending_bytes = 0

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not self._writing:
            self._wake = None
            wake.set()

    def _write_failed(self, reason: str) -> None:
        """Writing failed: stop writing; the writer closes the link once the reader is done.

        The member's session stops sending on it at once: what it queued here goes out again on
        the member's next link without waiting for this one to close (a delay past the hop
        router's reorder window would deliver a broadcast out of order)."""
        if self._write_error is None:
            self._write_error = reason
        if self.session is not None:
            self.session.detach(cast("Link", self))
        self._poke()

    def _fail(self, reason: str) -> None:
        if self._write_error is None:
            self._write_error = reason
        if self._scope is not None:
            self._scope.cancel()

    def _filter_out(self, frame: bytes) -> bytes | None:
        out: bytes | None = frame
        for plugin in self.plugins_out:
            try:
                out = plugin.on_frame_out(self.info, frame)
            except Exception as exc:
                # A plugin bug costs this link, never the node or the caller's task.
                log.exception("connection plugin %r failed on a frame to %s", plugin.name, self.peer_id)
                self._fail(f"connection plugin {plugin.name!r} failed: {exc!r}")
                raise ConnectionClosedError(
                    f"link to {self.peer_id} closed: plugin {plugin.name!r} failed"
                ) from exc
            if out is None:
                return None
            frame = out
        return frame

    async def _write_loop(self) -> None:
        # Takes everything queued (at most about high_water bytes, see send)
        # and writes it in one call; space is given back when the write ends.
        session = self.session
        while True:
            if self._write_error is not None:
                # The peer reset the connection (it closed with our frames unread, say): what it
                # sent before may still wait in our receive buffer. Let the reader take it (it
                # stops, and ends the link, at the reset) before closing, for a moment at most.
                with anyio.move_on_after(WRITE_FAILED_DRAIN):
                    await anyio.sleep_forever()
                self._fail(self._write_error)
                return
            if not (self._pending or self._flush_needed):
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
                self._wake = anyio.Event()
                if session is not None and session.ack_owed() and not session.ack_timer:
                    # Frames arrived: acknowledge them within ACK_DELAY (sooner if a batch goes first).
                    session.ack_timer = True
                    with anyio.move_on_after(ACK_DELAY):
                        await self._wake.wait()
                    session.ack_timer = False
                    if not self._pending and session.ack_owed() and not self.closed:
                        self._pending.append(session.take_ack())
                    continue
                await self._wake.wait()
                continue
            self._flush_needed = False
            frames = self._pending
            if session is not None and session.ack_owed():
                frames.append(session.take_ack())
            self._pending = []
            self._inflight = self._pending_bytes
            self._pending_bytes = 0
            self._writing = True
            self.batches_out += 1
            self.frames_out += len(frames)
            self.bytes_out += self._inflight
            try:
                await self.conn.send_frames(frames)
            except PydevtsError as exc:
                self._write_failed(f"send failed: {exc}")
                continue
            finally:
                self._writing = False
                self._inflight = 0
                del frames
            self._full_since = None
            if self._space is not None:
                self._space.set()
                self._space = None

    async def flush(self) -> None:
        """Wait until every queued frame has been handed to the transport."""
        while (self._pending or self._writing or self._flush_needed) and not self.closed:
            if self._idle is None:
                self._idle = anyio.Event()
            if self._wake is not None:
                self._wake.set()
                self._wake = None
            await self._idle.wait()
