"""What the benchmark drivers (``run.py``, ``quic_compare.py``, ``serf_compare.py``) share.

The load options (``--n``, ``--seconds``, ``--count``, ``--repeat``) with
their defaults and ``--quick`` values, and the machine description written
beside every table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
from collections.abc import Iterable
from typing import Any


def add_load_options(p: argparse.ArgumentParser) -> None:
    """``--n``, ``--seconds``, ``--count``, ``--repeat`` (see :func:`load_settings`)."""
    p.add_argument("--n", type=int, help="messages per throughput test (default 200000; quick 20000)")
    p.add_argument("--seconds", type=float, help="time bound of a throughput sender (default 10; quick 3)")
    p.add_argument("--count", type=int, help="timed round trips (default 2000; quick 300)")
    p.add_argument(
        "--repeat",
        type=int,
        help="runs of each throughput/RTT test, the median is shown (default 3; quick 1)",
    )


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The load settings from ``add_load_options`` and ``--quick``, as keyword arguments."""
    quick = args.quick
    return {
        "n": args.n or (20_000 if quick else 200_000),
        "seconds": args.seconds or (3.0 if quick else 10.0),
        "count": args.count or (300 if quick else 2000),
        "warmup": 50 if quick else 200,
        "repeat": args.repeat or (1 if quick else 3),
        "deadline": 20.0 if quick else 40.0,
    }


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(dists: Iterable[str] = ()) -> dict[str, Any]:
    """Cores (all and usable), platform, Python, and the versions of ``dists``."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if dists:
        info["versions"] = {d: version(d) for d in dists}
    return info
