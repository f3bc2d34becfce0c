"""A simulated node: its application layer (events, handlers, records) over its current host.

The application sends *events*: ``wire.encode_event(name, payload)`` where
the payload is the JSON text of the value given (so payloads are JSON values:
dicts, lists, strings, numbers, booleans, ``None``; a tuple arrives as a
list), with two headers, ``sim-from`` (the author's id) and ``sim-seq`` (its
count of events sent), that the checks use to find duplicates, losses and
reordering. A :class:`SimNode` outlives restarts: its records run on, and
:attr:`SimNode.host` is the current incarnation's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ...errors import UnknownNodeError
from ...members import Member, MemberEvent
from ...routing.actions import Action
from ...routing.machine import RouterMachine
from ...wire.messages import EVENT, decode_message_or_none, encode_event
from .clock import SimulationError
from .host import VirtualHost
from .network import Network
from .records import Delivery, DroppedFrame, Fault, Sent

__all__ = ["Handler", "SimNode"]

#: ``handler(node, sender, payload)``: runs when ``node`` is handed an event of its name
#: (what it returns is ignored).
Handler = Callable[["SimNode", str, Any], object]


class SimNode:
    """One node id of a :class:`~.simulation.Simulation` (across its restarts).

    Records: :attr:`deliveries` (every event handed to the application, in
    order), :attr:`member_events` (``(time, MemberEvent)`` of its member
    view), :attr:`dropped` (its router's ``Dropped`` actions), :attr:`frames`
    (core frames that were not simulator events: ``(time, origin, frame)``).
    """

    def __init__(
        self,
        net: Network,
        node_id: str,
        address: str,
        tags: Mapping[str, str],
        factory: Callable[[], RouterMachine],
    ) -> None:
        self.id = node_id
        self.address = address
        self.tags: dict[str, str] = dict(tags)
        self.factory = factory
        self.deliveries: list[Delivery] = []
        self.member_events: list[tuple[float, MemberEvent]] = []
        self.dropped: list[DroppedFrame] = []
        self.frames: list[tuple[float, str, bytes]] = []
        self.incarnation = 0
        #: The addresses this incarnation joined through (what a merge round probes).
        self.seeds: list[str] = []
        self.host: VirtualHost | None = None
        self._net = net
        self._handlers: dict[str, list[Handler]] = {}
        self._taps: list[Callable[[str, bytes], object]] = []
        self._seq = 0

    def __repr__(self) -> str:
        return f"<SimNode {self.id} {self.state}>"

    # ------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.host is not None and self.host.current

    @property
    def state(self) -> str:
        """``running``, or ``down`` (crashed or left)."""
        return "running" if self.running else "down"

    @property
    def machine(self) -> RouterMachine:
        """The current incarnation's router machine."""
        return self._live_host().machine

    @property
    def links(self) -> list[str]:
        """The members this node has a link to (in the order the links came up)."""
        return [] if not self.running else list(self._live_host().links)

    @property
    def members(self) -> dict[str, Member]:
        """This node's member view (itself included), id -> Member."""
        host = self.host
        return {} if host is None else {m.id: m for m in host.view}

    def alive_members(self) -> set[str]:
        """Ids of the members this node sees alive (or suspect), itself included."""
        return {m.id for m in self.members.values() if m.alive}

    def _live_host(self) -> VirtualHost:
        host = self.host
        if host is None or not host.current:
            raise SimulationError(f"node {self.id} is not running")
        return host

    def start(self) -> None:
        """A new incarnation: a fresh machine from the factory, ``start``, listening at the address."""
        self.incarnation += 1
        self.seeds = []
        member = Member(self.id, self.address, dict(self.tags), incarnation=self.incarnation)
        self.host = VirtualHost(self, self._net, self.factory(), member)
        self.host.start()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags = dict(tags)
        self._live_host().set_tags(self.tags)

    # ------------------------------------------------------------ application

    def on(self, name: str, handler: Handler) -> None:
        """Call ``handler(node, sender, payload)`` for each event ``name`` delivered here (may send)."""
        self._handlers.setdefault(name, []).append(handler)

    def broadcast(self, name: str, payload: Any = None) -> int:
        """Send event ``name`` to every other member (through the router); return its ``seq``."""
        host = self._live_host()
        frame, seq = self._event(name, payload)
        now = host.clock.now
        if host.mesh:
            for peer in [*host.links, *host.resting]:
                host.transmit(peer, frame)
        else:
            error = host.apply(host.machine.broadcast(now, frame))
            host.rearm()
            if error is not None:  # pragma: no cover - apply reports only for a dest
                raise error
        self._net.sent.append(Sent(now, self.id, seq, None, name))
        return seq

    def send(self, dest: str, name: str, payload: Any = None) -> int:
        """Send event ``name`` to ``dest``; raise :class:`UnknownNodeError` if there is no way."""
        host = self._live_host()
        frame, seq = self._event(name, payload)
        now = host.clock.now
        if host.mesh:
            if not host.transmit(dest, frame):
                raise UnknownNodeError(dest, "no link to it (full mesh)")
        else:
            actions = host.machine.send(now, dest, frame)
            error = host.apply(actions, dest=dest)
            host.rearm()
            if error is not None:
                raise error
        self._net.sent.append(Sent(now, self.id, seq, dest, name))
        return seq

    def tap(self, fn: Callable[[str, bytes], object]) -> None:
        """Call ``fn(origin, frame)`` with every core frame handed to the application, as it is
        (events or not, before they are decoded and recorded), across restarts."""
        self._taps.append(fn)

    def broadcast_frame(self, frame: bytes) -> None:
        """Broadcast a core frame as given (not a simulator event: the checks do not see it)."""
        host = self._live_host()
        if host.mesh:
            for peer in [*host.links, *host.resting]:
                host.transmit(peer, frame)
        else:
            host.apply(host.machine.broadcast(host.clock.now, frame))
            host.rearm()

    def send_frame(self, dest: str, frame: bytes) -> None:
        """Send a core frame as given to ``dest`` (not a simulator event); raise as :meth:`send`."""
        host = self._live_host()
        if host.mesh:
            if not host.transmit(dest, frame):
                raise UnknownNodeError(dest, "no link to it (full mesh)")
            return
        error = host.apply(host.machine.send(host.clock.now, dest, frame), dest=dest)
        host.rearm()
        if error is not None:
            raise error

    def apply(self, actions: list[Action]) -> None:
        """Carry out ``actions`` as if the router had returned them (e.g. for an input a test
        gave the machine directly), then re-arm its timer."""
        self._live_host().feed(actions)

    def _event(self, name: str, payload: Any) -> tuple[bytes, int]:
        self._seq += 1
        data = json.dumps(payload, separators=(",", ":")).encode()
        return encode_event(name, data, {"sim-from": self.id, "sim-seq": str(self._seq)}), self._seq

    def hand_up(self, host: VirtualHost, origin: str, frame: bytes) -> None:
        """A core frame for the application (from a neighbour, or a router's ``Deliver``)."""
        now = host.clock.now
        for fn in self._taps:
            fn(origin, frame)
        msg = decode_message_or_none(frame)
        if msg is None or msg.kind != EVENT:
            self.frames.append((now, origin, frame))
            return
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload
        seq = msg.headers.get("sim-seq", "")
        author = msg.headers.get("sim-from", "")
        self.deliveries.append(
            Delivery(now, origin, msg.name, payload, author, int(seq) if seq.isdigit() else -1)
        )
        for handler in self._handlers.get(msg.name, ()):
            self._net.app_queue.append(partial(self._run_handler, host, handler, origin, payload))

    def _run_handler(self, host: VirtualHost, handler: Handler, origin: str, payload: Any) -> None:
        if not host.current:
            return  # crashed (or left) before its handlers ran
        try:
            handler(self, origin, payload)
        except Exception as exc:
            if self._net.strict:
                raise
            self._net.faults.append(Fault(host.clock.now, self.id, "handler", exc))
