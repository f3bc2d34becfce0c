"""Rate-limited logging, for messages that outside input can trigger once per packet.

A node that logs one warning per malformed datagram or frame lets anyone who
can reach its port fill its disk. :class:`RateLimitedLog` logs at most
``burst`` lines per ``interval`` seconds for each *key* (a fixed string naming
the kind of message, never text taken from the input) and counts the rest;
the first line logged for a key after a window in which lines were held back
is preceded by one summary line::

    (suppressed 9995 similar messages in the last 60 s: swim.bad_datagram)

Keep one instance per node (not per module), so that one node's flood does
not silence another node in the same process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimitedLog"]

MAX_KEYS = 256


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most ``burst`` lines per ``interval`` seconds per key, then a "(suppressed K similar)" line."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or not interval > 0:
            raise ValueError("burst >= 1 and interval > 0 are needed")
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        #: Lines held back since this instance was made (all keys).
        self.suppressed = 0

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` is over its budget; True if it was logged."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval:
            if window is not None and window.suppressed:
                self.logger.log(
                    level,
                    "(suppressed %d similar messages in the last %g s: %s)",
                    window.suppressed,
                    round(now - window.start),
                    key,
                )
            if window is None and len(self._windows) >= MAX_KEYS:
                del self._windows[next(iter(self._windows))]  # the oldest key
            window = self._windows[key] = _Window(now)
        if window.logged >= self.burst:
            window.suppressed += 1
            self.suppressed += 1
            return False
        window.logged += 1
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, key, msg, *args)

    def flush(self) -> None:
        """Log the summary of every key that has lines held back (e.g. when the node stops)."""
        now = self._clock()
        for key, window in self._windows.items():
            if window.suppressed:
                self.logger.warning(
                    "(suppressed %d similar messages in the last %g s: %s)",
                    window.suppressed,
                    round(now - window.start),
                    key,
                )
                window.suppressed = 0
