"""The node: :class:`Node` (in :mod:`~pydevts.node.core`) and what it is made of.

- :mod:`~pydevts.node.core` (the public :class:`Node`, :func:`handler`; re-exported
  here), :mod:`~pydevts.node.start` (starting: join, merge, snapshots, router),
  :mod:`~pydevts.node.context` (a running node's links, members and tasks),
  :mod:`~pydevts.node.messaging` (emit, send, request),
  :mod:`~pydevts.node.watch` (what observers of a node see);
- dispatch: :mod:`~pydevts.node.dispatch` (frames to handlers),
  :mod:`~pydevts.node.handling`, :mod:`~pydevts.node.handlers`,
  :mod:`~pydevts.node.requests` (requests in flight);
- the system handlers (``pydevts.*`` events): :mod:`~pydevts.node.system`,
  :mod:`~pydevts.node.inspect` (statistics, the ``latencies`` plugin),
  :mod:`~pydevts.node.trace_query`, :mod:`~pydevts.node.keys`,
  :mod:`~pydevts.node.fanout` (asking every member);
- clients: :mod:`~pydevts.node.client` (:class:`NodeClient`, a process that is not
  a member) and :mod:`~pydevts.node.clients` (a node serving them).

Layer: may import everything below it (vocabulary, plugins, observe, wire,
swim, routing, cluster); only :mod:`pydevts.testing`, :mod:`pydevts.cli` and
the package's public face (``pydevts``, :mod:`pydevts.replicated`) import it.
"""

from __future__ import annotations

from .core import (
    Node,
    handler,
)

__all__ = [
    "handler",
    "Node",
]
