"""Which links a hop node opens on its own, and when it retries (sans-IO).

- A member reachable through others is connected to while this node has
  opened fewer than ``max_neighbours`` links, in an order that differs per
  node (a hash of both ids), so links spread instead of piling on one node.
  Of each pair the smaller id connects first; the larger waits
  ``connect_delay``, in case the smaller cannot reach it.
- A neighbour whose link went down is retried, whatever the count, until it
  is reachable again or purged: that is how a lost bridge comes back.
- A node left with no link at all (its only neighbours crashed) tries the
  members it knows of, reachable or not, within ``max_neighbours``: nobody
  else would (to them it is unreachable, and they never linked to it).
- A failed attempt is retried after ``connect_backoff`` seconds, doubling up
  to ``max_connect_backoff``.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .actions import Connect, HopConfig
from .wire import Advert

__all__ = ["Dialer"]


@dataclass(slots=True)
class _Attempt:
    next_try: float
    delay: float  # wait after the next failure
    in_flight: bool = False
    lost: bool = False  # a former neighbour: retried even over max_neighbours


class Dialer:
    def __init__(self, local_id: str, config: HopConfig) -> None:
        self.local_id = local_id
        self.config = config
        self._attempts: dict[str, _Attempt] = {}

    def lost(self, nid: str, now: float) -> None:
        """The link to ``nid`` went down: try to get it back."""
        delay = self.config.connect_backoff
        self._attempts[nid] = _Attempt(
            now + delay, min(delay * 2, self.config.max_connect_backoff), lost=True
        )

    def failed(self, nid: str, now: float) -> None:
        attempt = self._attempts.get(nid)
        if attempt is not None:
            attempt.in_flight = False
            attempt.next_try = now + attempt.delay
            attempt.delay = min(attempt.delay * 2, self.config.max_connect_backoff)

    def forget(self, nid: str) -> None:
        """``nid`` is linked, left or purged."""
        self._attempts.pop(nid, None)

    def due(
        self, now: float, adverts: Mapping[str, Advert], links: Collection[str], reachable: Collection[str]
    ) -> list[Connect]:
        cfg = self.config
        if cfg.max_neighbours == 0:
            return []
        free = cfg.max_neighbours - len(links) - sum(a.in_flight for a in self._attempts.values())
        isolated = not links
        connects: list[Connect] = []
        for nid in sorted(adverts, key=lambda n: zlib.crc32(f"{self.local_id}|{n}".encode())):
            adv = adverts[nid]
            if nid == self.local_id or nid in links or adv.left:
                continue
            attempt = self._attempts.get(nid)
            if attempt is None:
                wait = 0.0 if self.local_id < nid else cfg.connect_delay
                attempt = self._attempts[nid] = _Attempt(now + wait, cfg.connect_backoff)
            if attempt.in_flight or attempt.next_try > now:
                continue
            if nid in reachable or (isolated and not attempt.lost):  # only while we have room
                if free <= 0:
                    continue
                free -= 1
            elif not attempt.lost:  # unreachable: only the nodes that lost their link to it retry
                continue
            attempt.in_flight = True
            connects.append(Connect(nid, adv.address))
        return connects
