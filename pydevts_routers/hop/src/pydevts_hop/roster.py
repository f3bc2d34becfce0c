"""Member records as the hop router reports them (sans-IO).

A member is *alive* while this node has a route to it, *failed* when it has
none, *left* once its advert says so. A member is reported when its record
(address, tags, incarnation, state, next hop, distance) changes; one never
reported alive is not reported failed or left. The roster also remembers
since when each member has been gone, for purging.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydevts.members import MemberState

from .actions import MemberChange
from .wire import Advert

__all__ = ["Roster"]


class Roster:
    def __init__(self, local_id: str) -> None:
        self.local_id = local_id
        self.reported: dict[str, MemberChange] = {}
        self.gone_since: dict[str, float] = {}
        self._seen: dict[str, tuple[Advert, MemberState, str | None, int | None]] = {}

    def update(
        self, now: float, adverts: Mapping[str, Advert], hops: Mapping[str, str], depth: Mapping[str, int]
    ) -> list[MemberChange]:
        """Records of ``adverts`` under the routes ``hops``/``depth``; return those that changed."""
        changes: list[MemberChange] = []
        for nid, adv in adverts.items():
            if nid == self.local_id:
                continue
            hop = hops.get(nid)
            if adv.left:
                state, distance, hop = MemberState.LEFT, None, None
            elif hop is not None:
                state, distance = MemberState.ALIVE, depth[nid]
            else:
                state, distance = MemberState.FAILED, None
            if state is MemberState.ALIVE:
                self.gone_since.pop(nid, None)
            else:
                self.gone_since.setdefault(nid, now)
            seen = self._seen.get(nid)
            if seen is not None and seen[0] is adv and seen[1:] == (state, hop, distance):
                continue  # the common case after a change elsewhere: skip building a record
            self._seen[nid] = (adv, state, hop, distance)
            previous = self.reported.get(nid)
            if previous is None and state is not MemberState.ALIVE:
                continue  # never reported alive: nothing to take back
            record = MemberChange(nid, adv.address, adv.tags, state, hop, distance, adv.incarnation)
            if record != previous:
                self.reported[nid] = record
                changes.append(record)
        return changes

    def expired(self, now: float, after: float) -> list[str]:
        """Members gone (failed, left, or never reached) for ``after`` seconds or more."""
        return [nid for nid, since in self.gone_since.items() if now - since >= after]

    def longest_gone(self) -> str | None:
        """The member gone the longest, if any (the first to make room for a newcomer)."""
        return min(self.gone_since, key=self.gone_since.__getitem__, default=None)

    def forget(self, nid: str) -> None:
        self.reported.pop(nid, None)
        self.gone_since.pop(nid, None)
        self._seen.pop(nid, None)
