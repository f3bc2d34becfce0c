"""Find HashiCorp Serf, installing the Debian package ``serf`` with apt-get if it is missing (as root)."""

from __future__ import annotations

import subprocess

from benchlib.apt import ensure_command


def ensure_serf() -> tuple[str | None, str]:
    """The path of ``serf``, installing it with apt-get if needed; else ``(None, reason)``."""
    return ensure_command("serf", "serf")


def serf_version(path: str) -> str:
    """The first line of ``serf version`` (``?`` if it cannot be run)."""
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"
