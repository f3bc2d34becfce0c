"""Event handlers: the ``@handler`` decorator for Node subclasses, and event-name rules."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import LocalProtocolError

__all__ = ["SYSTEM_PREFIX", "check_event_name", "check_handler", "class_handlers", "handler", "takes_headers"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
#: Event names every node answers itself (``pydevts members``/``emit`` use them).
SYSTEM_PREFIX = "pydevts."


def handler(name: str) -> Callable[[F], F]:
    """Mark a method of a Node subclass as the handler of event ``name``.

    The method is called as ``await self.method(sender, payload)``; for a
    request its return value is the reply.
    """

    def mark(func: F) -> F:
        func._pydevts_event = name  # type: ignore[attr-defined]
        return func

    return mark


def class_handlers(obj: object) -> dict[str, Callable[..., Awaitable[Any]]]:
    """The ``@handler`` methods of ``obj``'s class and its bases (a subclass's override wins)."""
    found: dict[str, Callable[..., Awaitable[Any]]] = {}
    for klass in reversed(type(obj).__mro__):
        for attr, value in vars(klass).items():
            event = getattr(value, "_pydevts_event", None)
            if event is not None:
                found[event] = getattr(obj, attr)
                check_handler(event, found[event])
    return found


def check_handler(name: str, func: Callable[..., Any]) -> None:
    """TypeError now, at registration, for a handler that could never run (not async, wrong arguments)."""
    call = getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__ is fine too
    if not (inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)):
        raise TypeError(
            f"the handler for {name!r} must be an async function: `async def handler(sender, payload)`, "
            f"not {func!r}"
        )
    try:
        inspect.signature(func).bind("sender", "payload", **({"headers": {}} if takes_headers(func) else {}))
    except TypeError as exc:
        raise TypeError(f"the handler for {name!r} must take (sender, payload): {exc}") from None
    except ValueError:  # no signature to read (some builtins): let it be
        pass


def takes_headers(func: Callable[..., Any]) -> bool:
    """Does ``func`` declare a ``headers`` parameter (it then gets each message's headers)?"""
    try:
        parameter = inspect.signature(func).parameters.get("headers")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def check_event_name(name: str) -> str:
    """``name`` if users may handle it; LocalProtocolError otherwise."""
    if not name or len(name.encode()) > 255:
        raise LocalProtocolError(f"event name must be 1 to 255 UTF-8 bytes: {name!r}")
    if name.startswith(SYSTEM_PREFIX):
        raise LocalProtocolError(f"event names starting with {SYSTEM_PREFIX!r} are reserved: {name!r}")
    return name
