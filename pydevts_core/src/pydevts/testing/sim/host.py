"""The virtual host of one node incarnation: it plays :class:`~pydevts.routing.host.LinkHost`'s part.

It carries out a :class:`~pydevts.routing.machine.RouterMachine`'s actions on
the simulated :class:`~.network.Network` with the real host's rules (see the
machine's module docs): one link per member; a dropped link's frames wait in
its session while both ends redial with the real backoff
(:class:`pydevts.routing.dialer.Backoff`) and are sent first once it is back;
a refused redial is ``link_down(resumable=False)``; a member back under a new
incarnation is a ``link_up`` with the new record (no ``link_down``); a router
frame that ``receive`` refuses closes that link at both ends; the machine's
``next_deadline`` is the only timer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import UnknownNodeError
from ...members import Member, MemberEvent, MemberView
from ...routing.actions import (
    Action,
    CloseLink,
    Connect,
    Control,
    Deliver,
    Dropped,
    Send,
    SendDatagram,
    SetMemberState,
    UpdateMember,
)
from ...routing.dialer import Backoff
from ...routing.machine import RouterMachine
from ...wire.messages import ROUTER_KIND_MIN
from .clock import SimulationError
from .links import FIN, Link, Resting
from .network import Network, normalize
from .records import DroppedFrame, Fault, ProtocolError

if TYPE_CHECKING:
    from .node import SimNode

__all__ = ["VirtualHost"]

#: What ``receive`` may raise for a frame that does not parse (the link is closed, nothing else).
BAD_FRAME = (ValueError, KeyError, TypeError, RecursionError)
#: Timer runs at one instant before the machine is declared stuck (next_deadline() stays <= now).
MAX_TIMER_SPINS = 1000


class VirtualHost:
    """Links, sessions, timer and member view of one incarnation of a :class:`SimNode`."""

    def __init__(self, node: SimNode, net: Network, machine: RouterMachine, member: Member) -> None:
        self.node = node
        self.net = net
        self.clock = net.clock
        self.machine = machine
        self.member = member
        self.id = member.id
        self.incarnation = member.incarnation
        cls = type(machine)
        #: Full mesh: the host itself puts core messages on the links (the machine's defaults).
        self.mesh = cls.send is RouterMachine.send and cls.broadcast is RouterMachine.broadcast
        self.running = False
        #: Neighbours' own frames go through ``machine.direct`` (``relays``, or once it used ``Deliver``).
        self.outboxes = machine.relays
        self.links: dict[str, Link] = {}  # the link to each member that we send on
        self.resting: dict[str, Resting] = {}  # dropped links being redialled
        self.reading: dict[int, Link] = {}  # every link we still read: current, lingering, retired
        self.dialing: dict[str, None] = {}
        self.backoff = Backoff(machine.max_backoff)
        self.view = MemberView(member, clock=self._now)
        self._armed: float | None = None
        self._timer_token = 0
        self._spin_at = -1.0
        self._spins = 0

    def _now(self) -> float:
        return self.clock.now

    @property
    def current(self) -> bool:
        """This incarnation is running (not crashed, left, or replaced by a restart)."""
        return self.running and self.net.hosts.get(self.id) is self

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.running = True
        self.net.hosts[self.id] = self
        address = normalize(self.member.address)
        if address is not None:
            self.net.listening[address] = self.id
        self.feed(self.machine.start(self.clock.now, self.member, self.net.cluster))

    def join(self, address: str, delay: float = 0.0) -> None:
        """Dial an entry node (like joining through its cluster port); retry with backoff until linked."""

        def done(outcome: str, peer: str | None) -> None:
            if outcome != "up" and self.current:
                wait = min(max(delay * 2, 0.05), self.machine.max_backoff)
                self.clock.after(wait, self.join, address, wait)

        if self.current:
            self.net.dial(self, address, None, done)

    def leave(self) -> None:
        """Graceful: the machine says goodbye, then every link is closed after what is queued on it."""
        self.feed(self.machine.leave(self.clock.now))
        self._stop()
        for link in self.reading.values():
            if not link.dead:
                self.net.push(link.pipes[self.id], FIN)
        self.reading.clear()

    def crash(self, reset: bool) -> None:
        """No goodbye: the links go silent; with ``reset`` the peers' ends break after ``reset_after``."""
        links = list(self.reading.values())
        self._stop()
        self.reading.clear()
        if reset:
            for link in links:
                self.clock.after(self.net.reset_after, self.net.reset, link, link.other(self.id))

    def _stop(self) -> None:
        self.running = False
        self._timer_token += 1
        address = normalize(self.member.address)
        if address is not None and self.net.listening.get(address) == self.id:
            del self.net.listening[address]
        for rest in self.resting.values():
            self.net.counts["undelivered"] += len(rest.pending)
        self.links.clear()
        self.resting.clear()
        self.dialing.clear()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.member = replace(self.member, tags=dict(tags))
        self.view.set_local(self.member)
        self.feed(self.machine.set_tags(self.clock.now, dict(tags)))

    # ------------------------------------------------------------ actions

    def feed(self, actions: list[Action]) -> None:
        """Carry out what an input returned, then re-arm the timer."""
        if actions:
            self.apply(actions)
        self.rearm()

    def apply(self, actions: list[Action], dest: str | None = None) -> UnknownNodeError | None:
        """Carry out ``actions`` in order; for a send to ``dest``, the error a missing link makes."""
        error: UnknownNodeError | None = None
        for action in actions:
            if isinstance(action, (Send, Control)):
                if not self.transmit(action.peer, action.frame):
                    self.net.counts["frames_lost"] += 1
                    if dest is not None and isinstance(action, Send) and error is None:
                        error = UnknownNodeError(dest, f"no link to {action.peer}")
            elif isinstance(action, Deliver):
                self.outboxes = True
                self.node.hand_up(self, action.origin, action.frame)
            elif isinstance(action, UpdateMember):
                if action.member.id != self.id:
                    self._record(self.view.upsert(action.member))
            elif isinstance(action, SetMemberState):
                self._record(self.view.set_state(action.member_id, action.state))
            elif isinstance(action, Connect):
                self.connect(action.member_id, action.address)
            elif isinstance(action, CloseLink):
                self.close(action)
            elif isinstance(action, Dropped):
                self.node.dropped.append(
                    DroppedFrame(self.clock.now, self.id, action.origin, action.frame, action.reason)
                )
            elif isinstance(action, SendDatagram):
                if self.machine.uses_datagrams and self.running:
                    self.net.datagram(self.id, action.address, action.data)
            else:
                raise SimulationError(f"{self.id}: the router returned {action!r}, which is not an action")
        return error

    def _record(self, event: MemberEvent | None) -> None:
        if event is not None:
            self.node.member_events.append((self.clock.now, event))

    def transmit(self, peer: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer``: on its link, or in its session while redialling."""
        link = self.links.get(peer)
        if link is not None:
            self.net.push(link.pipes[self.id], frame)
            return True
        rest = self.resting.get(peer)
        if rest is not None:
            rest.pending.append(frame)
            return True
        return False

    def connect(self, member_id: str, address: str) -> None:
        if member_id in self.links or member_id in self.dialing or not self.running:
            return
        self.dialing[member_id] = None

        def done(outcome: str, peer: str | None) -> None:
            if not self.current:
                return
            self.dialing.pop(member_id, None)
            if outcome == "up" and peer == member_id:
                return  # link_up was the answer
            refused = outcome == "refused"
            self.feed(self.machine.connect_failed(self.clock.now, member_id, refused=refused))

        target = normalize(address)
        if target is None:  # the real dialler: a ValueError, not refused
            self.clock.after(0.0, done, "timeout", None)
        else:
            self.net.dial(self, target, None, done)

    def close(self, action: CloseLink) -> None:
        rest = self.resting.pop(action.peer, None)  # no redial
        if rest is not None:
            self.net.counts["undelivered"] += len(rest.pending)
        link = self.links.pop(action.peer, None)
        if link is None:
            return
        if action.linger:
            self.clock.after(2 * self.machine.leave_timeout, self._hang_up, link)
        else:
            self._hang_up(link)

    def _hang_up(self, link: Link) -> None:
        """Stop reading ``link`` and close our end (the peer sees it after what we sent)."""
        if self.reading.pop(link.gen, None) is not None and self.running and not link.dead:
            self.net.push(link.pipes[self.id], FIN)

    # ------------------------------------------------------------ links

    def adopt(self, link: Link) -> None:
        """A link's handshake succeeded (dialled, accepted, or redialled)."""
        peer = link.other(self.id)
        now = self.clock.now
        self.reading[link.gen] = link
        old = self.links.pop(peer, None)
        rest = self.resting.pop(peer, None)
        incarnation = link.incarnations[peer]
        if old is not None and old.incarnations[peer] == incarnation:
            # The same member dialled again while our end of the old link was still open (it had
            # closed its own): the new one takes over; the machine sees one link throughout.
            self.links[peer] = link
            if not old.dead:
                self.net.push(old.pipes[self.id], FIN)
            return
        self.backoff.link_up(peer, now)
        member = self.net.hosts[peer].member
        if old is not None or (rest is not None and rest.incarnation != incarnation):
            # The member restarted under its id: the old link (and its session) is of no use.
            # No link_down: link_up brings the new incarnation (the machine compares them).
            if old is not None:
                self.reading.pop(old.gen, None)
            if rest is not None:
                self.net.counts["undelivered"] += len(rest.pending)
            rest = None
        self.links[peer] = link
        if rest is not None:  # resumed: what waited in the session goes first
            for frame in rest.pending:
                self.net.push(link.pipes[self.id], frame)
        self.feed(self.machine.link_up(now, member))

    def dropped(self, link: Link, unsent: list[bytes]) -> None:
        """``link`` broke without a goodbye: keep the session and redial."""
        peer = link.other(self.id)
        self.reading.pop(link.gen, None)
        if self.links.get(peer) is not link:
            self.net.counts["undelivered"] += len(unsent)
            return
        del self.links[peer]
        address = normalize(self.net.hosts[peer].member.address) if peer in self.net.hosts else None
        rest = Resting(address or "", link.incarnations[peer], unsent)
        self.resting[peer] = rest
        now = self.clock.now
        self.feed(self.machine.link_down(now, peer, resumable=True))
        if self.resting.get(peer) is rest:  # the machine did not give up on it at once
            delay = self.backoff.first_delay(peer, now)
            self.clock.after(delay, self._redial, peer, rest, delay)

    def _wants(self, peer: str, rest: Resting) -> bool:
        return self.current and self.resting.get(peer) is rest

    def _redial(self, peer: str, rest: Resting, delay: float) -> None:
        if not self._wants(peer, rest):
            return

        def done(outcome: str, who: str | None) -> None:
            if outcome == "up" or not self._wants(peer, rest):
                return  # adopt() resumed the session (or found a new incarnation)
            if outcome == "refused":  # nobody listens there any more: gone, not just cut off
                del self.resting[peer]
                self.net.counts["undelivered"] += len(rest.pending)
                self.feed(self.machine.link_down(self.clock.now, peer, resumable=False))
                return
            wait = self.backoff.after_failure(delay)
            self.clock.after(wait, self._redial, peer, rest, wait)

        self.net.dial(self, rest.address, peer, done)

    # ------------------------------------------------------------ what arrives

    def on_frame(self, link: Link, peer: str, frame: bytes) -> None:
        machine, now = self.machine, self.clock.now
        if machine.hears:
            machine.heard(now, peer)
        if frame and frame[0] < ROUTER_KIND_MIN:
            if self.outboxes:  # the machine keeps one order per origin: it may hold the frame back
                for ready in machine.direct(now, peer, [frame]):
                    self.node.hand_up(self, peer, ready)
            else:
                self.node.hand_up(self, peer, frame)
        else:
            try:
                actions = machine.receive(now, peer, frame)
            except BAD_FRAME as exc:
                self._protocol_error(link, peer, exc)
                return
            if actions:
                self.apply(actions)
        self.rearm()

    def _protocol_error(self, link: Link, peer: str, exc: BaseException) -> None:
        now = self.clock.now
        self.net.protocol_errors.append(ProtocolError(now, self.id, peer, f"{type(exc).__name__}: {exc}"))
        self._hang_up(link)
        if self.links.get(peer) is link:
            del self.links[peer]
            self.feed(self.machine.link_down(now, peer, resumable=False))

    def on_fin(self, link: Link) -> None:
        """The peer closed the link (a goodbye): gone for good, unless we had let go of it already."""
        peer = link.other(self.id)
        self.reading.pop(link.gen, None)
        if self.links.get(peer) is link:
            del self.links[peer]
            self.feed(self.machine.link_down(self.clock.now, peer, resumable=False))

    def on_datagram(self, data: bytes) -> None:
        if not self.current:
            return
        try:
            actions = self.machine.datagram(self.clock.now, data)
        except Exception as exc:  # the real host: a bad datagram costs only itself
            self.fault("datagram", exc)
            return
        self.feed(actions)

    def fault(self, where: str, exc: BaseException) -> None:
        self.net.faults.append(Fault(self.clock.now, self.id, where, exc))
        if self.net.strict:
            raise SimulationError(f"{self.id}: {where} raised {exc!r} (strict mode)") from exc

    # ------------------------------------------------------------ time

    def rearm(self) -> None:
        """Schedule ``timer`` at the machine's ``next_deadline`` (only the latest counts)."""
        deadline = self.machine.next_deadline()
        if deadline == self._armed:
            return
        self._armed = deadline
        self._timer_token += 1
        if deadline is not None:
            self.clock.at(deadline, self._on_timer, self._timer_token)

    def _on_timer(self, token: int) -> None:
        if token != self._timer_token or not self.running:
            return
        self._armed = None
        now = self.clock.now
        deadline = self.machine.next_deadline()
        if deadline is None or deadline > now:
            self.rearm()
            return
        if now == self._spin_at:
            self._spins += 1
            if self._spins > MAX_TIMER_SPINS:
                raise SimulationError(
                    f"{self.id}: timer() ran {MAX_TIMER_SPINS} times at t={now:g} and "
                    f"next_deadline() is still {deadline:g}: the router never moves its deadline on"
                )
        else:
            self._spin_at, self._spins = now, 0
        try:
            actions = self.machine.timer(now)
        except Exception as exc:  # the real host: a bug costs this timer, never the node
            self.fault("timer", exc)
            actions = []
        self.feed(actions)
