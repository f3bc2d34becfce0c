"""A CPU hog: one busy-looping process pinned to core 0, which stops by itself after a while."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HOG_CODE = """\
import json, os, sys, time
try:
    os.sched_setaffinity(0, {0})
except (AttributeError, OSError):
    pass
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += 1
cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
print(json.dumps({"cpu_s": time.process_time(), "cores": cores, "loops": n}), flush=True)
"""


class Hog:
    """The hog process; :meth:`wait` returns what it reports when it ends."""

    def __init__(self, seconds: float, python: str) -> None:
        self.seconds = seconds
        self.proc = subprocess.Popen(
            [python, "-c", HOG_CODE, str(seconds)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )

    def wait(self, extra: float = 10.0) -> dict[str, Any]:
        """Wait (at most ``seconds + extra``) for the hog to end; its report (``{}`` if none)."""
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + extra)
        except subprocess.TimeoutExpired:
            return {}
        try:
            report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass


@contextmanager
def cpu_hog(seconds: float, python: str = sys.executable) -> Iterator[Hog]:
    """Run the hog for at most ``seconds``; it is killed when the block ends, whatever happened."""
    hog = Hog(seconds, python)
    try:
        yield hog
    finally:
        hog.kill()
