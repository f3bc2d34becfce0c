"""The ``hop`` router: the IO shell around :class:`~pydevts_hop.state.HopState`.

It owns one :class:`~pydevts.link.Link` per neighbour, runs each link's
reader, feeds frames and time to the state machine, and carries out the
actions it returns, in order. Raw core frames (kind < ``0x40``) on a link
come from that neighbour itself; router frames (``0x41``-``0x44``) go to the
state, which may hand core frames from farther origins up to the node
(``Deliver``) or relay them (``Send``).

Backpressure: frames this node originates wait for queue space on the link
(``send`` / ``emit`` slow down). A frame being *relayed* is queued at once if
the link has room; otherwise the reader waits up to ``relay_timeout`` for
room and then drops it, counting and logging it — two relays waiting on each
other's full links must not stop both links for good.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import anyio
from pydevts.errors import (
    ConnectError,
    ConnectionClosedError,
    FrameTooLargeError,
    PydevtsError,
    UnknownNodeError,
)
from pydevts.link import SEND_DEADLINE, Link, Tail
from pydevts.protocols import Address, RouterContext
from pydevts.routing import close_later, config_from_options, keeps, member_from_hello, retire
from pydevts.wire import ROUTER_KIND_MIN

from .actions import Action, CloseLink, Connect, Deliver, Dropped, HopConfig, MemberChange, Send
from .outbox import Outboxes
from .state import HopState
from .wire import ADVERT, KEEPALIVE

__all__ = ["HopRouter"]

log = logging.getLogger("pydevts.hop")
#: Why a link closed when the neighbour is not coming back over it (no reconnect).
_FINAL = frozenset({"this node left", "member left", "duplicate link", "replaced by a newer link"})


class HopRouter:
    """Multi-hop routing over the links each node can actually make (see the package README)."""

    name = "hop"

    def __init__(
        self,
        *,
        config: HopConfig | None = None,
        leave_timeout: float = 2.0,
        relay_timeout: float = 2.0,
        **timings: Any,
    ) -> None:
        """``timings``: HopConfig fields by name (``Node(router_options=...)``, ``--router-option``)."""
        self.config = config_from_options(HopConfig, timings, base=config or HopConfig())
        if timings:
            raise TypeError(f"unknown option(s): {', '.join(sorted(timings))}")
        self.leave_timeout = float(leave_timeout)
        self.relay_timeout = float(relay_timeout)
        if not (self.leave_timeout > 0 and self.relay_timeout > 0):  # also refuses nan
            raise ValueError("leave_timeout and relay_timeout must be positive numbers of seconds")
        self._links: dict[str, Link] = {}
        self._busy: dict[str, int] = {}  # readers inside the node's deliver, per neighbour
        self._connecting: set[str] = set()
        self._ctx: RouterContext | None = None
        self._outboxes: Outboxes
        self._state: HopState | None = None
        self._stopping = False
        self.relays_dropped = 0

    @property
    def state(self) -> HopState:
        assert self._state is not None, "the router has not started"
        return self._state

    @property
    def links(self) -> Mapping[str, Link]:
        """Live links by neighbour id (read-only use)."""
        return self._links

    def statistics(self) -> dict[str, int]:
        return self.state.statistics() | {"relays_dropped": self.relays_dropped}

    # ----------------------------------------------------------- lifecycle

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        self._outboxes = Outboxes(ctx.deliver, ctx.spawn)
        self._state = HopState(member_from_hello(ctx.hello), self.config, anyio.current_time())
        if entry is not None:
            self.add_link(entry)
        ctx.spawn(self._tick_loop, name="pydevts hop ticks")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._apply_now(self.state.set_tags(tags, anyio.current_time()))

    async def stop(self) -> None:
        self._stopping = True
        try:
            self._apply_now(self.state.leave(anyio.current_time()))
            with anyio.move_on_after(self.leave_timeout):
                for link in list(self._links.values()):
                    await link.flush()
        finally:
            with anyio.CancelScope(shield=True):
                for link in list(self._links.values()):
                    await link.aclose("this node left")

    # ----------------------------------------------------------- links

    def add_link(self, link: Link) -> None:
        ctx = self._ctx
        assert ctx is not None
        if self._stopping:
            ctx.spawn(link.aclose, "this node is leaving")
            return
        if link.peer.role != "member":
            ctx.spawn(link.aclose, f"role {link.peer.role!r} not served")
            return
        existing = self._links.get(link.peer_id)
        if existing is not None and _incarnation(existing) != _incarnation(link):
            # The member restarted under its id (a new process): forget the old neighbour, so
            # the new one is taken as new (it gets our database; it has none of it).
            del self._links[link.peer_id]
            if not existing.closed:
                ctx.spawn(existing.aclose, "the member restarted")
            self._apply_now(self.state.link_down(link.peer_id, anyio.current_time()))
            existing = None
        if existing is not None and existing.closed:
            # The link that dropped comes back: its session resumes; the state never lost it.
            self._links[link.peer_id] = link
            self._apply_now(self.state.link_up(member_from_hello(link.peer), anyio.current_time()))
            ctx.spawn(self._run_link, link, name=f"pydevts hop link {link.peer_id}")
            return
        if existing is not None:
            if keeps(existing, link):
                # Read it until the peer closes it: it may have sent on it first.
                ctx.spawn(self._run_link, link)
                ctx.spawn(close_later, link, self.leave_timeout, "duplicate link")
                return
            self._links[link.peer_id] = link
            ctx.spawn(retire, existing, self.leave_timeout)
            ctx.spawn(self._run_link, link, name=f"pydevts hop link {link.peer_id}")
            return
        self._links[link.peer_id] = link
        self._apply_now(self.state.link_up(member_from_hello(link.peer), anyio.current_time()))
        ctx.spawn(self._run_link, link, name=f"pydevts hop link {link.peer_id}")

    async def _run_link(self, link: Link) -> None:
        assert self._ctx is not None
        try:
            await link.run(self._on_frames, spawn=self._ctx.spawn)
        finally:
            if self._links.get(link.peer_id) is link:
                if self._resumable(link):
                    # A dropped connection, not a dead peer: keep the neighbour (sends wait in the
                    # link's session) and redial; past dead_interval with no new link, the state
                    # closes it as it would a silent one.
                    log.info("link to %s dropped (%s); reconnecting", link.peer_id, link.close_reason)
                    self._ctx.spawn(self._redial, link, name=f"pydevts hop redial {link.peer_id}")
                else:
                    self._give_up(link, str(link.close_reason))

    def _resumable(self, link: Link) -> bool:
        session = link.session
        return (
            not self._stopping
            and session is not None
            and session.closed is None
            and not link.peer_closed  # its node closed it on purpose (e.g. found it silent)
            and link.peer_id in self.state.links
            and link.close_reason not in _FINAL
        )

    async def _redial(self, link: Link) -> None:
        """Reconnect to a neighbour whose link dropped, with backoff, while the state keeps it."""
        assert self._ctx is not None
        delay = 0.05
        peer = link.peer_id
        while not self._stopping and self._links.get(peer) is link and peer in self.state.links:
            try:
                new = await self._ctx.connect(Address.parse(link.peer.address))
            except ConnectError as exc:
                if exc.refused:  # nobody listens there any more: gone, not just disconnected
                    self._give_up(link, f"reconnecting: {exc}")
                    return
            except (PydevtsError, ValueError) as exc:
                log.debug("reconnecting to %s: %s", peer, exc)
            else:
                if new.peer_id == peer:
                    self.add_link(new)
                    return
                await new.aclose("not the node expected")
            await anyio.sleep(delay)
            delay = min(delay * 2, self.config.keepalive_interval)
        if self._links.get(peer) is link:  # the state closed it meanwhile (dead_interval)
            self._give_up(link, "no new link")

    def _give_up(self, link: Link, why: str) -> None:
        """``link`` is gone for good: forget it; the state routes around it (unless we are leaving)."""
        if self._links.get(link.peer_id) is link:
            del self._links[link.peer_id]
            if not self._stopping:  # while leaving, the others' state is no news
                log.info("link to %s closed: %s", link.peer_id, why)
                self._apply_now(self.state.link_down(link.peer_id, anyio.current_time()))

    async def _on_frames(self, link: Link, frames: list[bytes]) -> Tail | None:
        """Frames from a neighbour: raw core frames are its own; router frames go to the state."""
        ctx, state, peer = self._ctx, self.state, link.peer_id
        assert ctx is not None
        now = anyio.current_time()
        state.heard(peer, now)
        self._busy[peer] = self._busy.get(peer, 0) + 1
        try:
            start = 0
            for i, frame in enumerate(frames):
                if frame and frame[0] < ROUTER_KIND_MIN:
                    continue
                if i > start:
                    _spawn_tail(ctx, await self._raw(peer, frames[start:i]))
                start = i + 1
                await self._apply(state.receive(peer, frame, anyio.current_time()), relaying=True)
            if start == 0:
                return await self._raw(peer, frames)
            if start < len(frames):
                return await self._raw(peer, frames[start:])
            return None
        finally:
            self._busy[peer] -= 1

    async def _raw(self, peer: str, frames: list[bytes]) -> Tail | None:
        """Core frames a neighbour sent us itself: behind any of its broadcasts held for order
        (then the state hands them out later, as ``Deliver`` actions, with those)."""
        frames = self.state.unicast_from(peer, frames)
        return await self._outboxes.deliver(peer, frames) if frames else None

    # ----------------------------------------------------------- actions

    def _apply_now(self, actions: list[Action]) -> None:
        """Actions that never wait: control frames, member changes, link changes."""
        for action in actions:
            if isinstance(action, Send):
                self._queue(action.neighbour, action.frame)
            elif isinstance(action, Deliver):
                assert self._ctx is not None
                self._outboxes.deliver_soon(action.origin, [action.frame])
            else:
                self._control(action)

    async def _apply(self, actions: list[Action], *, relaying: bool, dest: str | None = None) -> None:
        ctx = self._ctx
        assert ctx is not None
        # Frames for this node are queued first, before any await: the state put them in
        # order, and another reader must not slip in between (see outbox.py).
        origins: list[str] = []
        for action in actions:
            if isinstance(action, Deliver):
                self._outboxes.enqueue(action.origin, [action.frame])
                if action.origin not in origins:
                    origins.append(action.origin)
        try:
            for action in actions:
                if isinstance(action, Send):
                    if action.frame[0] in (ADVERT, KEEPALIVE):
                        self._queue(action.neighbour, action.frame)  # small; must never wait
                    elif relaying:
                        if action.carried is not None:
                            ctx.relayed(action.origin, action.carried, action.neighbour)
                        await self._relay(action.neighbour, action.frame, action)
                    else:
                        await self._send(action.neighbour, action.frame, dest)
                elif not isinstance(action, Deliver):
                    self._control(action)
        finally:  # what was queued is handed over even if a send failed
            for origin in origins:
                _spawn_tail(ctx, await self._outboxes.flush(origin))

    def _control(self, action: Action) -> None:
        ctx = self._ctx
        assert ctx is not None
        if isinstance(action, MemberChange):
            ctx.update_member(action.to_member())
        elif isinstance(action, CloseLink):
            link = self._links.get(action.neighbour)
            if link is not None and link.closed:  # dropped, and no new link in time
                del self._links[action.neighbour]
            elif link is not None:
                log.info("closing link to %s: %s", action.neighbour, action.reason)
                ctx.spawn(link.aclose, action.reason)
        elif isinstance(action, Dropped):
            ctx.dropped(action.origin, action.frame, action.reason)
        elif isinstance(action, Connect):
            if action.member_id not in self._connecting and not self._stopping:
                self._connecting.add(action.member_id)
                ctx.spawn(self._connect, action, name=f"pydevts hop connect {action.member_id}")

    def _queue(self, neighbour: str, frame: bytes) -> None:
        link = self._links.get(neighbour)
        if link is not None:
            try:
                link.send_nowait(frame)
            except PydevtsError as exc:
                log.debug("frame to %s not queued: %s", neighbour, exc)

    async def _send(self, neighbour: str, frame: bytes, dest: str | None = None) -> None:
        """Send on the link to ``neighbour``; for a frame this node originated to ``dest``, a link
        that is gone is an error the caller sees (a request must not wait out its timeout)."""
        link = self._links.get(neighbour)
        try:
            if link is None:
                raise ConnectionClosedError(f"the link to next hop {neighbour} is gone")
            await link.send(frame)
        except ConnectionClosedError as exc:
            if dest is not None:
                raise UnknownNodeError(dest, f"its route through {neighbour} just broke: {exc}") from exc
        except FrameTooLargeError as exc:
            if dest is not None:
                raise
            # A broadcast or relay over what this neighbour takes: it alone misses it.
            self.relays_dropped += 1
            log.warning("dropped a frame to %s: %s", neighbour, exc)

    async def _relay(self, neighbour: str, frame: bytes, action: Send) -> None:
        link = self._links.get(neighbour)
        if link is None:
            return
        if link.has_room:
            self._queue(neighbour, frame)
            return
        token = SEND_DEADLINE.set(None)  # a relay is not bound by some request's deadline
        try:
            with anyio.move_on_after(self.relay_timeout):
                await self._send(neighbour, frame)
                return
        finally:
            SEND_DEADLINE.reset(token)
        self.relays_dropped += 1
        why = f"its link to {neighbour} stayed full for {self.relay_timeout:g} s"
        log.warning("dropped a frame relayed to %s: %s", neighbour, why)
        if action.carried is not None and self._ctx is not None:
            self._ctx.dropped(action.origin, action.carried, why)

    async def _connect(self, action: Connect) -> None:
        assert self._ctx is not None
        try:
            link = await self._ctx.connect(Address.parse(action.address))
        except (PydevtsError, ValueError) as exc:
            log.debug("could not link to %s at %s: %s", action.member_id, action.address, exc)
            self.state.connect_failed(action.member_id, anyio.current_time())
            return
        except Exception:  # a bug must cost this attempt, never the node
            log.exception("linking to %s at %s failed", action.member_id, action.address)
            self.state.connect_failed(action.member_id, anyio.current_time())
            return
        finally:
            self._connecting.discard(action.member_id)
        if link.peer_id != action.member_id:
            log.info("expected %s at %s but found %s", action.member_id, action.address, link.peer_id)
            self.state.connect_failed(action.member_id, anyio.current_time())
        self.add_link(link)

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval
        while not self._stopping:
            await anyio.sleep(interval * random.uniform(0.8, 1.2))
            now = anyio.current_time()
            for peer, busy in self._busy.items():
                if busy:  # still handing its frames to the node: not silent, just slow
                    self.state.heard(peer, now)
            self._apply_now(self.state.tick(now))

    # ----------------------------------------------------------- delivery

    async def send(self, dest: str, frame: bytes) -> None:
        await self._apply(self.state.send(dest, frame, anyio.current_time()), relaying=False, dest=dest)

    async def broadcast(self, frame: bytes) -> None:
        await self._apply(self.state.broadcast(frame, anyio.current_time()), relaying=False)


def _incarnation(link: Link) -> object:
    return link.peer.extensions.get("incarnation")


def _spawn_tail(ctx: RouterContext, tail: Tail | None) -> None:
    if tail is not None:
        ctx.spawn(tail)
