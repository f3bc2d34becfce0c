"""The ``peer`` router: a thin IO shell around :class:`~pydevts_peer.state.PeerState`.

It owns one :class:`~pydevts.link.Link` per member, runs each link's reader,
feeds the state machine and carries out the actions it returns. Core frames
(kind < 0x40) pass straight through to the node; frames of kind ``0x40`` are
this router's control messages (JSON).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio
from pydevts.errors import (
    ConnectError,
    PydevtsError,
    RemoteProtocolError,
)
from pydevts.link import Link, Tail
from pydevts.members import Member, MemberState
from pydevts.protocols import Address, RouterContext
from pydevts.routing import (
    close_later,
    config_from_options,
    keeps,
    member_from_hello,
    retire,
    send_on_link,
    send_on_links,
)
from pydevts.swim import Liveness, SwimConfig
from pydevts.wire import ROUTER_KIND_MIN

from .state import Action, Connect, MemberDown, MemberUp, PeerState, SendControl

__all__ = ["PeerRouter"]

log = logging.getLogger("pydevts.peer")

_COUNTERS = ("links_adopted", "duplicate_links", "dials", "redials", "dial_failures")
CONTROL = ROUTER_KIND_MIN  # 0x40: JSON control message


def encode_control(message: dict[str, object]) -> bytes:
    return bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode()


class PeerRouter:
    """Full mesh: every node links to every other node."""

    name = "peer"

    def __init__(
        self,
        *,
        tick_interval: float = 1.0,
        leave_timeout: float = 2.0,
        swim: SwimConfig | None = None,
        max_backoff: float = 2.0,
        **swim_options: Any,
    ) -> None:
        """``swim_options``: SwimConfig fields by name (``Node(router_options=...)``, ``--router-option``)."""
        self.tick_interval = float(tick_interval)
        self.leave_timeout = float(leave_timeout)
        self.swim_config = config_from_options(SwimConfig, swim_options, base=swim or SwimConfig())
        if swim_options:
            raise TypeError(f"unknown option(s): {', '.join(sorted(swim_options))}")
        self.max_backoff = float(max_backoff)
        for name in ("tick_interval", "leave_timeout", "max_backoff"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._links: dict[str, Link] = {}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        # The last link of a member that is still alive but not linked right now: sends
        # go to its session, which keeps them until the next link (pydevts.session).
        self._resting: dict[str, Link] = {}
        self._ctx: RouterContext | None = None
        self._state: PeerState | None = None
        self._liveness: Liveness | None = None
        self._reconnecting: set[str] = set()
        self._first_delay: dict[str, float] = {}  # reconnect backoff that outlives one attempt
        self._up_since: dict[str, float] = {}  # when each current link came up
        self._stopping = False

    @property
    def links(self) -> dict[str, Link]:
        """Live links by peer id (read-only use)."""
        return self._links

    # ----------------------------------------------------------- lifecycle

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        local = member_from_hello(ctx.hello)
        self._state = PeerState(local)
        self._liveness = Liveness(ctx, local, self._on_member_change, self.swim_config)
        await self._liveness.start()
        if entry is not None:
            self.add_link(entry)
        ctx.spawn(self._tick_loop, name="pydevts peer ticks")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        assert self._state is not None and self._liveness is not None
        self._state.local = replace(self._state.local, tags=dict(tags))
        self._liveness.set_tags(tags)

    async def stop(self) -> None:
        assert self._state is not None and self._liveness is not None
        self._stopping = True
        try:
            self._liveness.leave()
            self._apply(self._state.leave())
            links = list(self._links.values())
            with anyio.move_on_after(self.leave_timeout):
                for link in links:
                    await link.flush()
        finally:
            with anyio.CancelScope(shield=True):
                for link in list(self._links.values()):
                    await link.aclose("this node left")
                await self._liveness.aclose()

    # ----------------------------------------------------------- links

    def add_link(self, link: Link) -> None:
        assert self._ctx is not None and self._state is not None
        if self._stopping:
            self._ctx.spawn(link.aclose, "this node is leaving")
            return
        if link.peer.role != "member":
            log.info(
                "closing link from %s: role %r is not served by the peer router", link.peer_id, link.peer.role
            )
            self._ctx.spawn(link.aclose, f"role {link.peer.role!r} not served")
            return
        existing = self._links.get(link.peer_id)
        if existing is not None:
            self._counts["duplicate_links"] += 1
            if keeps(existing, link):
                # Not closed unread: the peer may have sent on it before it saw the
                # other one. Read it until the peer closes it, or for leave_timeout.
                log.debug("duplicate link %r: keeping %r", link, existing)
                self._ctx.spawn(self._run_link, link)
                self._ctx.spawn(close_later, link, self.leave_timeout, "duplicate link")
                return
            log.debug("duplicate link %r replaces %r", link, existing)
            self._links[link.peer_id] = link
            self._ctx.spawn(retire, existing, self.leave_timeout)
            self._ctx.spawn(self._run_link, link, name=f"pydevts link {link.peer_id}")
            return
        log.debug("adopted %r", link)
        self._counts["links_adopted"] += 1
        self._links[link.peer_id] = link
        self._resting.pop(link.peer_id, None)
        self._up_since[link.peer_id] = anyio.current_time()
        self._apply(self._state.link_up(member_from_hello(link.peer), anyio.current_time()))
        assert self._liveness is not None
        member = self._liveness.swim.members.get(link.peer_id)
        if member is not None and member.alive:
            self._ctx.update_member(member)  # now it can be sent to: report it
        self._ctx.spawn(self._run_link, link, name=f"pydevts link {link.peer_id}")

    async def _run_link(self, link: Link) -> None:
        assert self._state is not None and self._ctx is not None
        try:
            await link.run(self._on_frames, spawn=self._ctx.spawn)
        finally:
            if self._links.get(link.peer_id) is link:
                del self._links[link.peer_id]
                if link.session is not None and link.session.closed is None and not self._stopping:
                    self._resting[link.peer_id] = link
                if not self._stopping:  # while leaving, the others' state is no news
                    log.info("link to %s closed: %s", link.peer_id, link.close_reason)
                    self._apply(self._state.link_down(link.peer_id, anyio.current_time()))

    async def _on_frames(self, link: Link, frames: list[bytes]) -> Tail | None:
        assert self._ctx is not None
        start = 0
        for i, frame in enumerate(frames):
            if not frame or frame[0] >= ROUTER_KIND_MIN:
                if i > start:
                    await self._run_tail(await self._ctx.deliver(link.peer_id, frames[start:i]))
                start = i + 1
                self._on_control(link, frame)
        if start == 0:
            return await self._ctx.deliver(link.peer_id, frames)
        if start < len(frames):
            return await self._ctx.deliver(link.peer_id, frames[start:])
        return None

    async def _run_tail(self, tail: Tail | None) -> None:
        # A request before a control frame in one batch: give it a task.
        if tail is not None:
            assert self._ctx is not None
            self._ctx.spawn(tail)

    def _on_control(self, link: Link, frame: bytes) -> None:
        assert self._state is not None
        try:
            if not frame:
                raise ValueError("empty frame")
            if frame[0] != CONTROL:
                raise ValueError(f"unknown router frame kind 0x{frame[0]:02x}")
            actions = self._state.control(link.peer_id, json.loads(frame[1:]), anyio.current_time())
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise RemoteProtocolError(f"bad peer-router control message from {link.peer_id}: {exc}") from exc
        self._apply(actions)

    # ----------------------------------------------------------- actions

    def _apply(self, actions: list[Action]) -> None:
        ctx = self._ctx
        assert ctx is not None
        for action in actions:
            if isinstance(action, SendControl):
                link = self._links.get(action.peer_id)
                if link is not None:
                    try:
                        link.send_nowait(encode_control(action.message))
                    except PydevtsError as exc:
                        log.debug("control message to %s not sent: %s", link.peer_id, exc)
            elif isinstance(action, Connect):
                ctx.spawn(self._connect, action.member, name=f"pydevts connect {action.member.id}")
            elif isinstance(action, MemberUp):
                assert self._liveness is not None
                self._liveness.learn(action.member)
            elif isinstance(action, MemberDown):
                self._link_lost(action.peer_id, action.state)

    def _link_lost(self, peer_id: str, state: MemberState) -> None:
        """A link dropped: a leave is final; anything else is a hint, and we try to get it back."""
        assert self._liveness is not None
        if state == MemberState.LEFT:
            self._liveness.member_left(peer_id)
            return
        self._liveness.link_down(peer_id)
        member = self._liveness.swim.members.get(peer_id)
        if member is not None and member.alive and self._ctx is not None:
            # A link that dies young does not get an immediate retry: the
            # backoff carries over until a link has lived for max_backoff.
            now = anyio.current_time()
            up_since = self._up_since.pop(peer_id, now)
            if now - up_since >= self.max_backoff:
                self._first_delay.pop(peer_id, None)
            self._ctx.spawn(self._reconnect, peer_id, name=f"pydevts reconnect {peer_id}")

    def _on_member_change(self, member: Member) -> None:
        """SWIM decided a member's state: tell the node, and act on links.

        A member first heard of through gossip is not reported until its link
        is up: a member the node lists as alive can be sent to.
        """
        assert self._ctx is not None and self._state is not None
        known = self._ctx.members.get(member.id)
        if member.alive and member.id not in self._links and (known is None or not known.alive):
            if not self._stopping and member.id not in self._reconnecting:
                self._apply(self._state.learn(member, anyio.current_time()))
            return
        self._ctx.update_member(member)
        if not member.alive:
            self._resting.pop(member.id, None)
            self._state.linked.pop(member.id, None)  # newcomers must not be sent to it
            self._state.known.pop(member.id, None)
            self._first_delay.pop(member.id, None)
            self._up_since.pop(member.id, None)
            link = self._links.get(member.id)
            if link is None:
                pass
            elif member.state == MemberState.LEFT:
                # No more sends to it; but it closes the link itself once it has flushed
                # what it sent (news of the leave may come first, over UDP), so keep
                # reading until then — and close it ourselves only if it does not.
                del self._links[member.id]
                self._up_since.pop(member.id, None)
                self._ctx.spawn(close_later, link, 2 * self.leave_timeout, "member left")
            else:
                self._ctx.spawn(link.aclose, f"member {member.state.value}")
        elif member.id not in self._links and not self._stopping:
            self._apply(self._state.learn(member, anyio.current_time()))

    async def _reconnect(self, peer_id: str) -> None:
        """Reconnect with bounded exponential backoff while the member may still be alive.

        Both ends try (a duplicate link is resolved as usual). An address that
        refuses the connection has no node behind it any more: the member is
        failed at once, without waiting out the suspicion timeout.
        """
        assert self._liveness is not None and self._ctx is not None and self._state is not None
        if peer_id in self._reconnecting:
            return
        self._reconnecting.add(peer_id)
        delay = self._first_delay.get(peer_id, 0.0)
        self._first_delay[peer_id] = min(max(delay * 2, 0.05), self.max_backoff)
        try:
            if delay:
                await anyio.sleep(delay)
            delay = max(delay, 0.05)
            while not self._stopping and peer_id not in self._links:
                member = self._liveness.swim.members.get(peer_id)
                if member is None or not member.alive:
                    return
                self._counts["redials"] += 1
                try:
                    link = await self._ctx.connect(Address.parse(member.address))
                except ConnectError as exc:
                    self._counts["dial_failures"] += 1
                    if exc.refused:
                        log.info("member %s is gone: %s", peer_id, exc)
                        self._liveness.confirm_failed(peer_id)
                        return
                    log.debug("reconnecting to %s: %s (next try in %.2f s)", peer_id, exc, delay)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                except (PydevtsError, ValueError) as exc:
                    log.debug("reconnecting to %s: %s (next try in %.2f s)", peer_id, exc, delay)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
                log.info("reconnected to %s", peer_id)
                self.add_link(link)
                return
        finally:
            self._reconnecting.discard(peer_id)

    async def _connect(self, member: Member) -> None:
        assert self._ctx is not None and self._state is not None
        self._counts["dials"] += 1
        try:
            link = await self._ctx.connect(Address.parse(member.address))
        except (PydevtsError, ValueError) as exc:
            self._counts["dial_failures"] += 1
            log.info("could not connect to member %s at %s: %s", member.id, member.address, exc)
            self._apply(self._state.connect_failed(member.id, anyio.current_time()))
            return
        except Exception:  # a bug must cost this connection, never the node
            log.exception("connecting to member %s at %s failed", member.id, member.address)
            self._apply(self._state.connect_failed(member.id, anyio.current_time()))
            return
        if link.peer_id != member.id:
            log.warning("expected %s at %s but found %s", member.id, member.address, link.peer_id)
            self._state.connect_failed(member.id, anyio.current_time())
        self.add_link(link)

    async def _tick_loop(self) -> None:
        assert self._state is not None
        while not self._stopping:
            await anyio.sleep(self.tick_interval * random.uniform(0.8, 1.2))
            self._apply(self._state.tick(anyio.current_time()))

    def statistics(self) -> dict[str, int]:
        """Link counters (adopted, duplicates, dials, redials and their failures, links open now)
        and the failure detector's (``swim_*``: probes, round trips, suspicions, refusals, ...)."""
        swim = self._liveness.statistics() if self._liveness is not None else {}
        return {**self._counts, "links": len(self._links), **swim}

    def forget(self, peer_id: str) -> bool:
        """The node reaps ``peer_id`` (left or failed ``reap_after`` ago): drop what we keep about it.

        Refused while it has a link or SWIM holds it alive (it is coming back).
        """
        if self._state is None or self._liveness is None:
            return True
        member = self._liveness.swim.members.get(peer_id)
        if peer_id in self._links or (member is not None and member.alive):
            return False
        self._state.forget(peer_id)
        self._resting.pop(peer_id, None)
        self._liveness.swim.forget(peer_id)
        self._first_delay.pop(peer_id, None)
        self._up_since.pop(peer_id, None)
        return True

    # ----------------------------------------------------------- delivery

    async def send(self, dest: str, frame: bytes) -> None:
        await send_on_link(self._links.get(dest) or self._resting.get(dest), dest, frame)

    async def broadcast(self, frame: bytes) -> None:
        if self._resting:
            await send_on_links([*self._links.values(), *self._resting.values()], frame)
        else:
            await send_on_links(self._links.values(), frame)
