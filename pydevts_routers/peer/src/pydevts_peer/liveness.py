"""Failure detection for the peer router: the core SWIM machine over UDP.

Probes and membership updates travel as small JSON datagrams on UDP, on the
same host and port number as the node's TCP listener — not on the TCP links,
so that a link held up by backpressure (a slow handler on the far side) never
delays a probe. The router adds its own hints: a link that comes up makes the
member alive, a link that drops without a leave makes it suspect at once.

Datagram: ``{"c": cluster, "f": sender id, "m": SWIM message}``; datagrams of
another cluster, or that do not parse, are dropped (counted, logged at DEBUG).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Mapping

import anyio
import anyio.abc
from pydevts.errors import TransportError
from pydevts.members import Member
from pydevts.protocols import Address, RouterContext
from pydevts.swim import Action, Send, StateChange, SwimConfig, SwimState

__all__ = ["Liveness"]

log = logging.getLogger("pydevts.peer.liveness")

TICK = 0.05  # seconds between SWIM ticks
MAX_DATAGRAM = 60_000


class Liveness:
    """Owns the SWIM state of one node and its UDP socket."""

    def __init__(
        self,
        ctx: RouterContext,
        local: Member,
        on_change: Callable[[Member], None],
        config: SwimConfig | None = None,
    ) -> None:
        self.ctx = ctx
        self.swim = SwimState(local, config or SwimConfig())
        self.on_change = on_change
        self.bad_datagrams = 0
        self._cluster = ctx.hello.cluster
        self._sock: socket.socket | None = None
        self._stopped = False

    async def start(self, bind: Address) -> None:
        family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((bind.host, bind.port))
        except OSError as exc:
            sock.close()
            # Without probes the others would declare this node failed: refuse to start.
            raise TransportError(
                f"cannot bind the failure detector's UDP port {bind}: {exc.strerror or exc} "
                "(pydevts needs UDP on the same port number as the node's TCP listener)"
            ) from exc
        self._sock = sock
        self.ctx.spawn(self._receive_loop, name="pydevts swim receive")
        self.ctx.spawn(self._tick_loop, name="pydevts swim ticks")

    async def aclose(self) -> None:
        self._stopped = True
        sock, self._sock = self._sock, None
        if sock is not None:
            anyio.notify_closing(sock)
            sock.close()

    # ------------------------------------------------------------------ hints

    def learn(self, member: Member) -> None:
        self._apply(self.swim.learn(member, anyio.current_time()))

    def link_down(self, node_id: str) -> None:
        self._apply(self.swim.link_down(node_id, anyio.current_time()))

    def confirm_failed(self, node_id: str) -> None:
        self._apply(self.swim.confirm_failed(node_id, anyio.current_time()))

    def member_left(self, node_id: str) -> None:
        self._apply(self.swim.member_left(node_id, anyio.current_time()))

    def leave(self) -> None:
        self._apply(self.swim.leave(anyio.current_time()))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._apply(self.swim.set_tags(tags, anyio.current_time()))

    # ------------------------------------------------------------------ loops

    async def _tick_loop(self) -> None:
        while not self._stopped:
            self._apply(self.swim.tick(anyio.current_time()))
            await anyio.sleep(TICK)

    async def _receive_loop(self) -> None:
        while not self._stopped and (sock := self._sock) is not None:
            try:
                data = sock.recv(MAX_DATAGRAM + 1024)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(sock)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    return
                continue
            except OSError:  # e.g. ICMP port unreachable after an earlier send: not fatal
                if sock.fileno() < 0:
                    return
                continue
            try:
                body = json.loads(data)
                if body.get("c") != self._cluster:
                    raise ValueError(f"datagram of cluster {body.get('c')!r}")
                sender = body["f"]
                if not isinstance(sender, str):
                    raise ValueError("no sender")
                actions = self.swim.receive(sender, body["m"], anyio.current_time())
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                self.bad_datagrams += 1
                log.debug("dropping a SWIM datagram: %s", exc)
                continue
            self._apply(actions)

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, StateChange):
                self.on_change(action.member)

    def _send(self, action: Send) -> None:
        sock = self._sock
        if sock is None or self._stopped:
            return
        data = json.dumps(
            {"c": self._cluster, "f": self.swim.local.id, "m": action.message}, separators=(",", ":")
        ).encode()
        if len(data) > MAX_DATAGRAM:
            log.warning("SWIM message to %s too large (%d bytes): not sent", action.to, len(data))
            return
        try:
            addr = Address.parse(action.address)
            # Datagrams never need to wait: a full buffer drops it, as UDP would anyway.
            sock.sendto(data, (addr.host, addr.port))
        except (OSError, ValueError) as exc:
            log.debug("SWIM datagram to %s not sent: %s", action.to, exc)
