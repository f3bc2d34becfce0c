"""The sans-IO bookkeeping behind :class:`~pydevts.limits.Limits`: admission and request slots.

- :class:`ConnectionGuard` admits accepted connections (totals, per address,
  handshakes in progress, clients) and says which connection to drop;
- :class:`PendingTable` is its table of handshakes in progress (also used by
  the QUIC transport for its half-open connections): when full, the oldest
  entry of the address holding the most goes, so a flood from a few
  addresses cannot keep a fresh handshake from anyone else out;
- :class:`RequestSlots` bounds the requests in flight, per node and per sender.

Everything here is re-exported by :mod:`pydevts.limits`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["ConnectionGuard", "LimitCounters", "PendingTable", "RequestSlots", "Ticket"]

# ------------------------------------------------------------------ handshakes in progress

T = TypeVar("T", bound=Hashable)


class PendingTable(Generic[T]):
    """Entries by address, oldest first, at most ``max_total`` and ``max_per_address``.

    :meth:`add` never refuses: it drops (and returns) an entry to make room —
    the address's own oldest when that address is at its cap, else, when the
    table is full, the oldest of the address holding the most. A fresh
    handshake from a quiet address is thus never the one that goes.
    """

    def __init__(self, max_total: int, max_per_address: int | None = None) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address or max_total
        self._by_address: dict[str, dict[T, None]] = {}
        self._address: dict[T, str] = {}

    def __len__(self) -> int:
        return len(self._address)

    def __contains__(self, item: object) -> bool:
        return item in self._address

    def count(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def oldest(self, address: str) -> T | None:
        own = self._by_address.get(address)
        return next(iter(own)) if own else None

    def room_for(self, address: str) -> T | None:
        """The entry to drop before one more from ``address`` fits (None: it fits)."""
        if self.count(address) >= self.max_per_address:
            return self.oldest(address)
        if len(self._address) >= self.max_total:
            return self.heaviest_oldest()
        return None

    def add(self, item: T, address: str) -> T | None:
        """Add ``item``; return the entry removed to make room for it, if any."""
        victim = self.room_for(address)
        if victim is not None:
            self.remove(victim)
        self._by_address.setdefault(address, {})[item] = None
        self._address[item] = address
        return victim

    def remove(self, item: T) -> bool:
        address = self._address.pop(item, None)
        if address is None:
            return False
        own = self._by_address[address]
        del own[item]
        if not own:
            del self._by_address[address]
        return True

    def heaviest_oldest(self) -> T | None:
        """The oldest entry of the address holding the most entries."""
        best: dict[T, None] | None = None
        for own in self._by_address.values():
            if best is None or len(own) > len(best):
                best = own
        return None if best is None else next(iter(best))


# ------------------------------------------------------------------ accepted connections


@dataclass
class LimitCounters:
    """Refusals and cuts (``node.statistics()["limits.<name>"]``)."""

    connections_refused: int = 0  # over max_connections or the per-address limit, closed at once
    handshakes_dropped: int = 0  # pending handshakes dropped to make room for newer ones
    clients_refused: int = 0  # over max_clients or max_clients_per_address, refused at the handshake
    idle_clients_closed: int = 0
    slow_consumers_cut: int = 0
    stalled_frames_closed: int = 0


@dataclass(eq=False)
class Ticket:
    """One accepted connection, from admission until it closes."""

    address: str
    role: str = "pending"  # then "member", "client", or "closed"
    drop: Callable[[], None] | None = None  # how its owner abandons the handshake (set by the owner)


class ConnectionGuard:
    """Admission of accepted connections under :class:`Limits` (sans-IO).

    ``admit`` on accept (a ticket, or None: close at once; plus the tickets
    of handshakes to drop), ``client``/``member`` when the handshake says what
    the peer is, ``release`` when the connection ends.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits.resolve()
        self.counters = LimitCounters()
        self.open = 0
        self.clients = 0
        self._clients_by_address: dict[str, int] = {}
        self.pending: PendingTable[Ticket] = PendingTable(
            self.limits.max_pending_handshakes, self.limits.max_connections_per_address
        )

    def admit(self, address: str) -> tuple[Ticket | None, list[Ticket]]:
        limits = self.limits
        pending = self.pending
        over_address = pending.count(address) + self._clients_by_address.get(address, 0) >= (
            limits.max_connections_per_address
        )
        full = self.open >= (limits.max_connections or 0) or len(pending) >= limits.max_pending_handshakes
        victim = pending.oldest(address) if over_address else pending.heaviest_oldest() if full else None
        if victim is None and (over_address or full):
            self.counters.connections_refused += 1
            return None, []
        dropped = [] if victim is None else [victim]
        if victim is not None:
            pending.remove(victim)
        ticket = Ticket(address)
        if (more := pending.add(ticket, address)) is not None:
            dropped.append(more)
        for gone in dropped:
            gone.role = "closed"
            self.open -= 1
            self.counters.handshakes_dropped += 1
        self.open += 1
        return ticket, dropped

    def client(self, ticket: Ticket) -> str | None:
        """The handshake says a client: why it is refused, or None (it now counts as a client)."""
        limits = self.limits
        here = self._clients_by_address.get(ticket.address, 0)
        if self.clients >= (limits.max_clients or 0):
            reason = f"this node serves at most {limits.max_clients} clients at once; try again later"
        elif here >= limits.max_clients_per_address:
            reason = f"this node serves at most {limits.max_clients_per_address} clients per address at once"
        else:
            self.pending.remove(ticket)
            ticket.role = "client"
            self.clients += 1
            self._clients_by_address[ticket.address] = here + 1
            return None
        self.counters.clients_refused += 1
        return reason

    def member(self, ticket: Ticket) -> None:
        if ticket.role == "pending":
            self.pending.remove(ticket)
            ticket.role = "member"

    def release(self, ticket: Ticket) -> None:
        if ticket.role == "closed":
            return
        if ticket.role == "pending":
            self.pending.remove(ticket)
        elif ticket.role == "client":
            self.clients -= 1
            left = self._clients_by_address[ticket.address] - 1
            if left:
                self._clients_by_address[ticket.address] = left
            else:
                del self._clients_by_address[ticket.address]
        ticket.role = "closed"
        self.open -= 1

    def statistics(self) -> dict[str, int]:
        counters = {f"limits.{k}": v for k, v in vars(self.counters).items()}
        counters["limits.open_connections"] = self.open
        counters["limits.open_clients"] = self.clients
        counters["limits.pending_handshakes"] = len(self.pending)
        return counters


# ------------------------------------------------------------------ requests per origin


class RequestSlots:
    """Requests in flight: at most ``max_requests`` handlers at once, ``per_origin`` per origin.

    A request holds a node-wide slot while its handler runs (:meth:`handler_done`
    gives it back) and its origin's slot until its reply is queued
    (:meth:`release`): a sender that does not read its replies holds only its
    own slots, so it can make nobody but itself wait.
    """

    def __init__(self, max_requests: int, per_origin: int) -> None:
        self.per_origin = per_origin
        self._node = anyio.Semaphore(max_requests)
        self._used: dict[str, int] = {}
        self._freed: dict[str, anyio.Event] = {}

    def in_flight(self, origin: str) -> int:
        return self._used.get(origin, 0)

    def _take(self, origin: str) -> bool:
        used = self._used.get(origin, 0)
        if used >= self.per_origin:
            return False
        self._used[origin] = used + 1
        return True

    def try_acquire(self, origin: str) -> bool:
        """Both slots now, or neither."""
        if not self._take(origin):
            return False
        try:
            self._node.acquire_nowait()
        except anyio.WouldBlock:
            self.release(origin)
            return False
        return True

    async def acquire(self, origin: str) -> None:
        """Wait for the origin's slot, then for the node's."""
        while not self._take(origin):
            event = self._freed.get(origin)
            if event is None:
                event = self._freed[origin] = anyio.Event()
            await event.wait()
        try:
            await self._node.acquire()
        except BaseException:
            self.release(origin)
            raise

    def handler_done(self) -> None:
        self._node.release()

    def release(self, origin: str) -> None:
        used = self._used[origin] - 1
        if used:
            self._used[origin] = used
        else:
            del self._used[origin]
        event = self._freed.pop(origin, None)
        if event is not None:
            event.set()
