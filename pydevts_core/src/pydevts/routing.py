"""Building blocks for routers: what every router that owns links needs the same way.

Public so that third-party routers can use them too (see ``README.md``,
"Writing a plugin"). The rules a router lives by:

* Frames whose first byte is :data:`ROUTER_KIND_MIN` (``0x40``) or above are
  the router's own; lower kinds are core messages, handed to
  ``RouterContext.deliver`` at their destination. Pick kinds no other router
  uses (the peer router uses ``0x40``, the hop router ``0x41``-``0x44``);
  the handshake already refuses a member running another router.
* ``deliver`` may return a :data:`Tail` (a request to answer now). Return the
  last one from the ``Link.run`` frames handler; spawn any earlier one
  (``RouterContext.spawn``), or that request is never answered.
* A member's incarnation (start time in ms) rides in its HELLO's
  ``incarnation`` extension: :func:`member_from_hello` reads it.
"""

from __future__ import annotations

import anyio

from .link import Link, Tail
from .members import Member
from .wire import ROUTER_KIND_MIN, Hello

__all__ = ["ROUTER_KIND_MIN", "Hello", "Link", "Tail", "close_later", "keeps", "member_from_hello", "retire"]


def member_from_hello(hello: Hello) -> Member:
    """The member record a HELLO describes (its incarnation from the ``incarnation`` extension)."""
    incarnation = hello.extensions.get("incarnation", 0)
    return Member(
        hello.node_id,
        hello.address,
        dict(hello.tags),
        incarnation=incarnation if isinstance(incarnation, int) else 0,
    )


def keeps(existing: Link, new: Link) -> bool:
    """Of two links to one peer, whether to keep ``existing``: the one opened by the smaller node id.

    Both ends apply the same rule, so they close the same link when both
    dialled at once. When one side opened both (a reconnect), the newer wins.
    """

    def opener(link: Link) -> str:
        return link.local.node_id if link.initiated else link.peer_id

    if opener(existing) == opener(new):
        return False
    return opener(existing) < opener(new)


async def retire(link: Link, timeout: float) -> None:
    """Close a link that another one replaced, after sending what it had queued (up to ``timeout``)."""
    with anyio.move_on_after(timeout):
        await link.flush()
    await link.aclose("replaced by a newer link")


async def close_later(link: Link, delay: float, reason: str) -> None:
    """Let the peer close ``link`` (it may still send on it); close it ourselves after ``delay``."""
    with anyio.move_on_after(delay):
        await link.wait_closed()
    await link.aclose(reason)
