"""The local nats-server: install it if missing (Debian, as root), run it on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from .procs import PeerError, free_port, spawn

APT_TIMEOUT = 240.0
START_TIMEOUT = 10.0


def ensure_nats_server() -> tuple[str | None, str]:
    """The path of ``nats-server``, installing it with apt-get if needed; else (None, reason)."""
    path = shutil.which("nats-server")
    if path:
        return path, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "nats-server not installed and not root (install it, e.g. apt-get install nats-server)"
    if shutil.which("apt-get") is None:
        return None, "nats-server not installed and no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nats-server"]):
        print(f"# running: {' '.join(cmd)}", flush=True)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return None, f"{' '.join(cmd)} failed (rc={done.returncode}): {tail}"
    path = shutil.which("nats-server")
    return (path, "") if path else (None, "apt-get install nats-server did not provide nats-server")


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
