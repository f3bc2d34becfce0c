"""The link host: runs a :class:`~pydevts.routing.machine.RouterMachine` on real links.

It is the one IO layer every machine router shares (see the machine's module
docs for what it does on the router's behalf) and implements
:class:`pydevts.protocols.Router` towards the node, so the node cannot tell a
hosted machine from a router that brings its own IO. This module has the
links, the machine's inputs and its clock; what each action does is in
:mod:`pydevts.routing.effects`, dialling and reconnecting in
:mod:`pydevts.routing.dialer`, the per-origin order of hand-over for routers
that relay in :mod:`pydevts.routing.outbox`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel

from ..deadlines import DeadlineClock
from ..errors import (
    RemoteProtocolError,
)
from ..protocols import DatagramEndpoint, RouterContext
from ..ratelog import RateLimitedLog
from ..wire.datagrams import receive_datagrams
from ..wire.link import Link, Tail
from ..wire.messages import ROUTER_KIND_MIN
from ..wire.session import keeps
from .dialer import Dialer
from .effects import Effects
from .helpers import close_later, member_from_hello, retire, send_on_link, send_on_links
from .machine import RouterMachine
from .outbox import Outboxes

__all__ = ["LinkHost"]

log = logging.getLogger("pydevts.routing")

#: Why a link closed when its peer is not coming back over it (no redial).
FINAL_REASONS = frozenset({"this node left", "member left", "duplicate link", "replaced by a newer link"})
_BAD_FRAME = (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError, RecursionError)
_COUNTERS = ("links_adopted", "duplicate_links", "dials", "redials", "dial_failures", "relays_dropped")


class LinkHost(Effects):
    """Owns the links of one node and carries out what its router machine decides."""

    def __init__(self, machine: RouterMachine) -> None:
        timings = {
            "leave_timeout": machine.leave_timeout,
            "relay_timeout": machine.relay_timeout,
            "max_backoff": machine.max_backoff,
        }
        for name, value in timings.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        cls = type(machine)
        if not machine.name:
            raise TypeError(f"{cls.__qualname__} must set the class attribute `name` (sent in the HELLO)")
        custom = (cls.send is not RouterMachine.send, cls.broadcast is not RouterMachine.broadcast)
        if custom[0] != custom[1]:
            raise TypeError(
                f"{cls.__qualname__} overrides only one of send and broadcast: override both "
                "(a router that routes) or neither (full mesh: core sends on the link to each member)"
            )
        self.machine = machine
        self.name = machine.name
        #: Full mesh: core messages go straight on the link to their destination.
        self._mesh = not custom[0]
        self._ctx: RouterContext | None = None
        self._links: dict[str, Link] = {}  # the link to each member that we send on
        #: Links that dropped and are being redialled: sends wait in their sessions.
        self.resting: dict[str, Link] = {}
        self._readers: set[Link] = set()  # every link we read: current, duplicate, retiring
        self._busy: dict[str, int] = {}  # readers inside the node's deliver, per peer
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._counts["timer_errors"] = self._counts["datagram_errors"] = self._counts["input_errors"] = 0
        self._dialer = Dialer(self, self._counts)
        self._outboxes: Outboxes | None = None
        self._endpoint: DatagramEndpoint | None = None
        self._ratelog = RateLimitedLog(log)
        self._clock = DeadlineClock(self.next_deadline, self._run_timer)
        self.stopping = False

    # ------------------------------------------------------------- the node's side

    @property
    def links(self) -> Mapping[str, Link]:
        """The current link to each member (read-only use)."""
        return self._links

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        machine = self.machine
        if machine.relays:
            self._outboxes = Outboxes(ctx.deliver, ctx.spawn)
        if machine.uses_datagrams:
            # Without its channel a failure detector would have the others declare this
            # node failed: an error opening it stops the node from starting.
            self._endpoint = await ctx.open_datagrams()
            ctx.spawn(self._datagram_loop, name=f"pydevts {self.name} datagrams")
        self.input(lambda m, now: m.start(now, member_from_hello(ctx.hello), ctx.hello.cluster))
        if entry is not None:
            self.add_link(entry)
        ctx.spawn(self._clock.run, name=f"pydevts {self.name} timers")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.input(lambda m, now: m.set_tags(now, tags))

    async def stop(self) -> None:
        self.stopping = True
        try:
            self.input(lambda m, now: m.leave(now))
            with anyio.move_on_after(self.machine.leave_timeout):
                for link in list(self._links.values()):
                    await link.flush()
        finally:
            self._clock.stop()
            with anyio.CancelScope(shield=True):
                for link in [*self._links.values(), *self._readers]:
                    await link.aclose("this node left")
                endpoint, self._endpoint = self._endpoint, None
                if endpoint is not None:
                    await endpoint.aclose()

    async def send(self, dest: str, frame: bytes) -> None:
        if self._mesh:
            await send_on_link(self._links.get(dest) or self.resting.get(dest), dest, frame)
            return
        try:
            await self._apply(self.machine.send(anyio.current_time(), dest, frame), relaying=False, dest=dest)
        finally:
            self._deadline_moved()

    async def broadcast(self, frame: bytes) -> None:
        if self._mesh:
            if self.resting:
                await send_on_links([*self._links.values(), *self.resting.values()], frame)
            else:
                await send_on_links(self._links.values(), frame)
            return
        try:
            await self._apply(self.machine.broadcast(anyio.current_time(), frame), relaying=False)
        finally:
            self._deadline_moved()

    def forget(self, node_id: str) -> bool:
        """The node reaps ``node_id``: refused while it has a link (or one being redialled)."""
        if node_id in self._links or node_id in self.resting or not self.machine.forget(node_id):
            return False
        self._dialer.backoff.forget(node_id)
        return True

    def statistics(self) -> dict[str, int]:
        """The host's link counters, then the machine's own."""
        return {**self._counts, "links": len(self._links), **self.machine.statistics()}

    # ------------------------------------------------------------- links

    def add_link(self, link: Link) -> None:
        """Adopt a link whose handshake succeeded (incoming, dialled, or redialled)."""
        ctx = self.ctx
        if self.stopping:
            ctx.spawn(link.aclose, "this node is leaving")
            return
        if link.peer.role != "member":
            log.info("closing the link from %s: role %r is not a member's", link.peer_id, link.peer.role)
            ctx.spawn(link.aclose, f"role {link.peer.role!r} not served")
            return
        peer, now = link.peer_id, anyio.current_time()
        existing = self._links.get(peer)
        resting = self.resting.pop(peer, None)
        old = existing or resting
        if old is not None and _incarnation(old) != _incarnation(link):
            # The member restarted under its id (a new process): its old link is of no use, and
            # link_up brings the new incarnation. No link_down: the node has already given the
            # new link its session, which a member marked failed now would lose.
            self._links.pop(peer, None)
            if not old.closed:
                ctx.spawn(old.aclose, "the member restarted")
            existing = None
        elif existing is not None and existing.closed:
            existing = None  # it dropped and its reader has not finished: this one resumes it
        if existing is not None:
            self._counts["duplicate_links"] += 1
            if keeps(existing, link):
                # Not closed unread: the peer may have sent on it before it saw the other one.
                self._read(link)
                ctx.spawn(close_later, link, self.machine.leave_timeout, "duplicate link")
                return
            self._links[peer] = link
            ctx.spawn(retire, existing, self.machine.leave_timeout)
            self._read(link)
            return
        self._counts["links_adopted"] += 1
        self._links[peer] = link
        self._dialer.backoff.link_up(peer, now)
        member = member_from_hello(link.peer)
        self.input(lambda m, t: m.link_up(t, member))
        self._read(link)

    def _read(self, link: Link) -> None:
        self._readers.add(link)
        self.ctx.spawn(self._run_link, link, name=f"pydevts {self.name} link {link.peer_id}")

    async def _run_link(self, link: Link) -> None:
        try:
            await link.run(self._on_frames, spawn=self.ctx.spawn)
        finally:
            self._readers.discard(link)
            peer = link.peer_id
            if self._links.get(peer) is link:
                del self._links[peer]
                if not self.stopping:  # while leaving, the others' state is no news
                    self._lost(link)

    def _lost(self, link: Link) -> None:
        peer = link.peer_id
        session = link.session
        resumable = (
            session is not None
            and session.closed is None
            and not link.peer_closed  # its node closed it on purpose
            and link.close_reason not in FINAL_REASONS
            # it sent garbage, or frames our side fails on: a redial would only do it again
            and not (link.close_reason or "").startswith(("protocol error", "internal error"))
        )
        log.info("link to %s closed: %s%s", peer, link.close_reason, "; reconnecting" if resumable else "")
        if resumable:
            self.resting[peer] = link
        self.input(lambda m, now: m.link_down(now, peer, resumable=resumable))
        if self.resting.get(peer) is link:  # the machine did not give up on it at once
            self._dialer.redial(link)

    def give_up(self, link: Link) -> None:
        """Redialling ``link``'s member was refused: it is gone for good."""
        if self.resting.get(link.peer_id) is link:
            del self.resting[link.peer_id]
            peer = link.peer_id
            self.input(lambda m, now: m.link_down(now, peer, resumable=False))

    async def _on_frames(self, link: Link, frames: list[bytes]) -> Tail | None:
        """Core frames are the neighbour's own; router frames go to the machine."""
        machine, peer = self.machine, link.peer_id
        if machine.hears:
            machine.heard(anyio.current_time(), peer)
            self._busy[peer] = self._busy.get(peer, 0) + 1
        try:
            start = 0
            for i, frame in enumerate(frames):
                if frame and frame[0] < ROUTER_KIND_MIN:
                    continue
                if i > start:  # core frames before a router frame go up first
                    self._spawn_tail(await self._direct(peer, frames[start:i]))
                start = i + 1
                try:
                    actions = machine.receive(anyio.current_time(), peer, frame)
                except _BAD_FRAME as exc:
                    raise RemoteProtocolError(f"bad {self.name} router frame from {peer}: {exc}") from exc
                if actions:
                    await self._apply(actions, relaying=True)
                self._deadline_moved()
            if start == 0:
                return await self._direct(peer, frames)
            if start < len(frames):
                return await self._direct(peer, frames[start:])
            return None
        finally:
            if machine.hears:
                if self._busy[peer] <= 1:
                    del self._busy[peer]
                else:
                    self._busy[peer] -= 1

    async def _direct(self, peer: str, frames: list[bytes]) -> Tail | None:
        outboxes = self._outboxes
        if outboxes is None:
            return await self.ctx.deliver(peer, frames)
        frames = self.machine.direct(anyio.current_time(), peer, frames)
        return await outboxes.deliver(peer, frames) if frames else None

    # ------------------------------------------------------------- time and datagrams

    def _run_timer(self, now: float) -> None:
        machine = self.machine
        try:
            if machine.hears:
                for peer, busy in self._busy.items():
                    if busy:  # still handing its frames to the node: not silent, just slow
                        machine.heard(now, peer)
            self._apply_now(machine.timer(now))
        except Exception:  # a bug costs this timer, never the node
            self._counts["timer_errors"] += 1
            self._ratelog.log(logging.ERROR, "timer", "%s router timer failed", self.name, exc_info=True)

    async def _datagram_loop(self) -> None:
        await receive_datagrams(
            lambda: None if self.stopping else self._endpoint, self._datagram, self._datagram_error
        )

    def _datagram(self, data: bytes) -> None:
        self._apply_now(self.machine.datagram(anyio.current_time(), data))
        self._deadline_moved()

    def _datagram_error(self) -> None:
        self._counts["datagram_errors"] += 1
        self._ratelog.log(logging.ERROR, "datagram", "error handling a datagram", exc_info=True)


def _incarnation(link: Link) -> Any:
    return link.peer.extensions.get("incarnation")
