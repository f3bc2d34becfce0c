"""What a router's decision machine asks its host to do: a small, closed set of typed actions.

A :class:`~pydevts.routing.machine.RouterMachine` never touches a socket or a
clock. Each of its inputs returns a list of these, which the host (the
:class:`~pydevts.routing.host.LinkHost` on real links, or the simulator in
:mod:`pydevts.testing`) carries out in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..address import Address
from ..members import Member, MemberState

__all__ = [
    "Action",
    "CloseLink",
    "Connect",
    "Control",
    "Deliver",
    "Dropped",
    "Send",
    "SendDatagram",
    "SetMemberState",
    "UpdateMember",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` (a core frame, or a router frame carrying one) on the link to ``peer``.

    Returned from :meth:`RouterMachine.send` / ``broadcast`` it waits for room
    on the link (backpressure reaches the caller); from ``receive`` it is a
    relay: queued at once if the link has room, else it waits up to the
    machine's ``relay_timeout`` and is then dropped (counted, logged,
    reported). From any other input it is queued at once, like ``Control``.
    ``origin`` and ``carried``: for a relay, whose core frame it carries (plugins
    and traces see relays through them).
    """

    peer: str
    frame: bytes
    origin: str = ""
    carried: bytes | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """Queue the small router frame ``frame`` on the link to ``peer`` now; never waits.

    Lost, and logged at DEBUG, if there is no link to ``peer`` or it is closing.
    """

    peer: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``origin``'s core frame ``frame`` to the node (per origin, in the order given)."""

    origin: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a link to ``member_id`` at ``address``.

    The host answers with ``link_up`` or ``connect_failed``. A link that
    came up to another node than expected is that node's ``link_up``, after
    ``connect_failed(refused=False)`` for ``member_id``. A ``Connect`` for a
    member being dialled, or one that has a link, is ignored (no answer).
    """

    member_id: str
    address: str


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Stop using the link to ``peer`` for good: no more sends, no redial.

    ``linger``: the peer is closing it itself (it left, and may still be
    sending its last frames): keep reading until it does, for at most twice
    ``leave_timeout``. Without it the link is closed at once. The machine
    has already treated the link as gone; no ``link_down`` follows.
    """

    peer: str
    reason: str
    linger: bool = False


@dataclass(frozen=True, slots=True)
class UpdateMember:
    """Record ``member`` in the node's view (new, changed, or back): the node raises the lifecycle events."""

    member: Member


@dataclass(frozen=True, slots=True)
class SetMemberState:
    """Mark ``member_id`` left, failed or suspect; requests pending to it fail if it is gone."""

    member_id: str
    state: MemberState


@dataclass(frozen=True, slots=True)
class Dropped:
    """``origin``'s core ``frame`` was dropped here for ``reason`` (hop limit, no route, ...)."""

    origin: str
    frame: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``data`` as one datagram to ``address`` on the node's datagram channel (may be lost)."""

    address: Address
    data: bytes


Action = (
    Send | Control | Deliver | Connect | CloseLink | UpdateMember | SetMemberState | Dropped | SendDatagram
)
