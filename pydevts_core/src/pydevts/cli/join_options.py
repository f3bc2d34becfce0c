"""Options of ``pydevts node`` (and the agent) about joining: seeds, retry, merging, snapshots."""

from __future__ import annotations

import argparse

__all__ = ["add_join_options", "seconds_or_zero"]


def seconds_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number of seconds, got {text!r}")
    return value


def add_join_options(parser: argparse.ArgumentParser, *, cluster_port: bool = True) -> None:
    """``--join`` (seeds) and ``--join-only`` beside a cluster port; ``--retry-join``, ``--snapshot``,
    ``--merge-interval`` always (``pydevts watch`` has its own ``--join``)."""
    from .options import join_address  # options imports this module

    if cluster_port:
        parser.add_argument(
            "--join",
            dest="seeds",
            action="append",
            type=join_address,
            default=[],
            metavar="HOST:PORT",
            help="a seed: another way into the cluster, tried after the cluster port and probed every "
            "--merge-interval to merge islands; a bare PORT means 127.0.0.1:PORT (repeatable)",
        )
        parser.add_argument(
            "--join-only",
            action="store_true",
            help="fail instead of starting a new cluster when neither the cluster port nor a seed answers",
        )
    parser.add_argument(
        "--retry-join",
        action="store_true",
        help="keep trying the cluster port and the seeds, with backoff, until one answers "
        "(no join timeout; with --join-only, never fail)",
    )
    parser.add_argument(
        "--snapshot",
        metavar="PATH",
        default=None,
        help="keep this node's id and the members it knows in this file, so that a restarted node "
        "rejoins through them even when every seed is gone (it takes the file's id unless --id is given)",
    )
    parser.add_argument(
        "--merge-interval",
        type=seconds_or_zero,
        default=30.0,
        metavar="SECONDS",
        help="seconds (jittered by 20%%) between probes of the cluster port and the seeds for another "
        "island of this cluster to merge with; 0 disables",
    )
