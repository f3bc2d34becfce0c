"""The IO driver of failure detection: a :class:`~pydevts.swim.FailureDetector` over datagrams.

Probes and membership updates travel as small JSON datagrams on the
transport's datagram channel (UDP on the listener's port unless the transport
brings its own, see :mod:`pydevts.wire.datagrams`) — not on a router's links, so
that a link held up by backpressure (a slow handler on the far side) never
delays a probe. The router adds its own hints: a link that comes up makes the
member alive (:meth:`Liveness.learn`), a link that drops without a leave makes
it suspect at once (:meth:`Liveness.link_down`).

Two tasks run in the router's task group: one receives datagrams (yielding
every :data:`YIELD_EVERY`, so that a backlog does not starve the node), one
calls the detector's ``tick`` at its :meth:`~FailureDetector.next_deadline`
and sleeps in between (at most :data:`MAX_SLEEP`; an input that moves the
deadline earlier wakes it). Ticks are at least :data:`MIN_TICK_GAP` apart.
What is dropped, counted and logged is the detector's business (see
:mod:`pydevts.swim.detector`); a bug in the router's ``on_change`` callback or
in the transport costs one datagram or one tick, counted as a datagram error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio
import anyio.lowlevel

from ..deadlines import MIN_GAP, DeadlineClock
from ..members import Member
from ..protocols import DatagramEndpoint, RouterContext
from ..wire.datagrams import YIELD_EVERY, receive_datagrams
from .detector import DetectorAction, FailureDetector, MemberChanged, SendDatagram, log
from .rules import SwimConfig
from .state import SwimState

__all__ = ["MAX_SLEEP", "MIN_TICK_GAP", "YIELD_EVERY", "Liveness"]

#: The tick task sleeps at most this long (seconds), deadline or not.
MAX_SLEEP = 1.0
#: Ticks are at least this far apart (seconds): deadlines that fall due together after a stall
#: (an indirect probe and the end of its round) still leave relayed acks time to come, as the
#: 50 ms ticks of old did, and a tick that keeps failing cannot spin.
MIN_TICK_GAP = MIN_GAP


class Liveness:
    """Owns the failure detector of one node and its datagram channel.

    ``on_change`` hears every member's new record (never a member heard of
    only through gossip as alive); :attr:`swim` is the SWIM state itself."""

    def __init__(
        self,
        ctx: RouterContext,
        local: Member,
        on_change: Callable[[Member], None],
        config: SwimConfig | None = None,
    ) -> None:
        self.ctx = ctx
        self.detector = FailureDetector(local, ctx.hello.cluster, config)
        self.swim: SwimState = self.detector.swim
        self.on_change = on_change
        self._endpoint: DatagramEndpoint | None = None
        self._stopped = False
        self._clock = DeadlineClock(
            self.detector.next_deadline, self._tick, min_gap=MIN_TICK_GAP, max_sleep=MAX_SLEEP
        )

    @property
    def bad_datagrams(self) -> int:
        """Datagrams dropped: malformed, or of another cluster."""
        return self.detector.bad_datagrams

    @property
    def datagram_errors(self) -> int:
        """Internal errors (bugs) while handling a datagram or a tick, or sending."""
        return self.detector.datagram_errors

    async def start(self) -> None:
        # Without probes the others would declare this node failed: if no
        # channel can be opened, the error stops the node from starting.
        self._endpoint = await self.ctx.open_datagrams()
        self.ctx.spawn(self._receive_loop, name="pydevts swim receive")
        self.ctx.spawn(self._clock.run, name="pydevts swim ticks")

    async def aclose(self) -> None:
        self._stopped = True
        self._clock.stop()
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.aclose()

    # ------------------------------------------------------------------ hints

    def learn(self, member: Member) -> None:
        self._apply(self.detector.learn(member, anyio.current_time()))

    def link_down(self, node_id: str) -> None:
        self._apply(self.detector.link_down(node_id, anyio.current_time()))

    def confirm_failed(self, node_id: str) -> None:
        self._apply(self.detector.confirm_failed(node_id, anyio.current_time()))

    def member_left(self, node_id: str) -> None:
        self._apply(self.detector.member_left(node_id, anyio.current_time()))

    def leave(self) -> None:
        self._apply(self.detector.leave(anyio.current_time()))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._apply(self.detector.set_tags(tags, anyio.current_time()))

    def handle_datagram(self, data: bytes, now: float) -> None:
        """One datagram in: validate, feed SWIM, act; a bad one is counted and logged (rate-limited)."""
        self._apply(self.detector.handle_datagram(data, now))

    def statistics(self) -> dict[str, int]:
        """Counters for the router's ``statistics()``: datagrams dropped, what SWIM refused."""
        return self.detector.statistics()

    # ------------------------------------------------------------------ loops

    def _tick(self, now: float) -> None:
        try:
            self._apply(self.detector.tick(now))
        except Exception:  # the router's callback: a bug must not stop the node
            self.detector.count_error("tick", "SWIM tick failed")

    async def _receive_loop(self) -> None:
        await receive_datagrams(
            lambda: None if self._stopped else self._endpoint,
            lambda data: self.handle_datagram(data, anyio.current_time()),
            lambda: self.detector.count_error("internal", "error handling a SWIM datagram"),
        )

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: list[DetectorAction]) -> None:
        self._clock.moved()
        for action in actions:
            if isinstance(action, SendDatagram):
                self._transmit(action)
            elif isinstance(action, MemberChanged):
                self.on_change(action.member)

    def _transmit(self, datagram: SendDatagram) -> None:
        endpoint = self._endpoint
        if endpoint is None or self._stopped:
            return
        try:
            endpoint.send(datagram.data, datagram.address)
        except ValueError as exc:  # e.g. a host name IDNA cannot encode
            log.debug("SWIM datagram to %s not sent: %s", datagram.to, exc)
        except Exception:  # e.g. a transport's bug: lose this datagram, not the node
            self.detector.count_error("send", "sending a SWIM datagram failed")
