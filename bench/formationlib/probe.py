"""Instrumentation of one node process, from the outside: wrappers around pydevts methods.

Nothing in the library is edited: :func:`install` replaces a few methods of
pydevts classes *in this process only* by wrappers that call the original and
note what happened, with ``time.time()`` (wall clock, comparable across the
processes of one machine), in :data:`REC`. A method that no longer exists (the
library changed) is skipped and listed in ``REC.missing``: the timeline then
lacks that column instead of the node failing.

What is recorded (``Recorder.events``: ``[t, kind, subject, info]``):

``join_begin`` / ``join_end``  the join (``join_or_start``): connect + handshake to the entry
``learn``        the peer router's state learned a member (``info``: ``sync:X``, ``intro:X``, ``swim``)
``swim_heard``   SWIM first heard of a member (``info``: the datagram's sender)
``swim_report``  SWIM told the router a member's state (``info``: state, and whether linked)
``dial``         the router decided to connect (``info``: ``learn`` = at once, ``safety`` = the
                 ``connect_after`` safety net in ``PeerState.tick``; ``attempt``)
``reconnect``    the router's reconnect loop started for a member
``connect``      ``NodeContext.connect`` ended (``info``: ok, seconds, handshake seconds, error)
``accept``       an accepted connection finished its handshake (``info``: seconds)
``link``         ``LinkHost.add_link`` (``info``: initiated, outcome adopted/dup_kept/dup_replaced)
``view``         the member view changed (``NodeContext._changed``: joined, failed, ...)
``lag``          the event loop woke up late (``info``: seconds late; only lags over 20 ms)

Counters (``Recorder.counters``): router control frames sent and received by
type (count, bytes, member entries), SWIM datagrams sent and received by type
(count, bytes, updates carried).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.events: list[list[Any]] = []
        self.counters: dict[str, dict[str, list[int]]] = defaultdict(dict)
        self.missing: list[str] = []
        self.in_tick = False

    def add(self, kind: str, subject: str = "", info: Any = None) -> None:
        self.events.append([time.time(), kind, subject, info])

    def count(self, group: str, key: str, nbytes: int = 0, entries: int = 0) -> None:
        cell = self.counters[group].setdefault(key, [0, 0, 0])
        cell[0] += 1
        cell[1] += nbytes
        cell[2] += entries


REC = Recorder()


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        REC.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
        return
    wrapper = make(original)
    functools.update_wrapper(wrapper, original)
    setattr(owner, name, wrapper)


def _known_ids(state: Any) -> set[str]:
    return set(state.known) | set(state.linked)


def install() -> None:
    """Wrap the methods; call once, before the node starts."""
    import pydevts.node.start as node_start
    import pydevts_peer.router as router_mod
    from pydevts.node.context import NodeContext
    from pydevts.routing.dialer import Dialer
    from pydevts.routing.host import LinkHost
    from pydevts.swim import FailureDetector, SwimState
    from pydevts.wire.datagrams import UdpEndpoint
    from pydevts_peer.router import PeerRouter
    from pydevts_peer.state import PeerState

    # -- joining
    def join_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def join_or_start(*args: Any, **kwargs: Any) -> Any:
            REC.add("join_begin")
            result = await orig(*args, **kwargs)
            entry = getattr(result, "entry", None)
            REC.add("join_end", entry.peer_id if entry is not None else "", {"new": entry is None})
            return result

        return join_or_start

    _wrap(node_start, "join_or_start", join_wrap)

    # -- what the peer router learns, and from where
    def control_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def control(self: Any, peer_id: str, message: Any, now: float) -> Any:
            before = _known_ids(self)
            kind = message.get("t") if isinstance(message, dict) else "?"
            entries = len(message.get("members") or ()) if isinstance(message, dict) else 0
            REC.count("ctrl_recv", str(kind), 0, entries)
            actions = orig(self, peer_id, message, now)
            for new in sorted(_known_ids(self) - before):
                REC.add("learn", new, f"{kind}:{peer_id}")
            return actions

        return control

    _wrap(PeerState, "control", control_wrap)

    def learn_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def learn(self: Any, member: Any, now: float) -> Any:
            before = _known_ids(self)
            actions = orig(self, member, now)
            if member.id not in before and member.id in _known_ids(self):
                REC.add("learn", member.id, "swim")
            return actions

        return learn

    _wrap(PeerState, "learn", learn_wrap)

    def tick_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def tick(self: Any, now: float) -> Any:
            REC.in_tick = True
            try:
                return orig(self, now)
            finally:
                REC.in_tick = False

        return tick

    _wrap(PeerState, "tick", tick_wrap)

    def pconnect_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _connect(self: Any, entry: Any) -> Any:
            action = orig(self, entry)
            REC.add(
                "dial",
                entry.member.id,
                {"reason": "safety" if REC.in_tick else "learn", "attempt": entry.attempts},
            )
            return action

        return _connect

    _wrap(PeerState, "_connect", pconnect_wrap)

    # -- connections and links
    def ctx_connect_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def connect(self: Any, address: Any) -> Any:
            start = time.time()
            try:
                link = await orig(self, address)
            except BaseException as exc:
                REC.add(
                    "connect", str(address), {"ok": False, "s": time.time() - start, "err": repr(exc)[:200]}
                )
                raise
            REC.add("connect", link.peer_id, {"ok": True, "s": time.time() - start, "addr": str(address)})
            return link

        return connect

    _wrap(NodeContext, "connect", ctx_connect_wrap)

    def handshake_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def handshake(self: Any, conn: Any, *, initiated: bool, **kwargs: Any) -> Any:
            start = time.time()
            link = await orig(self, conn, initiated=initiated, **kwargs)
            kind = "hs_out" if initiated else "accept"
            REC.add(kind, link.peer_id, {"s": time.time() - start, "role": link.peer.role})
            return link

        return handshake

    _wrap(NodeContext, "handshake", handshake_wrap)

    def add_link_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def add_link(self: Any, link: Any) -> Any:
            existing = self._links.get(link.peer_id)
            start = time.time()
            result = orig(self, link)
            now = self._links.get(link.peer_id)
            if existing is None:
                outcome = "adopted" if now is link else "refused"
            else:
                outcome = "dup_replaced" if now is link else "dup_kept"
            REC.events.append(
                [start, "link", link.peer_id, {"initiated": link.initiated, "outcome": outcome}]
            )
            return result

        return add_link

    _wrap(LinkHost, "add_link", add_link_wrap)

    def reconnect_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def redial(self: Any, link: Any) -> Any:
            REC.add("reconnect", link.peer_id)
            return orig(self, link)

        return redial

    _wrap(Dialer, "redial", reconnect_wrap)

    def member_change_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _member_changed(self: Any, member: Any, now: float) -> Any:
            REC.add("swim_report", member.id, {"state": member.state.value, "linked": member.id in self.up})
            return orig(self, member, now)

        return _member_changed

    _wrap(PeerRouter, "_member_changed", member_change_wrap)

    # -- router control frames sent (module-level function, looked up at each call)
    def encode_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def encode_control(message: dict[str, object]) -> bytes:
            data: bytes = orig(message)
            members = message.get("members")
            entries = len(members) if isinstance(members, list) else (1 if "member" in message else 0)
            REC.count("ctrl_sent", str(message.get("t")), len(data), entries)
            return data

        return encode_control

    _wrap(router_mod, "encode_control", encode_wrap)

    def on_control_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def receive(self: Any, now: float, peer_id: str, frame: bytes) -> Any:
            REC.count("ctrl_recv_bytes", "all", len(frame))
            return orig(self, now, peer_id, frame)

        return receive

    _wrap(PeerRouter, "receive", on_control_wrap)

    # -- the member view
    def changed_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _changed(self: Any, event: Any) -> Any:
            if event is not None:
                REC.add("view", event.member.id, event.kind)
            return orig(self, event)

        return _changed

    _wrap(NodeContext, "_changed", changed_wrap)

    # -- SWIM datagrams
    def handle_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def handle_datagram(self: Any, data: bytes, now: float) -> Any:
            REC.count("swim_recv_bytes", "all", len(data))
            return orig(self, data, now)

        return handle_datagram

    _wrap(FailureDetector, "handle_datagram", handle_wrap)

    def receive_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def receive(self: Any, sender: str, message: Any, now: float) -> Any:
            before = set(self.members)
            ups = message.get("u") if isinstance(message, dict) else None
            kind = message.get("t") if isinstance(message, dict) else "?"
            REC.count("swim_recv", str(kind), 0, len(ups) if isinstance(ups, list) else 0)
            actions = orig(self, sender, message, now)
            for new in sorted(set(self.members) - before):
                REC.add("swim_heard", new, sender)
            return actions

        return receive

    _wrap(SwimState, "receive", receive_wrap)

    def send_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _send(self: Any, action: Any) -> Any:
            message = action.message
            ups = message.get("u")
            REC.count("swim_sent", str(message.get("t")), 0, len(ups) if isinstance(ups, list) else 0)
            for update in ups if isinstance(ups, list) else ():
                REC.count("swim_sent_updates", str(update[0]))
            return orig(self, action)

        return _send

    _wrap(FailureDetector, "_encode", send_wrap)

    def udp_send_wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def send(self: Any, data: bytes, address: Any) -> Any:
            REC.count("swim_sent_bytes", "all", len(data))
            return orig(self, data, address)

        return send

    _wrap(UdpEndpoint, "send", udp_send_wrap)
