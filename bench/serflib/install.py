"""Find HashiCorp Serf, installing the Debian package ``serf`` with apt-get if it is missing (as root)."""

from __future__ import annotations

import os
import shutil
import subprocess

APT_TIMEOUT = 300.0


def ensure_serf() -> tuple[str | None, str]:
    """The path of ``serf``, installing it with apt-get if needed; else ``(None, reason)``."""
    path = shutil.which("serf")
    if path:
        return path, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "serf is not installed and this is not root (install it: apt-get install serf)"
    if shutil.which("apt-get") is None:
        return None, "serf is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "serf"]):
        print(f"# running: {' '.join(cmd)}", flush=True)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return None, f"{' '.join(cmd)} failed (rc={done.returncode}): {tail}"
    path = shutil.which("serf")
    return (path, "") if path else (None, "apt-get install serf did not provide a serf command")


def serf_version(path: str) -> str:
    """The first line of ``serf version`` (``?`` if it cannot be run)."""
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"
