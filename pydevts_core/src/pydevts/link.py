"""Links: transport connections after the handshake, with the plugin pipeline.

A :class:`Link` is what routers work with. Sending never writes to the socket
directly: frames are queued and a writer task sends everything queued since
its last pass in one write (coalescing). When more than ``high_water`` bytes
wait, :meth:`Link.send` blocks until the writer has taken them — so a slow
peer pushes back on its sender instead of growing memory. A sender that has
waited ``stall_timeout`` seconds with nothing written meanwhile closes the
link: the peer does not read (a slow consumer, see :mod:`pydevts.limits`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from typing import Any

import anyio

from ._resume import Resume
from .errors import (
    ConnectionClosedError,
    FrameTooLargeError,
    PydevtsError,
    RemoteProtocolError,
    TransportError,
)
from .limits import StalledFrameError
from .protocols import Connection, ConnectionInfo, ConnectionPlugin
from .ratelog import RateLimitedLog
from .wire import ERROR, REFUSE, REPLY, REQUEST, Hello, decode_refuse

__all__ = ["DEFAULT_HIGH_WATER", "SEND_DEADLINE", "Link", "Tail"]

log = logging.getLogger("pydevts.link")
_RATELOG = RateLimitedLog(log)  # for links no node configured

DEFAULT_HIGH_WATER = 1024 * 1024

#: A deadline (``anyio.current_time()`` clock) for waiting for queue space in
#: :meth:`Link.send`; past it, ``send`` raises TimeoutError (the frame stays
#: queued). Set by ``request`` so that its timeout covers a blocked send too,
#: without a cancel scope on the fast path.
SEND_DEADLINE: ContextVar[float | None] = ContextVar("pydevts_send_deadline", default=None)
_DIRECT_KINDS = frozenset((REQUEST, REPLY, ERROR))

Tail = Callable[[], Coroutine[Any, Any, None]]
FramesHandler = Callable[["Link", list[bytes]], Awaitable[Tail | None]]
Spawn = Callable[..., Any]
#: ``on_limit(link, kind, reason)``: a limit closed the link ("slow_consumer", "stalled_frame").
OnLimit = Callable[["Link", str, str], None]


class Link:
    """A handshaked connection to one peer node."""

    def __init__(
        self,
        conn: Connection,
        local: Hello,
        remote: Hello,
        *,
        initiated: bool,
        plugins: Sequence[ConnectionPlugin] = (),
        early_frames: list[bytes] | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        self.conn = conn
        self.local = local
        self.peer = remote
        self.peer_id = remote.node_id
        self.initiated = initiated
        self.plugins = tuple(plugins)
        self.info = ConnectionInfo(local.node_id, remote.node_id, remote.address, initiated, remote.tags)
        self.high_water = high_water
        self.max_frame_size = conn.max_frame_size
        self.closed = False
        self.close_reason: str | None = None
        self._early = early_frames or []
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake: anyio.Event | None = None
        self._space: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._writing = False
        self._write_error: str | None = None
        self._check_refuse = True
        self._scope: anyio.CancelScope | None = None
        # Transports that can write without waiting offer send_frames_nowait.
        self._write_now: Callable[[Sequence[bytes]], bool] | None = getattr(conn, "send_frames_nowait", None)
        self._flush_needed = False
        self._inflight = 0  # bytes the writer is writing now
        self._spawn: Spawn | None = None
        self._on_frames: FramesHandler | None = None
        self._read_error: str | None = None
        self._closed_event = anyio.Event()
        self._when_closed: list[Callable[[], None]] = []
        self._full_since: float | None = None  # a sender began waiting for space, nothing written since
        #: Seconds a sender may wait for space with nothing written before the link is cut (None: forever).
        self.stall_timeout: float | None = None
        self.on_limit: OnLimit | None = None
        self.ratelog = _RATELOG  # a node gives its links its own

    def __repr__(self) -> str:
        way = "to" if self.initiated else "from"
        return f"<Link {way} {self.peer_id}@{self.peer.address}>"

    # ------------------------------------------------------------- sending

    def _prepare(self, frame: bytes) -> bytes | None:
        if self.closed:
            raise ConnectionClosedError(f"link to {self.peer_id} is closed ({self.close_reason})")
        if self.plugins:
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

    def send_nowait(self, frame: bytes) -> None:
        """Queue ``frame`` without waiting for queue space (small control frames only)."""
        prepared = self._prepare(frame)
        if prepared is None:
            return
        self._pending.append(prepared)
        self._pending_bytes += len(prepared)
        wake = self._wake
        if wake is not None and not self._writing:
            self._wake = None
            wake.set()

    async def send(self, frame: bytes) -> None:
        """Queue ``frame``; wait only if more than ``high_water`` bytes are queued.

        Requests and replies sent while nothing else is queued or being
        written go straight to the transport from the caller's task, without
        waiting (``send_frames_nowait``): one task switch less on the
        round-trip path. Everything else is batched by the writer task.
        """
        if (
            frame[0] in _DIRECT_KINDS
            and self._write_now is not None
            and not self._pending
            and not self._writing
            and not self._flush_needed
            and self._scope is not None
        ):
            prepared = self._prepare(frame)
            if prepared is not None:
                self._write_direct(self._write_now, prepared)
            return
        if self._pending_bytes + self._inflight >= self.high_water and not self.closed:
            await self._wait_for_space(SEND_DEADLINE.get())
        self.send_nowait(frame)

    async def _wait_for_space(self, deadline: float | None) -> None:
        # Wait *before* queueing: queued plus in-flight bytes stay under
        # high_water + one frame, however many tasks send at once. Past
        # ``deadline`` raise TimeoutError; past stall_timeout with nothing
        # written since a sender began to wait, cut the link.
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
            self.on_limit(self, "slow_consumer", reason)
        with anyio.CancelScope(shield=True):
            await self.aclose(reason)

    def _write_direct(self, write_now: Callable[[Sequence[bytes]], bool], frame: bytes) -> None:
        try:
            complete = write_now([frame])
        except PydevtsError as exc:
            self._fail(f"send failed: {exc}")
            raise ConnectionClosedError(f"link to {self.peer_id} failed: {exc}") from exc
        if not complete:
            # The transport kept the rest of the frame: the writer sends it next.
            self._flush_needed = True
            wake = self._wake
            if wake is not None:
                self._wake = None
                wake.set()

    def _fail(self, reason: str) -> None:
        if self._write_error is None:
            self._write_error = reason
        if self._scope is not None:
            self._scope.cancel()

    def _filter_out(self, frame: bytes) -> bytes | None:
        out: bytes | None = frame
        for plugin in self.plugins:
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

    def _filter_in(self, frames: list[bytes]) -> list[bytes]:
        kept = []
        for frame in frames:
            out: bytes | None = frame
            for plugin in self.plugins:
                try:
                    out = plugin.on_frame_in(self.info, frame)
                except Exception as exc:
                    log.exception("connection plugin %r failed on a frame from %s", plugin.name, self.peer_id)
                    raise ConnectionClosedError(f"connection plugin {plugin.name!r} failed: {exc!r}") from exc
                if out is None:
                    break
                frame = out
            if out is not None:
                kept.append(frame)
        return kept

    async def _write_loop(self) -> None:
        # Takes everything queued (at most about high_water bytes, see send)
        # and writes it in one call; space is given back when the write ends.
        while True:
            if not (self._pending or self._flush_needed):
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            self._flush_needed = False
            frames = self._pending
            self._pending = []
            self._inflight = self._pending_bytes
            self._pending_bytes = 0
            self._writing = True
            try:
                await self.conn.send_frames(frames)
            except PydevtsError as exc:
                self._fail(f"send failed: {exc}")
                return
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

    # ------------------------------------------------------------- running

    async def run(self, on_frames: FramesHandler, spawn: Spawn | None = None) -> None:
        """Read frames into ``on_frames`` and write queued frames, until closed.

        Returns when the connection ends; :attr:`close_reason` says why
        (``None`` for a clean close by this side).

        ``on_frames`` may return a *tail*: work to do at once for the frames
        it was given (a request to answer). The reading task then starts its
        successor with ``spawn`` and runs the tail itself, so the answer
        leaves without a task switch (leader/follower). Readers run in the
        tasks ``spawn`` makes (the node's task group), so closing the link
        does not cancel a tail that is running.
        """
        self._on_frames = on_frames
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._write_error is not None or self.closed:
                    tg.cancel_scope.cancel()  # it failed (or was closed) before it ran
                self._spawn = spawn if spawn is not None else tg.start_soon
                tg.start_soon(self._write_loop)
                self._spawn(self._read_loop)
        finally:
            reason = self._read_error or self._write_error or self.close_reason
            with anyio.CancelScope(shield=True):
                await self.aclose(reason)

    async def _read_loop(self) -> None:
        on_frames = self._on_frames
        assert on_frames is not None
        # A reader may start inside a handler's task (after a tail): not under its request deadline.
        SEND_DEADLINE.set(None)
        try:
            if self._early:
                early, self._early = self._early, []
                tail = await self._deliver(on_frames, early)
                if tail is not None and not await self._run_tail(tail):
                    return  # a successor reads now
            receive = self.conn.receive_frames
            while not self.closed:
                tail = await self._deliver(on_frames, await receive())
                if tail is not None and not await self._run_tail(tail):
                    return  # a successor reads now
        except ConnectionClosedError as exc:
            if isinstance(exc, StalledFrameError) and self.on_limit is not None:
                self.on_limit(self, "stalled_frame", str(exc))
            self._stop_reading(str(exc) or "connection closed by peer")
        except RemoteProtocolError as exc:
            self.ratelog.warning("link.protocol_error", "closing link to %s: %s", self.peer_id, exc)
            self._stop_reading(f"protocol error: {exc}")
        except TransportError as exc:
            self._stop_reading(f"transport error: {exc}")
        except Exception as exc:  # a bug above us: close this link, keep the node
            log.exception("closing link to %s after an internal error", self.peer_id)
            self._stop_reading(f"internal error: {exc!r}")

    async def _run_tail(self, tail: Tail) -> bool:
        """Run ``tail`` in this task; return True to go on reading here.

        Most requests are answered without ever waiting: then this task simply
        goes on reading, and no task was started at all. At the tail's first
        real wait, a successor is started to read meanwhile (so the tail may
        wait for anything, even a reply on this link), and this task finishes
        the tail and ends.
        """
        coro = tail()
        try:
            first = coro.send(None)
        except StopIteration:
            return True
        except Exception:
            log.exception("answering a request from %s failed", self.peer_id)
            return True
        assert self._spawn is not None
        self._spawn(self._read_loop)
        try:
            await Resume(coro, first)
        except Exception:
            log.exception("answering a request from %s failed", self.peer_id)
        return False

    def _stop_reading(self, reason: str) -> None:
        if self._read_error is None and not self.closed:
            self._read_error = reason
        if self._scope is not None:
            self._scope.cancel()

    async def _deliver(self, on_frames: FramesHandler, frames: list[bytes]) -> Tail | None:
        if self._check_refuse:
            # The initiator checks our HELLO after we sent it and may still
            # refuse: a REFUSE can only be among the first frames of a link.
            self._check_refuse = False
            for frame in frames:
                if frame and frame[0] == REFUSE:
                    raise ConnectionClosedError(f"peer refused the link: {decode_refuse(frame)}")
        if self.plugins:
            frames = self._filter_in(frames)
        if frames:
            return await on_frames(self, frames)
        return None

    async def aclose(self, reason: str | None = None) -> None:
        """Close the link (idempotent); queued frames not yet written are dropped."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._scope is not None:
            self._scope.cancel()
        if self._space is not None:
            self._space.set()
        if self._idle is not None:
            self._idle.set()
        try:
            await self.conn.aclose()
        except PydevtsError:
            pass
        for plugin in self.plugins:
            try:
                plugin.on_close(self.info, reason)
            except Exception:
                log.exception("connection plugin %s failed in on_close", plugin.name)
        self._closed_event.set()
        for callback in self._when_closed:
            callback()

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the link has closed (at once if it has)."""
        if self._closed_event.is_set():
            callback()
        else:
            self._when_closed.append(callback)

    async def wait_closed(self) -> None:
        await self._closed_event.wait()
