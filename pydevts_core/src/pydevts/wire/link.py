"""Links: transport connections after the handshake, with the plugin pipeline.

A :class:`Link` is what routers work with. Its sending side (queue,
coalescing writer, backpressure, slow consumers) is
:class:`~pydevts.wire.link_writer.LinkWriter`; this module has the rest: reading
frames through the plugins into the node (leader/follower readers, see
:meth:`Link.run`) and closing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio

from ..errors import ConnectionClosedError, PydevtsError, RemoteProtocolError, TransportError
from ..limits import StalledFrameError
from ..observe.hooks import overrides
from ..protocols import Connection, ConnectionInfo, ConnectionPlugin, SendsWithoutWaiting
from ..ratelog import RateLimitedLog
from ._resume import Resume
from .link_writer import SEND_DEADLINE, LinkWriter, Pressure
from .messages import REFUSE, Hello, decode_refuse
from .session import Session

__all__ = ["DEFAULT_HIGH_WATER", "SEND_DEADLINE", "Link", "Tail"]

log = logging.getLogger("pydevts.link")
_RATELOG = RateLimitedLog(log)  # for links no node configured

DEFAULT_HIGH_WATER = 1024 * 1024

Tail = Callable[[], Coroutine[Any, Any, None]]
FramesHandler = Callable[["Link", list[bytes]], Awaitable[Tail | None]]
Spawn = Callable[..., Any]
#: ``on_limit(link, kind, reason)``: a limit closed the link ("slow_consumer", "stalled_frame").
OnLimit = Callable[["Link", str, str], None]


class Link(LinkWriter):
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
        self.plugins_in = tuple(p for p in plugins if overrides(p, "on_frame_in"))
        self.plugins_out = tuple(p for p in plugins if overrides(p, "on_frame_out"))
        self.info = ConnectionInfo(local.node_id, remote.node_id, remote.address, initiated, remote.tags)
        self.high_water = high_water
        # The smaller of what this side's transport and the peer's take (its HELLO says): a frame
        # the peer would refuse is refused here, before it is queued (or kept for resending).
        theirs = remote.extensions.get("max_frame_size")
        mine = conn.max_frame_size
        self.max_frame_size = min(mine, theirs) if isinstance(theirs, int) and theirs >= 1024 else mine
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
        self._write_now: Callable[[Sequence[bytes]], bool] | None = (
            conn.send_frames_nowait if isinstance(conn, SendsWithoutWaiting) else None
        )
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
        self.session: Session | None = None
        self.in_epoch = 0  # the peer's stream this link carries (see pydevts.session)
        self.in_next = 0  # the number of the next data frame it will bring
        #: The peer closed the link cleanly (its node chose to), not a reset or a failure.
        self.peer_closed = False
        self.opened_at = time.monotonic()  # for how long it has been up (Node.links)
        self.batches_in = self.frames_in = self.bytes_in = 0
        self.batches_out = self.frames_out = self.bytes_out = 0
        self.pressure = Pressure()  # a node gives its links its own (NodeContext.configure_link)

    def attach(self, session: Session) -> None:
        """Carry ``session`` (the node does it for member links): see :mod:`pydevts.wire.session`."""
        self.session = session
        session.attach(self)

    def __repr__(self) -> str:
        way = "to" if self.initiated else "from"
        return f"<Link {way} {self.peer_id}@{self.peer.address}>"

    # ------------------------------------------------------------- receiving

    def _filter_in(self, frames: list[bytes]) -> list[bytes]:
        kept = []
        for frame in frames:
            out: bytes | None = frame
            for plugin in self.plugins_in:
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
            self.peer_closed = exc.eof
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
        self.batches_in += 1
        self.frames_in += len(frames)
        self.bytes_in += sum(map(len, frames))
        if self._check_refuse:
            # The initiator checks our HELLO after we sent it and may still
            # refuse: a REFUSE can only be among the first frames of a link.
            self._check_refuse = False
            for frame in frames:
                if frame and frame[0] == REFUSE:
                    raise ConnectionClosedError(f"peer refused the link: {decode_refuse(frame)}")
        session = self.session
        if session is not None:
            frames = session.accept(self, frames)
            if not frames:
                return None
            # Two links of one member (a reconnect, a duplicate link) may read at once:
            # the frames go to the node in the order they were numbered.
            if session._busy:
                await session.take_turn()
            else:
                session._busy = True
            try:
                if self.plugins_in:
                    frames = self._filter_in(frames)
                return await on_frames(self, frames) if frames else None
            finally:
                session.end_turn()
        if self.plugins_in:
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
        if self.session is not None:
            self.session.detach(self)
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
