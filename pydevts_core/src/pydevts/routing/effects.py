"""Carrying out a router machine's actions on real links (the link host's half that acts).

:class:`Effects` is a base class of :class:`~pydevts.routing.host.LinkHost`:
what each action does, in order. A ``Send`` waits for room on the link when
this node originated the frame; a relay waits at most ``relay_timeout`` and
is then dropped, counted and reported; every other action never waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ..errors import ConnectionClosedError, FrameTooLargeError, PydevtsError, UnknownNodeError
from ..protocols import DatagramEndpoint, RouterContext
from ..ratelog import RateLimitedLog
from ..wire.link import SEND_DEADLINE, Link, Tail
from .actions import (
    Action,
    CloseLink,
    Connect,
    Control,
    Deliver,
    Dropped,
    Send,
    SendDatagram,
    SetMemberState,
    UpdateMember,
)
from .helpers import close_later
from .machine import RouterMachine
from .outbox import Outboxes

if TYPE_CHECKING:
    from ..deadlines import DeadlineClock
    from .dialer import Dialer

__all__ = ["Effects"]

log = logging.getLogger("pydevts.routing")


class Effects:
    """What the link host does with each action (see the module docs)."""

    machine: RouterMachine
    resting: dict[str, Link]
    _links: dict[str, Link]
    _outboxes: Outboxes | None
    _endpoint: DatagramEndpoint | None
    _counts: dict[str, int]
    _dialer: Dialer
    _ratelog: RateLimitedLog

    _ctx: RouterContext | None
    _clock: DeadlineClock

    @property
    def ctx(self) -> RouterContext:
        assert self._ctx is not None, "the router has not been started"
        return self._ctx

    def _deadline_moved(self) -> None:
        self._clock.moved()

    def input(self, feed: Callable[[RouterMachine, float], list[Action]]) -> None:
        """Feed the machine one input that never waits, carry out what it returns.

        An exception from the machine (a bug in the router) costs that input
        only: counted (``input_errors``), logged rate-limited with its
        traceback, and never reaches the node's task group.
        """
        try:
            self._apply_now(feed(self.machine, anyio.current_time()))
        except Exception:
            self._counts["input_errors"] += 1
            self._ratelog.log(
                logging.ERROR, "input", "router %s failed on an input", self.machine.name, exc_info=True
            )
        self._deadline_moved()

    def next_deadline(self) -> float | None:
        """The machine's next deadline; one that raises (a bug) is counted and read as a second from now."""
        try:
            return self.machine.next_deadline()
        except Exception:
            self._counts["input_errors"] += 1
            self._ratelog.log(
                logging.ERROR, "deadline", "router %s: next_deadline failed", self.machine.name, exc_info=True
            )
            return anyio.current_time() + 1.0

    def _apply_now(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, (Send, Control)):
                self._queue(action.peer, action.frame)
            elif isinstance(action, Deliver):
                if self._outboxes is None:
                    self._outboxes = Outboxes(self.ctx.deliver, self.ctx.spawn)
                self._outboxes.deliver_soon(action.origin, [action.frame])
            else:
                self._act(action)

    def _act(self, action: Action) -> None:
        """The actions that are neither frames to send nor frames to hand up."""
        ctx = self.ctx
        if isinstance(action, UpdateMember):
            ctx.update_member(action.member)
        elif isinstance(action, SetMemberState):
            ctx.set_member_state(action.member_id, action.state)
        elif isinstance(action, Connect):
            self._dialer.connect(action.member_id, action.address)
        elif isinstance(action, CloseLink):
            self._close(action)
        elif isinstance(action, Dropped):
            ctx.dropped(action.origin, action.frame, action.reason)
        elif isinstance(action, SendDatagram):
            self._send_datagram(action)

    def _close(self, action: CloseLink) -> None:
        self.resting.pop(action.peer, None)  # no redial
        link = self._links.pop(action.peer, None)
        if link is None or link.closed:
            return
        if action.linger:
            self.ctx.spawn(close_later, link, 2 * self.machine.leave_timeout, action.reason)
        else:
            log.info("closing the link to %s: %s", action.peer, action.reason)
            self.ctx.spawn(link.aclose, action.reason)

    async def _apply(self, actions: list[Action], *, relaying: bool, dest: str | None = None) -> None:
        ctx = self.ctx
        # Frames for this node are queued first, before any await: the machine put them in
        # order, and another reader must not slip in between (see outbox.py).
        origins: list[str] = []
        for action in actions:
            if isinstance(action, Deliver):
                if self._outboxes is None:
                    self._outboxes = Outboxes(ctx.deliver, ctx.spawn)
                self._outboxes.enqueue(action.origin, [action.frame])
                if action.origin not in origins:
                    origins.append(action.origin)
        if origins:  # handed over first: this node's frames do not wait behind slow relays
            assert self._outboxes is not None
            for origin in origins:
                self._spawn_tail(await self._outboxes.flush(origin))
        for action in actions:
            if isinstance(action, Send):
                if relaying:
                    if action.carried is not None:
                        ctx.relayed(action.origin, action.carried, action.peer)
                    await self._relay(action)
                else:
                    await self._send(action.peer, action.frame, dest)
            elif isinstance(action, Control):
                self._queue(action.peer, action.frame)
            elif not isinstance(action, Deliver):
                self._act(action)

    def _queue(self, peer: str, frame: bytes) -> None:
        link = self._links.get(peer) or self.resting.get(peer)
        if link is None:
            log.debug("frame to %s not queued: no link", peer)
            return
        try:
            link.send_nowait(frame)
        except PydevtsError as exc:
            log.debug("frame to %s not queued: %s", peer, exc)

    async def _send(self, peer: str, frame: bytes, dest: str | None) -> None:
        """A frame this node originated; to ``dest``, a link that is gone is the caller's error."""
        link = self._links.get(peer) or self.resting.get(peer)
        try:
            if link is None:
                raise ConnectionClosedError(f"no link to {peer}")
            await link.send(frame)
        except ConnectionClosedError as exc:
            if dest is not None:
                raise UnknownNodeError(dest, f"its route through {peer} just broke: {exc}") from exc
        except FrameTooLargeError as exc:
            if dest is not None:
                raise
            self._counts["relays_dropped"] += 1  # a broadcast over what this neighbour takes
            log.warning("dropped a frame to %s: %s", peer, exc)

    async def _relay(self, action: Send) -> None:
        link = self._links.get(action.peer) or self.resting.get(action.peer)
        if link is None:
            return
        if link.has_room:
            self._queue(action.peer, action.frame)
            return
        token = SEND_DEADLINE.set(None)  # a relay is not bound by some request's deadline
        try:
            with anyio.move_on_after(self.machine.relay_timeout):
                await self._send(action.peer, action.frame, None)
                return
        finally:
            SEND_DEADLINE.reset(token)
        self._counts["relays_dropped"] += 1
        why = f"its link to {action.peer} stayed full for {self.machine.relay_timeout:g} s"
        self._ratelog.warning("relay_dropped", "dropped a frame relayed to %s: %s", action.peer, why)
        if action.carried is not None:
            self.ctx.dropped(action.origin, action.carried, why)

    def _spawn_tail(self, tail: Tail | None) -> None:
        if tail is not None:
            self.ctx.spawn(tail)

    def _send_datagram(self, action: SendDatagram) -> None:
        endpoint = self._endpoint  # None once closed (after the goodbyes of stop())
        if endpoint is None:
            return
        try:
            endpoint.send(action.data, action.address)
        except Exception:  # a transport's bug: lose this datagram, not the node
            self._counts["datagram_errors"] += 1
            self._ratelog.log(logging.ERROR, "send", "sending a datagram failed", exc_info=True)
