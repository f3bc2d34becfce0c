"""Child processes for the driver: start, read protocol lines with deadlines, always stop.

A :class:`Peer` reads its child's stdout in a thread into a queue, so the driver
can wait for a line with a timeout. Stderr goes to a temporary file whose tail
is shown when something goes wrong. :func:`spawn` guarantees the child is
terminated (then killed) when the block ends, whatever happened.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

MAX_LINES = 1_000_000  # bound on lines read while waiting for one
STOP_GRACE = 3.0


class PeerError(Exception):
    """A child process did not do what was expected in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Peer:
    """One child process and its stdout lines."""

    def __init__(self, name: str, argv: Sequence[str], *, merge_stderr: bool = False) -> None:
        self.name = name
        self.argv = list(argv)
        self._stderr: IO[bytes] | None = None if merge_stderr else tempfile.TemporaryFile()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"stdout of {name}", daemon=True)
        self._reader.start()
        self.output: list[str] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_line(self, match: str, timeout: float, *, anywhere: bool = False) -> str:
        """The first line that starts with (or, ``anywhere``, contains) ``match``.

        Raises PeerError if the child exits or ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        for _ in range(MAX_LINES):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)  # later waits see the end too
                self.proc.wait(timeout=STOP_GRACE)
                raise PeerError(f"{self.name} exited (rc={self.proc.returncode}) {self.stderr_tail()}")
            self.output.append(line)
            if line.find(match) >= 0 if anywhere else line.startswith(match):
                return line
        raise PeerError(f"{self.name}: no {match.strip()!r} within {timeout:.0f} s {self.stderr_tail()}")

    def message(self, kind: str, timeout: float) -> dict[str, Any]:
        """The JSON body of the next ``kind {json}`` line."""
        line = self.wait_line(kind + " ", timeout)
        data: dict[str, Any] = json.loads(line[len(kind) + 1 :])
        return data

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the child to exit by itself; its return code, or None if it is still running."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self, lines: int = 3) -> str:
        """The last few meaningful lines of stderr (or of the output, when merged), on one line."""
        if self._stderr is None:
            text = "\n".join(self.output)
        else:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        kept = [t.strip() for t in text.splitlines() if t.strip().strip("^~")]
        return ("| " + " | ".join(kept[-lines:])) if kept else ""

    def stop(self) -> None:
        """Terminate (then kill) the child if it still runs; release its pipes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_GRACE)
        self._reader.join(timeout=STOP_GRACE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()


@contextmanager
def spawn(name: str, argv: Sequence[str], *, merge_stderr: bool = False) -> Iterator[Peer]:
    """Start ``argv``; it is always stopped when the block ends."""
    peer = Peer(name, argv, merge_stderr=merge_stderr)
    try:
        yield peer
    finally:
        peer.stop()
