"""Find a command, installing its Debian package with apt-get if it is missing (as root)."""

from __future__ import annotations

import os
import shutil
import subprocess

APT_TIMEOUT = 300.0


def ensure_command(command: str, package: str) -> tuple[str | None, str]:
    """The path of ``command``, installing ``package`` with apt-get if needed; else ``(None, reason)``."""
    path = shutil.which(command)
    if path:
        return path, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return (
            None,
            f"{command} is not installed and this is not root (install it: apt-get install {package})",
        )
    if shutil.which("apt-get") is None:
        return None, f"{command} is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        print(f"# running: {' '.join(cmd)}", flush=True)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(cmd)} failed: {exc}"
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return None, f"{' '.join(cmd)} failed (rc={done.returncode}): {tail}"
    path = shutil.which(command)
    return (path, "") if path else (None, f"apt-get install {package} did not provide {command}")
