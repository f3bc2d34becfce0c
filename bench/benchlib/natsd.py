"""The local nats-server: install it if missing (Debian, as root), run it on a free loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from .apt import ensure_command
from .procs import PeerError, free_port, spawn

START_TIMEOUT = 10.0


def ensure_nats_server() -> tuple[str | None, str]:
    """The path of ``nats-server``, installing it with apt-get if needed; else (None, reason)."""
    return ensure_command("nats-server", "nats-server")


def server_version(path: str) -> str:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip()


@contextmanager
def nats_server(path: str) -> Iterator[str]:
    """Run ``nats-server -a 127.0.0.1 -p PORT`` until the block ends; yields its URL."""
    port = free_port()
    with spawn("nats-server", [path, "-a", "127.0.0.1", "-p", str(port)], merge_stderr=True) as server:
        try:
            server.wait_line("Server is ready", START_TIMEOUT, anywhere=True)
        except PeerError as exc:
            raise PeerError(f"nats-server did not start: {exc}") from exc
        yield f"nats://127.0.0.1:{port}"
