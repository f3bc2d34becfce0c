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

import dataclasses
import math
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

import anyio

from ..errors import ConnectionClosedError, FrameTooLargeError, UnknownNodeError
from ..members import Member
from ..wire.link import Link, Tail
from ..wire.messages import ROUTER_KIND_MIN, Hello
from ..wire.session import keeps

__all__ = [
    "ROUTER_KIND_MIN",
    "Hello",
    "Link",
    "Tail",
    "close_later",
    "config_from_options",
    "keeps",
    "member_from_hello",
    "retire",
    "send_on_link",
    "send_on_links",
]

C = TypeVar("C")


def config_from_options(cls: type[C], options: dict[str, Any], *, base: C | None = None) -> C:
    """A dataclass ``cls`` (e.g. a router's timings) from ``options``, taking out the keys it knows.

    Values may be strings (``--router-option dead_interval=1.5``): they are
    converted to the field's type. ``options`` keeps the keys ``cls`` does not know.
    """
    hints = typing.get_type_hints(cls)
    chosen: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in options:
            chosen[field.name] = _convert(options.pop(field.name), hints[field.name], field.name)
    if base is not None:
        return dataclasses.replace(base, **chosen)  # type: ignore[type-var]
    return cls(**chosen)


def _convert(value: Any, kind: Any, name: str) -> Any:
    if not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if kind in (int, float):
            number = kind(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
    except ValueError:
        raise TypeError(f"option {name}={value!r} is not a {kind.__name__}") from None
    return value


def member_from_hello(hello: Hello) -> Member:
    """The member record a HELLO describes (its incarnation from the ``incarnation`` extension)."""
    incarnation = hello.extensions.get("incarnation", 0)
    return Member(
        hello.node_id,
        hello.address,
        dict(hello.tags),
        incarnation=incarnation if isinstance(incarnation, int) else 0,
    )


async def send_on_link(link: Link | None, dest: str, frame: bytes) -> None:
    """``Router.send`` over a direct link: UnknownNodeError when there is none or it closed."""
    if link is None:
        raise UnknownNodeError(dest, "not a live member of this cluster")
    try:
        await link.send(frame)
    except ConnectionClosedError as exc:
        raise UnknownNodeError(dest, f"its link closed: {exc}") from exc


async def send_on_links(links: Iterable[Link], frame: bytes) -> None:
    """``Router.broadcast`` over direct links, once each; a link closing meanwhile is skipped
    (its member's leave or failure is reported on its own). A frame over what some member takes
    (its ``max_frame_size`` is smaller) still goes to the others; then FrameTooLargeError names them."""
    too_large: list[Link] = []
    for link in list(links):
        try:
            await link.send(frame)
        except ConnectionClosedError:
            pass
        except FrameTooLargeError:
            too_large.append(link)
    if too_large:
        names = ", ".join(f"{link.peer_id} (takes {link.max_frame_size})" for link in too_large)
        raise FrameTooLargeError(len(frame), min(link.max_frame_size for link in too_large), names)


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
