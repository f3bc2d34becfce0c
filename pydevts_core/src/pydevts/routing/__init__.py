"""Routers: the decision-machine API, the link host that runs it, and helpers.

A router decides; core does the IO. Write a router by subclassing
:class:`RouterMachine` and returning :mod:`actions <pydevts.routing.actions>`
from its inputs (see ``docs/writing-a-router.md``). The node runs it on real
links through :class:`LinkHost`; :mod:`pydevts.testing` runs it in a
deterministic simulator.

The helpers below (``send_on_link``, ``keeps``, ...) serve routers that bring
their own IO and implement :class:`pydevts.protocols.Router` directly.

Layer: imports the top-level vocabulary and :mod:`pydevts.wire` (links,
sessions, messages); the node's start builds its link host from here.
"""

from .actions import (
    Action,
    CloseLink,
    Connect,
    Control,
    Deliver,
    Dropped,
    Send,
    SendDatagram,
    SetMemberState,
    UpdateMember,
)
from .helpers import (
    ROUTER_KIND_MIN,
    Hello,
    Link,
    Tail,
    close_later,
    config_from_options,
    keeps,
    member_from_hello,
    retire,
    send_on_link,
    send_on_links,
)
from .host import LinkHost
from .machine import NO_ACTIONS, RouterMachine

__all__ = [
    "NO_ACTIONS",
    "ROUTER_KIND_MIN",
    "Action",
    "CloseLink",
    "Connect",
    "Control",
    "Deliver",
    "Dropped",
    "Hello",
    "Link",
    "LinkHost",
    "RouterMachine",
    "Send",
    "SendDatagram",
    "SetMemberState",
    "Tail",
    "UpdateMember",
    "close_later",
    "config_from_options",
    "keeps",
    "member_from_hello",
    "retire",
    "send_on_link",
    "send_on_links",
]
