"""The router API: a router is a sans-IO decision machine; core owns the links.

A router subclasses :class:`RouterMachine` and overrides the inputs it cares
about. Each input takes ``now`` (seconds on the host's clock: ``anyio``'s on
real links, a virtual one in the simulator) and returns a list of
:mod:`~pydevts.routing.actions`. The machine never does IO and never reads a
clock; everything it does is in its return values, so it can be run on real
sockets (:class:`~pydevts.routing.host.LinkHost`) and in the deterministic
simulator (:mod:`pydevts.testing`) alike, and tested without either.

What the host does for every router, so that no router repeats it:

* the link table: one link per member, adopted after the handshake; a link
  of another role (a client) is not the router's business;
* two links to one member (both dialled at once): one is kept
  (:func:`~pydevts.wire.session.keeps`, the same choice at both ends), the other
  is retired after what was queued on it is sent; the machine sees one link;
* a member restarted under its id (a new process): its old link is
  closed and ``link_up`` brings a record with the new ``incarnation``
  (no ``link_down`` comes first: compare incarnations to tell);
* frames from a link: core frames (kinds below ``0x40``) go to the node as
  sent by that neighbour; router frames go to :meth:`RouterMachine.receive`;
  requests' *tails* are run;
* ``Connect`` actions: dialling, and reconnecting with bounded exponential
  backoff after a link drops (its session keeps what is sent meanwhile,
  see :mod:`pydevts.wire.session`) until a new link comes, the address refuses
  (``link_down(resumable=False)``) or the machine gives up (``CloseLink``);
* timers: the host sleeps until :meth:`RouterMachine.next_deadline`, then
  calls :meth:`RouterMachine.timer`; nothing polls;
* a datagram channel (for failure detectors) when ``uses_datagrams`` is set;
* backpressure, relay timeouts, leaving (flush, then close), counters.

A *full mesh* router (every member one link away) need not override
:meth:`send` and :meth:`broadcast`: by default a core message goes straight
on the link to its destination, and a broadcast on every link. A router that
relays (multi-hop) overrides both, returns ``Send`` and ``Deliver`` actions,
and sets ``relays = True`` so that the host hands frames to the node in one
order per origin, whichever link they came on.

A router that brings its own IO (say, a message broker with no direct links)
does not use this class: it implements :class:`pydevts.protocols.Router`
directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..errors import UnknownNodeError
from ..members import Member
from .actions import Action

__all__ = ["NO_ACTIONS", "RouterMachine"]

#: What an input that does nothing returns (do not mutate it).
NO_ACTIONS: list[Action] = []


class RouterMachine:
    """Base class of routers that decide and let core do the IO (see the module docs).

    Subclasses set :attr:`name` (the name users choose it by, sent in the
    HELLO: a member running another router is refused) and override the
    inputs they need; the defaults do nothing, except :meth:`send` and
    :meth:`broadcast`, which are the full-mesh delivery described above.
    """

    #: The router's registered name.
    name: ClassVar[str] = ""
    #: The host opens a datagram channel beside the listener and feeds :meth:`datagram`.
    uses_datagrams: ClassVar[bool] = False
    #: The machine hands the node other origins' frames (``Deliver``); the host then keeps
    #: one order per origin across links, and passes each neighbour's own frames through :meth:`direct`.
    relays: ClassVar[bool] = False
    #: The host calls :meth:`heard` for each batch of frames a link brings (silence detection).
    hears: ClassVar[bool] = False

    #: Seconds for the goodbyes: to flush the links when this node leaves, to let a duplicate
    #: link drain before it is closed, and (twice it) to read a left member's last frames.
    leave_timeout: float = 2.0
    #: Seconds a relayed frame may wait for room on a full link before it is dropped.
    relay_timeout: float = 2.0
    #: The longest wait between two reconnection attempts, in seconds.
    max_backoff: float = 2.0

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        """The node starts (before any link): ``local`` is its own record, ``cluster`` the cluster's name."""
        return NO_ACTIONS

    def leave(self, now: float) -> list[Action]:
        """The node is leaving: say goodbye (``Control`` frames, datagrams); links are flushed next."""
        return NO_ACTIONS

    def set_tags(self, now: float, tags: Mapping[str, str]) -> list[Action]:
        """This node's tags changed: tell the others."""
        return NO_ACTIONS

    # ------------------------------------------------------------ links

    def link_up(self, now: float, peer: Member) -> list[Action]:
        """A link to ``peer`` is up (a new member, or one whose link came back); it may be sent on."""
        return NO_ACTIONS

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        """The link to ``peer_id`` is gone.

        ``resumable``: it dropped (no goodbye) and the host is reconnecting;
        sends to the peer wait in its session meanwhile, and a later
        ``link_up`` means nothing was lost. Otherwise it is gone for good
        (closed by the peer, or reconnecting was refused): another link needs a ``Connect``.
        """
        return NO_ACTIONS

    def connect_failed(self, now: float, member_id: str, *, refused: bool) -> list[Action]:
        """A ``Connect`` did not bring a link to ``member_id``; ``refused``: nothing listens there."""
        return NO_ACTIONS

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        """A router frame (kind ``0x40`` or above) from the neighbour ``peer_id``.

        Raise ``ValueError`` (``KeyError``, ``IndexError``, ``TypeError``,
        ``UnicodeDecodeError`` and ``RecursionError`` are taken the same way)
        for a frame that does not parse: the host closes that link as a
        protocol error naming the peer and the error, does not redial it, and
        keeps serving everyone else. Any other exception is taken for a bug
        in the router: logged with its traceback, and the link is closed too.
        """
        raise ValueError(f"unknown router frame kind 0x{frame[0]:02x}" if frame else "empty router frame")

    def heard(self, now: float, peer_id: str) -> None:
        """(``hears``) ``peer_id``'s link brought frames, or is still handing them to the node."""

    def direct(self, now: float, peer_id: str, frames: list[bytes]) -> list[bytes]:
        """(``relays``) ``peer_id``'s own core frames, about to go up: return those to hand up now.

        A router that keeps one order per origin across paths may hold some
        back (behind a broadcast of the same origin still on its way through
        another neighbour) and hand them up later as ``Deliver`` actions.
        """
        return frames

    def datagram(self, now: float, data: bytes) -> list[Action]:
        """(``uses_datagrams``) one datagram; a bad one must cost only itself (count it, return nothing)."""
        return NO_ACTIONS

    # ------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When :meth:`timer` should next run (host clock), or ``None`` for never. Keep it cheap."""
        return None

    def timer(self, now: float) -> list[Action]:
        """``next_deadline()`` has passed."""
        return NO_ACTIONS

    # ------------------------------------------------------------ delivery

    def send(self, now: float, dest: str, frame: bytes) -> list[Action]:
        """Route this node's core ``frame`` to ``dest``; raise :class:`UnknownNodeError` if there is no way.

        Full mesh by default: the host sends it on the link to ``dest`` itself
        (this method is not called unless overridden).
        """
        raise UnknownNodeError(dest, "this router does not route")  # pragma: no cover - see the host

    def broadcast(self, now: float, frame: bytes) -> list[Action]:
        """Route this node's core ``frame`` to every other live member, once each.

        Full mesh by default: the host sends it on every link (this method is
        not called unless overridden).
        """
        return NO_ACTIONS  # pragma: no cover - see the host

    # ------------------------------------------------------------ bookkeeping

    def forget(self, member_id: str) -> bool:
        """The node reaps ``member_id`` (down for ``reap_after``): drop what is kept about it.

        Return False to keep it (the router has news of it: it is coming back).
        """
        return True

    def statistics(self) -> Mapping[str, int]:
        """Counters for ``Node.statistics()["router"]`` (the host adds its link counters)."""
        return {}
