"""The ``peer`` router: a thin IO shell around :class:`~pydevts_peer.state.PeerState`.

It owns one :class:`~pydevts.link.Link` per member, runs each link's reader,
feeds the state machine and carries out the actions it returns. Core frames
(kind < 0x40) pass straight through to the node; frames of kind ``0x40`` are
this router's control messages (JSON).
"""

from __future__ import annotations

import json
import logging
import random

import anyio
from pydevts.errors import ConnectionClosedError, PydevtsError, RemoteProtocolError, UnknownNodeError
from pydevts.link import Link, Tail
from pydevts.members import Member
from pydevts.protocols import Address, RouterContext
from pydevts.wire import ROUTER_KIND_MIN

from .state import Action, Connect, MemberDown, MemberUp, PeerState, SendControl

__all__ = ["PeerRouter"]

log = logging.getLogger("pydevts.peer")

CONTROL = ROUTER_KIND_MIN  # 0x40: JSON control message


def encode_control(message: dict[str, object]) -> bytes:
    return bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode()


class PeerRouter:
    """Full mesh: every node links to every other node."""

    name = "peer"

    def __init__(self, *, tick_interval: float = 1.0, leave_timeout: float = 2.0) -> None:
        self.tick_interval = tick_interval
        self.leave_timeout = leave_timeout
        self._links: dict[str, Link] = {}
        self._ctx: RouterContext | None = None
        self._state: PeerState | None = None
        self._stopping = False

    @property
    def links(self) -> dict[str, Link]:
        """Live links by peer id (read-only use)."""
        return self._links

    # ----------------------------------------------------------- lifecycle

    async def start(self, ctx: RouterContext, entry: Link | None) -> None:
        self._ctx = ctx
        hello = ctx.hello
        self._state = PeerState(Member(hello.node_id, hello.address, dict(hello.tags)))
        if entry is not None:
            self.add_link(entry)
        ctx.spawn(self._tick_loop, name="pydevts peer ticks")

    async def stop(self) -> None:
        assert self._state is not None
        self._stopping = True
        self._apply(self._state.leave())
        links = list(self._links.values())
        with anyio.move_on_after(self.leave_timeout):
            for link in links:
                await link.flush()
        for link in links:
            await link.aclose("this node left")

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
            if _keeps(existing, link):
                self._ctx.spawn(link.aclose, "duplicate link")
                return
            self._links[link.peer_id] = link
            self._ctx.spawn(_retire, existing, self.leave_timeout)
            self._ctx.spawn(self._run_link, link, name=f"pydevts link {link.peer_id}")
            return
        self._links[link.peer_id] = link
        peer = link.peer
        self._apply(
            self._state.link_up(Member(peer.node_id, peer.address, dict(peer.tags)), anyio.current_time())
        )
        self._ctx.spawn(self._run_link, link, name=f"pydevts link {link.peer_id}")

    async def _run_link(self, link: Link) -> None:
        assert self._state is not None and self._ctx is not None
        try:
            await link.run(self._on_frames, spawn=self._ctx.spawn)
        finally:
            if self._links.get(link.peer_id) is link:
                del self._links[link.peer_id]
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
                ctx.update_member(action.member)
            elif isinstance(action, MemberDown):
                ctx.set_member_state(action.peer_id, action.state)

    async def _connect(self, member: Member) -> None:
        assert self._ctx is not None and self._state is not None
        try:
            link = await self._ctx.connect(Address.parse(member.address))
        except (PydevtsError, ValueError) as exc:
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

    # ----------------------------------------------------------- delivery

    async def send(self, dest: str, frame: bytes) -> None:
        link = self._links.get(dest)
        if link is None:
            raise UnknownNodeError(dest, "not a live member of this cluster")
        try:
            await link.send(frame)
        except ConnectionClosedError as exc:
            raise UnknownNodeError(dest, f"its link closed: {exc}") from exc

    async def broadcast(self, frame: bytes) -> None:
        for link in list(self._links.values()):
            try:
                await link.send(frame)
            except ConnectionClosedError:
                pass  # the member is going away; its leave/fail is reported separately


async def _retire(link: Link, timeout: float) -> None:
    """Close a link that another one replaced, after sending what it had queued."""
    with anyio.move_on_after(timeout):
        await link.flush()
    await link.aclose("replaced by a newer link")


def _keeps(existing: Link, new: Link) -> bool:
    """Of two links to one peer, keep the one opened by the smaller node id.

    Both ends apply the same rule, so they close the same link. When one
    side opened both (a reconnect), the newer one wins.
    """

    def opener(link: Link) -> str:
        return link.local.node_id if link.initiated else link.peer_id

    if opener(existing) == opener(new):
        return False
    return opener(existing) < opener(new)
