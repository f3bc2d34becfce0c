"""The in-memory network: pipes, dials, link breaks and datagrams between virtual hosts.

Everything here happens through the :class:`~.clock.Clock`: a frame put on a
pipe arrives one drawn latency later (never before the frame ahead of it); a
dial takes a round trip, or ``connect_timeout`` across a partition; a frame
that reaches a partition waits at its head until :meth:`Network.heal` (a link
is TCP: a cut loses nothing unless the link breaks, see ``partition_timeout``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...address import Address
from .clock import Clock
from .conditions import Fabric
from .links import FIN, Link, Pipe
from .records import Fault, ProtocolError, Sent

if TYPE_CHECKING:
    from .host import VirtualHost

__all__ = ["DialDone", "Network", "normalize"]

#: ``done(outcome, peer_id)`` of a dial; outcome: ``up``, ``refused``, ``timeout`` or ``other``
#: (someone else listens there; with ``expect``, no link is made to it).
DialDone = Callable[[str, "str | None"], None]


def normalize(address: str) -> str | None:
    """``address`` as :class:`Address` prints it, or ``None`` if it does not parse."""
    try:
        return str(Address.parse(address))
    except ValueError:
        return None


class Network:
    """Links, pipes and listeners of one simulation (the hosts do the rest)."""

    def __init__(
        self,
        clock: Clock,
        fabric: Fabric,
        *,
        connect_timeout: float,
        reset_after: float,
        partition_timeout: float | None,
        strict: bool,
        cluster: str,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.strict = strict
        self.fabric = fabric
        self.connect_timeout = connect_timeout
        self.reset_after = reset_after
        self.partition_timeout = partition_timeout
        self.hosts: dict[str, VirtualHost] = {}  # node id -> its current incarnation's host
        self.listening: dict[str, str] = {}  # normalized address -> node id
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "frames_lost",
                "links",
                "duplicate_links",
                "link_breaks",
                "dials",
                "datagrams",
                "datagrams_lost",
                "undelivered",
            ),
            0,
        )
        self.sent: list[Sent] = []
        self.protocol_errors: list[ProtocolError] = []
        self.faults: list[Fault] = []
        #: Application handlers due (run after the event that delivered to them, at the same time).
        self.app_queue: deque[Callable[[], None]] = deque()
        self.frames = 0  # frames (and closes) put on pipes: counts["frames"]
        self._gen = 0
        self._stalled: dict[tuple[int, str], Pipe] = {}
        self._partition_epoch = 0

    # ------------------------------------------------------------ frames

    def push(self, pipe: Pipe, item: bytes | None) -> None:
        """Put a frame (or the sender's close, :data:`FIN`) on a pipe."""
        self.frames += 1
        if pipe.link.silent:
            self.counts["frames_lost"] += 1
            return
        pipe.items.append(item)
        if pipe.stalled:
            return
        clock = self.clock
        when = clock.now + self.fabric.latency(pipe.src, pipe.dst)
        if when < pipe.last:
            when = pipe.last
        pipe.last = when
        clock.seq += 1  # (Clock.at, inlined: this is the hot path)
        heapq.heappush(clock.heap, (when, clock.seq, self._arrive, (pipe, pipe.epoch)))

    def _arrive(self, pipe: Pipe, epoch: int) -> None:
        if epoch != pipe.epoch or not pipe.items:
            return
        if self.fabric.partitioned and self.fabric.cut(pipe.src, pipe.dst):
            pipe.stalled = True  # the head waits for the partition to heal; so does the rest
            pipe.epoch += 1
            self._stalled[(pipe.link.gen, pipe.src)] = pipe
            return
        self._hand(pipe, pipe.items.popleft())

    def _hand(self, pipe: Pipe, item: bytes | None) -> None:
        host = self.hosts.get(pipe.dst)
        if host is None or not host.running or pipe.link.gen not in host.reading:
            self.counts["frames_lost"] += 1
        elif item is FIN:
            host.on_fin(pipe.link)
        else:
            host.on_frame(pipe.link, pipe.src, item)

    def deliver_now(self, pipe: Pipe) -> int:
        """Hand ``pipe``'s receiver at once what is in flight on it (not what that causes)."""
        items = list(pipe.items)
        pipe.items.clear()
        pipe.epoch += 1  # void the arrivals already scheduled
        pipe.last = self.clock.now
        if pipe.stalled:
            pipe.stalled = False
            self._stalled.pop((pipe.link.gen, pipe.src), None)
        for item in items:
            self._hand(pipe, item)
        return len(items)

    def kill(self, link: Link) -> dict[str, list[bytes]]:
        """The link is gone: void its pipes; return what each end had sent that never arrived."""
        link.dead = True
        unsent: dict[str, list[bytes]] = {}
        for src, pipe in link.pipes.items():
            self._stalled.pop((link.gen, src), None)
            unsent[src] = pipe.take_frames()
        return unsent

    # ------------------------------------------------------------ partitions

    def partitioned(self) -> None:
        """A partition began: links across it break after ``partition_timeout`` (if set)."""
        self._partition_epoch += 1
        if self.partition_timeout is None:
            return
        seen: dict[int, Link] = {}
        for host in self.hosts.values():
            for link in host.links.values():
                if link.gen not in seen and self.fabric.cut(*link.pipes):
                    seen[link.gen] = link
        for link in seen.values():
            self.clock.after(self.partition_timeout, self._partition_break, link, self._partition_epoch)

    def _partition_break(self, link: Link, epoch: int) -> None:
        if epoch == self._partition_epoch and not link.dead and self.fabric.cut(*link.pipes):
            self.break_link(link)

    def healed(self) -> None:
        """The partition is over: what waited at its edge moves on, in order."""
        self._partition_epoch += 1
        stalled, self._stalled = self._stalled, {}
        for pipe in stalled.values():
            items = list(pipe.items)
            pipe.items.clear()
            pipe.stalled = False
            pipe.last = self.clock.now
            for item in items:
                self.push(pipe, item)
                self.frames -= 1  # counted when first sent

    # ------------------------------------------------------------ links

    def reset(self, link: Link, end: str) -> None:
        """Only ``end`` is told (its peer crashed): a reset."""
        self.break_link(link, only=end)

    def break_link(self, link: Link, *, only: str | None = None) -> None:
        """The link resets (no goodbye): each end still on it sees ``link_down(resumable=True)``."""
        if link.dead:
            return
        self.counts["link_breaks"] += 1
        unsent = self.kill(link)
        for end in link.pipes:
            host = self.hosts.get(end)
            if (only is None or end == only) and host is not None and host.running:
                host.dropped(link, unsent[end])

    def dial(self, host: VirtualHost, address: str, expect: str | None, done: DialDone) -> None:
        """Open a link from ``host`` to whoever listens at ``address``; call ``done`` with the outcome."""
        self.counts["dials"] += 1
        src = host.id
        target = self.listening.get(address)
        target_host = None if target is None else self.hosts.get(target)
        if target_host is None or not target_host.running or target == src:
            rtt = 2 * self.fabric.latency(src, target or src)
            self.clock.after(rtt, done, "refused", None)  # nothing listens: a reset, one round trip
        elif not self.fabric.can_dial(src, target_host.id):
            self.clock.after(self.connect_timeout, done, "timeout", None)
        elif expect is not None and target_host.id != expect:
            rtt = 2 * self.fabric.latency(src, target_host.id)
            self.clock.after(rtt, done, "other", target_host.id)
        else:
            rtt = self.fabric.latency(src, target_host.id) + self.fabric.latency(target_host.id, src)
            self.clock.after(rtt, self._handshake, host, target_host, done)

    def _handshake(self, host: VirtualHost, target: VirtualHost, done: DialDone) -> None:
        if not host.running or self.hosts.get(host.id) is not host:
            return  # the dialler crashed or left meanwhile: nobody to tell
        if not target.running or self.hosts.get(target.id) is not target:
            done("refused", None)
        elif not self.fabric.can_dial(host.id, target.id):
            self.clock.after(self.connect_timeout, done, "timeout", None)
        else:
            self.establish(host, target)
            done("up", target.id)

    def establish(self, dialler: VirtualHost, acceptor: VirtualHost) -> None:
        """A handshake succeeded: both ends adopt the link (acceptor first), or it is a duplicate."""
        current = dialler.links.get(acceptor.id)
        if current is not None and current is acceptor.links.get(dialler.id):
            # Both dialled at once: both ends keep the link opened by the smaller id
            # (pydevts.wire.session.keeps); the simulator merges the two into the one already
            # in use, so what was queued on either still arrives once and in order.
            self.counts["duplicate_links"] += 1
            if dialler.id < current.opener:
                current.opener = dialler.id
            return
        self._gen += 1
        self.counts["links"] += 1
        incarnations = {dialler.id: dialler.incarnation, acceptor.id: acceptor.incarnation}
        link = Link(self._gen, dialler.id, acceptor.id, incarnations, self.clock.now)
        acceptor.adopt(link)
        if dialler.running:  # (the acceptor's machine may have closed it at once; still adopt)
            dialler.adopt(link)

    # ------------------------------------------------------------ datagrams

    def datagram(self, src: str, address: Address, data: bytes) -> None:
        self.counts["datagrams"] += 1
        target = self.listening.get(str(address))
        host = None if target is None else self.hosts.get(target)
        if (
            host is None
            or not host.running
            or not host.machine.uses_datagrams
            or self.fabric.cut(src, host.id)
            or self.fabric.loses_datagram(src, host.id)
        ):
            self.counts["datagrams_lost"] += 1
            return
        self.clock.after(self.fabric.latency(src, host.id), host.on_datagram, data)
