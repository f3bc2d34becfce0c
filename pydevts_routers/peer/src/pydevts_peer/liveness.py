"""Failure detection for the peer router: the core SWIM machine over UDP.

Probes and membership updates travel as small JSON datagrams on the
transport's datagram channel (UDP on the listener's port unless the transport
brings its own, see :mod:`pydevts.datagrams`) — not on the TCP links,
so that a link held up by backpressure (a slow handler on the far side) never
delays a probe. The router adds its own hints: a link that comes up makes the
member alive, a link that drops without a leave makes it suspect at once.

Datagram: ``{"c": cluster, "f": sender id, "m": SWIM message}``; datagrams of
another cluster, or that do not parse, are dropped (counted, logged at DEBUG).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

import anyio
from pydevts.datagrams import MAX_DATAGRAM
from pydevts.errors import ConnectionClosedError
from pydevts.members import Member
from pydevts.protocols import Address, DatagramEndpoint, RouterContext
from pydevts.swim import Action, Send, StateChange, SwimConfig, SwimState

__all__ = ["Liveness"]

log = logging.getLogger("pydevts.peer.liveness")

TICK = 0.05  # seconds between SWIM ticks


class Liveness:
    """Owns the SWIM state of one node and its datagram channel."""

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
        self._endpoint: DatagramEndpoint | None = None
        self._stopped = False

    async def start(self) -> None:
        # Without probes the others would declare this node failed: if no
        # channel can be opened, the error stops the node from starting.
        self._endpoint = await self.ctx.open_datagrams()
        self.ctx.spawn(self._receive_loop, name="pydevts swim receive")
        self.ctx.spawn(self._tick_loop, name="pydevts swim ticks")

    async def aclose(self) -> None:
        self._stopped = True
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.aclose()

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
        while not self._stopped and (endpoint := self._endpoint) is not None:
            try:
                data = await endpoint.receive()
            except ConnectionClosedError:
                return
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
        endpoint = self._endpoint
        if endpoint is None or self._stopped:
            return
        data = json.dumps(
            {"c": self._cluster, "f": self.swim.local.id, "m": action.message}, separators=(",", ":")
        ).encode()
        if len(data) > MAX_DATAGRAM:
            log.warning("SWIM message to %s too large (%d bytes): not sent", action.to, len(data))
            return
        try:
            endpoint.send(data, Address.parse(action.address))
        except ValueError as exc:
            log.debug("SWIM datagram to %s not sent: %s", action.to, exc)
