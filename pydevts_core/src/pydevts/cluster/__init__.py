"""Joining a cluster and agreeing on who is in it.

:mod:`~pydevts.cluster.join` (the first contact with a seed),
:mod:`~pydevts.cluster.views` (member rows: export, parse, import, agree),
:mod:`~pydevts.cluster.merge` (two halves of a partition merging their views),
:mod:`~pydevts.cluster.snapshot` (the member list saved across restarts) and
:mod:`~pydevts.cluster.lifecycle` (the queue of lifecycle events a node hands out).
Failure detection itself is :mod:`pydevts.swim`.

Layer: imports the top-level vocabulary, :mod:`pydevts.wire` and
:mod:`pydevts.swim`; never the node (``NodeContext`` only under
``TYPE_CHECKING``), routing or the CLI.
"""
