"""The sessions of one node, by member id (see :mod:`pydevts.wire.session`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .session import Session

if TYPE_CHECKING:
    from .link import Link

__all__ = ["MAX_IDLE_SESSIONS", "SessionTable"]

log = logging.getLogger("pydevts.session")

#: Sessions kept for members with no open link, at most (the oldest go first).
MAX_IDLE_SESSIONS = 1024


class SessionTable:
    """The sessions of one node, by member id (bounded: see :data:`MAX_IDLE_SESSIONS`)."""

    def __init__(self, high_water: int) -> None:
        self.high_water = high_water
        self.sessions: dict[str, Session] = {}
        self.undelivered = 0
        self.dropped = 0
        self._gone = {"resent": 0, "duplicates_dropped": 0}  # counts of dropped sessions
        #: How far we had read the streams of dropped sessions, by (member, incarnation):
        #: (its epoch, frames received, frames acknowledged). Bounded like idle sessions.
        self._read: dict[tuple[str, int], tuple[int, int, int]] = {}

    def get(self, peer_id: str) -> Session | None:
        return self.sessions.get(peer_id)

    def for_link(self, link: Link) -> Session:
        """The session ``link`` belongs to (a new one for a new member or a new incarnation)."""
        incarnation = link.peer.extensions.get("incarnation", 0)
        if not isinstance(incarnation, int):
            incarnation = 0
        session = self.sessions.get(link.peer_id)
        if session is not None and session.incarnation != incarnation:
            self.drop(link.peer_id, "it restarted")
            session = None
        if session is None:
            session = self.sessions[link.peer_id] = Session(link.peer_id, incarnation, self.high_water)
            position = self._read.pop((link.peer_id, incarnation), None)
            if position is not None:
                # We gave this member up (its view said left or failed) but it is the same
                # process: it may resend what it never saw acknowledged. Keep counting where we
                # were, so what was delivered is not delivered again.
                session.peer_epoch, session.received, session.acked_in = position
            self._bound()
        return session

    def drop(self, peer_id: str, reason: str) -> None:
        session = self.sessions.pop(peer_id, None)
        if session is None:
            return
        if session.peer_epoch:
            read = (session.peer_epoch, session.received, session.acked_in)
            self._read[(peer_id, session.incarnation)] = read
            while len(self._read) > MAX_IDLE_SESSIONS:
                del self._read[next(iter(self._read))]
        lost = session.drop(reason)
        self.dropped += 1
        self._gone["resent"] += session.resent
        self._gone["duplicates_dropped"] += session.duplicates
        if lost:
            self.undelivered += lost
            log.info("%d frame(s) to %s were never acknowledged (%s)", lost, peer_id, reason)

    def _bound(self) -> None:
        idle = [peer for peer, s in self.sessions.items() if not s.links]
        for peer in idle[: max(0, len(idle) - MAX_IDLE_SESSIONS)]:
            self.drop(peer, "too many members without a link")

    def statistics(self) -> dict[str, int]:
        sessions = self.sessions.values()
        return {
            "undelivered": self.undelivered,
            "resent": self._gone["resent"] + sum(s.resent for s in sessions),
            "duplicates_dropped": self._gone["duplicates_dropped"] + sum(s.duplicates for s in sessions),
            "unacknowledged": sum(len(s.buffer) for s in sessions),
        }
