"""Node processes whose stdout lines become timestamped observations, read by one thread each.

A :class:`NodeProcess` turns each stdout line into an :class:`Obs` (or nothing)
with a parser given by its cluster, and appends it under the cluster's
condition variable, so the driver can wait for "every node saw X" with a
deadline. Stderr goes to a temporary file whose tail is shown when something
goes wrong. :meth:`NodeProcess.kill` always ends the child.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

MAX_LINES = 2_000_000  # bound on the lines one reader thread handles
TAIL_LINES = 200
KILL_WAIT = 5.0

# Kinds of observation.
READY = "ready"  # the node is up (pydevts: "started"; Serf: its log starts streaming)
JOIN = "join"  # the node learned that SUBJECT is alive
FAILED = "failed"  # the node marked SUBJECT failed
LEFT = "left"  # the node saw SUBJECT leave
SUSPECT = "suspect"  # the node suspects SUBJECT (Serf's memberlist logs it)
USER = "user"  # the node received user event SUBJECT
ERROR = "error"  # the node reported an error (SUBJECT: the text)


@dataclass(frozen=True, slots=True)
class Obs:
    """Something one node reported: ``kind`` about ``subject``, at wall-clock time ``t``."""

    kind: str
    subject: str
    t: float


Parser = Callable[[str, float], Obs | None]


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (also for UDP with ``udp``)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 20):
            if len(ports) == count:
                break
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(tcp)
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if udp:
                dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(dgram)
                try:
                    dgram.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    if len(ports) < count:
        raise OSError(f"found only {len(ports)} of {count} free ports")
    return ports


class NodeProcess:
    """One child process; each stdout line is parsed into an observation as it arrives."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        parse: Parser,
        cond: threading.Condition,
        *,
        stdin_pipe: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.obs: list[Obs] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.eof = False
        self._parse = parse
        self._cond = cond
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.launched = time.time()
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name=f"stdout of {name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for _ in range(MAX_LINES):
                raw = stdout.readline()
                now = time.time()  # the moment the line reached the driver
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip()
                obs = self._parse(line, now)
                with self._cond:
                    self.tail.append(line)
                    if obs is not None:
                        self.obs.append(obs)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def first(self, kind: str, subject: str | None = None, after: float = 0.0) -> float | None:
        """Time of the first observation of ``kind`` (about ``subject``) at or after ``after``.

        Call with the cluster's condition held.
        """
        for o in self.obs:
            if o.kind == kind and (subject is None or o.subject == subject) and o.t >= after:
                return o.t
        return None

    def write(self, text: str) -> None:
        """Write ``text`` to the child's stdin (it must have been started with ``stdin_pipe``)."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(text.encode())
        stdin.flush()

    def signal(self, sig: signal.Signals) -> float:
        """Send ``sig``; the wall-clock time just before it was sent."""
        now = time.time()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return now

    def describe(self) -> str:
        """Exit status and the last lines of stdout and stderr, on one line."""
        rc = self.proc.poll()
        self._stderr.seek(0)
        err = [t.strip() for t in self._stderr.read().decode(errors="replace").splitlines() if t.strip()]
        out = [t.strip() for t in list(self.tail)[-3:] if t.strip()]
        return (
            f"{self.name}: {'running' if rc is None else f'exited rc={rc}'}; "
            f"stdout tail: {' | '.join(out) or '-'}; stderr tail: {' | '.join(err[-3:]) or '-'}"
        )

    def kill(self) -> None:
        """Kill the child (also when stopped), reap it, and release its pipes and files."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self._reader.join(timeout=KILL_WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
