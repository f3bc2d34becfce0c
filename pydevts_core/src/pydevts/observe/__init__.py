"""Seeing inside a node: the hooks plugins implement, and trace ids.

:mod:`~pydevts.observe.hooks` (the :class:`Plugin` base class,
:class:`MessageInfo`, :class:`Observers`, ``overrides``; re-exported here) and
:mod:`~pydevts.observe.tracing` (trace headers and the node's trace log).
The services that answer questions about a running node and its cluster
(``pydevts.node.inspect``: statistics and latencies; ``pydevts.node.trace_query``)
ask other members, so they live with the node.

Layer: imports only the top-level vocabulary; the wire (a link runs the frame
hooks) and the node (the message hooks) call it.
"""

from __future__ import annotations

from .hooks import (
    OUTCOMES,
    Finish,
    MessageInfo,
    Observers,
    Plugin,
    overrides,
)

__all__ = [
    "OUTCOMES",
    "Finish",
    "MessageInfo",
    "Observers",
    "overrides",
    "Plugin",
]
