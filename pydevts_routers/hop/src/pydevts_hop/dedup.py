"""Exactly-once filter for broadcasts: one sliding window per origin (sans-IO).

Every origin numbers its broadcasts ``1, 2, 3 ...`` within one run (its
*incarnation*, the start time in ms, which grows across restarts). Instead of
a set of recently seen message ids that expires by time — whose memory grows
with the message rate and which forgets, and then re-delivers, a copy that
arrives after the expiry — each node keeps, per origin, the highest sequence
number seen and a bitmap of the ``window`` numbers below it (the anti-replay
window of IPsec and DTLS):

- newer than the highest: delivered, the window slides;
- inside the window: delivered unless its bit is set (then: duplicate);
- older than the window, or from an older incarnation: never delivered (it
  may have been delivered before and forgotten), counted as ``too_old``.

So a handler never sees a broadcast twice, whatever the topology and however
long a copy wanders; the price is that a broadcast overtaken by more than
``window`` later ones from the same origin is dropped (and counted). That
only happens while routes change, when copies take paths of different
lengths. Memory is bounded by ``origins x (window / 8 bytes + ~150 bytes)``:
4096 bits give 512 bytes per origin, 0.5 MB for 1,000 nodes. An origin's
window is forgotten when its advert is purged (it has been unreachable or
left for ``purge_after`` seconds, far longer than any copy can survive: every
copy also carries a hop limit and links are FIFO).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Dedup", "Verdict"]


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"


@dataclass(slots=True)
class _Window:
    incarnation: int
    highest: int
    bits: int  # bit i set: highest - i has been seen


class Dedup:
    """Per-origin sliding windows of ``window`` sequence numbers."""

    def __init__(self, window: int = 4096) -> None:
        if window < 1:
            raise ValueError(f"the de-duplication window must hold at least 1 message, got {window}")
        self.window = window
        self._mask = (1 << window) - 1
        self._origins: dict[str, _Window] = {}

    def __len__(self) -> int:
        return len(self._origins)

    def __contains__(self, origin: object) -> bool:
        return origin in self._origins

    def peek(self, origin: str, incarnation: int, seq: int) -> Verdict:
        """What :meth:`check` would answer, without recording anything."""
        w = self._origins.get(origin)
        if w is None or incarnation > w.incarnation:
            return Verdict.NEW
        if incarnation < w.incarnation:
            return Verdict.TOO_OLD
        if seq > w.highest:
            return Verdict.NEW
        if w.highest - seq >= self.window:
            return Verdict.TOO_OLD
        return Verdict.DUPLICATE if w.bits >> (w.highest - seq) & 1 else Verdict.NEW

    def check(self, origin: str, incarnation: int, seq: int) -> Verdict:
        """Record ``(origin, incarnation, seq)``; say whether it is new."""
        verdict = self.peek(origin, incarnation, seq)
        if verdict is not Verdict.NEW:
            return verdict
        w = self._origins.get(origin)
        if w is None or incarnation > w.incarnation:
            self._origins[origin] = _Window(incarnation, seq, 1)
        elif seq - w.highest >= self.window:
            w.bits, w.highest = 1, seq
        elif seq > w.highest:
            w.bits = ((w.bits << (seq - w.highest)) | 1) & self._mask
            w.highest = seq
        else:
            w.bits |= 1 << (w.highest - seq)
        return Verdict.NEW

    def forget(self, origin: str) -> None:
        self._origins.pop(origin, None)
