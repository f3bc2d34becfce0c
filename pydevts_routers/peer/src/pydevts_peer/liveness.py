"""Failure detection for the peer router: the core SWIM machine over UDP.

Probes and membership updates travel as small JSON datagrams on the
transport's datagram channel (UDP on the listener's port unless the transport
brings its own, see :mod:`pydevts.datagrams`) — not on the TCP links,
so that a link held up by backpressure (a slow handler on the far side) never
delays a probe. The router adds its own hints: a link that comes up makes the
member alive, a link that drops without a leave makes it suspect at once.

Datagram: ``{"c": cluster, "f": sender id, "m": SWIM message}``. A datagram of
another cluster, or one that does not parse or validate (see
:mod:`pydevts.swim_wire`), is dropped: counted (``bad_datagrams``) and logged
at WARNING, rate-limited. Any other exception while one datagram is handled is
a bug; it costs only that datagram: counted (``datagram_errors``), logged
rate-limited with its traceback, and never reaches the node's task group.
The same holds for a tick. Members SWIM holds *unconfirmed* (heard of only
through gossip) are not reported alive to the router until they answer a
probe, so gossip alone never makes the router open connections.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

import anyio
import anyio.lowlevel
from pydevts.datagrams import MAX_DATAGRAM
from pydevts.errors import ConnectionClosedError
from pydevts.members import Member
from pydevts.protocols import Address, DatagramEndpoint, RouterContext
from pydevts.ratelog import RateLimitedLog
from pydevts.swim import Action, Send, StateChange, SwimConfig, SwimState
from pydevts.swim_wire import id_field

__all__ = ["Liveness"]

log = logging.getLogger("pydevts.peer.liveness")

TICK = 0.05  # seconds between SWIM ticks
YIELD_EVERY = 8  # datagrams handled in a row before the receive loop lets other tasks run


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
        self.bad_datagrams = 0  # malformed, or of another cluster
        self.datagram_errors = 0  # an internal error while handling one (a bug)
        self._ratelog = RateLimitedLog(log)
        self._cluster = ctx.hello.cluster
        self._endpoint: DatagramEndpoint | None = None
        self._stopped = False
        self._addresses: dict[str, Address] = {}  # parsed once per member address (bounded)

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
            try:
                self._apply(self.swim.tick(anyio.current_time()))
            except Exception:  # a bug must not stop the node; the next tick tries again
                self.datagram_errors += 1
                self._ratelog.log(logging.ERROR, "tick", "SWIM tick failed", exc_info=True)
            await anyio.sleep(TICK)

    async def _receive_loop(self) -> None:
        handled = 0
        while not self._stopped and (endpoint := self._endpoint) is not None:
            try:
                data = await endpoint.receive()
            except ConnectionClosedError:
                return
            try:
                self.handle_datagram(data, anyio.current_time())
            except Exception:  # one bad datagram costs only itself, never the node
                self.datagram_errors += 1
                self._ratelog.log(logging.ERROR, "internal", "error handling a SWIM datagram", exc_info=True)
            handled += 1
            if handled % YIELD_EVERY == 0:
                # A receive that finds a datagram waiting does not yield: without this, a backlog
                # starves the node's other tasks (its SWIM ticks run late and suspect others).
                await anyio.lowlevel.checkpoint()

    def handle_datagram(self, data: bytes, now: float) -> None:
        """One datagram in: validate, feed SWIM, act; a bad one is counted and logged (rate-limited)."""
        stats = self.swim.stats
        refused = stats.new_members_rate_limited + stats.new_members_over_limit
        try:
            body = json.loads(data)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            if body.get("c") != self._cluster:
                raise ValueError(f"datagram of cluster {str(body.get('c'))[:80]!r}")
            sender = id_field(body.get("f"), "sender id")
            actions = self.swim.receive(sender, body.get("m"), now)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSON errors included
            self.bad_datagrams += 1
            self._ratelog.warning("bad_datagram", "dropping a SWIM datagram: %s", str(exc)[:200])
            return
        self._apply(actions)
        if stats.new_members_rate_limited + stats.new_members_over_limit > refused:
            self._ratelog.warning(
                "new_members",
                "not taking in new members from gossip: %d over the rate limit, %d over max_members so far",
                stats.new_members_rate_limited,
                stats.new_members_over_limit,
            )

    def statistics(self) -> dict[str, int]:
        """Counters for the router's ``statistics()``: datagrams dropped, what SWIM refused."""
        return {
            "swim_bad_datagrams": self.bad_datagrams,
            "swim_datagram_errors": self.datagram_errors,
            "swim_log_lines_suppressed": self._ratelog.suppressed,
            **{f"swim_{k}": v for k, v in vars(self.swim.stats).items()},
        }

    # ------------------------------------------------------------------ actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, StateChange):
                member = action.member
                if member.alive and not self.swim.confirmed(member.id):
                    continue  # heard of only through gossip: the router hears of it once it answers
                self.on_change(member)

    def _send(self, action: Send) -> None:
        endpoint = self._endpoint
        if endpoint is None or self._stopped:
            return
        try:
            message = {"c": self._cluster, "f": self.swim.local.id, "m": action.message}
            data = json.dumps(message, separators=(",", ":")).encode()
            if len(data) > MAX_DATAGRAM:
                self._ratelog.warning(
                    "too_large", "SWIM message to %s too large (%d bytes): not sent", action.to, len(data)
                )
                return
            address = self._addresses.get(action.address)
            if address is None:
                if len(self._addresses) >= 4096:
                    self._addresses.clear()
                address = self._addresses[action.address] = Address.parse(action.address)
            endpoint.send(data, address)
        except ValueError as exc:
            log.debug("SWIM datagram to %s not sent: %s", action.to, exc)
        except Exception:  # e.g. a transport's bug: lose this datagram, not the node
            self.datagram_errors += 1
            self._ratelog.log(logging.ERROR, "send", "sending a SWIM datagram failed", exc_info=True)
