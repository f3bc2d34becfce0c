"""Start a task that belongs to no task group (the QUIC endpoints' drivers).

anyio has no public call for this, so it is done per backend: a plain
``asyncio`` task (kept referenced until it ends) or a trio system task. The
function must not raise: nobody is there to receive the exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import sniffio

__all__ = ["spawn_detached"]

_running: set[asyncio.Task[Any]] = set()


def spawn_detached(func: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(func)
        return
    task = asyncio.get_running_loop().create_task(func())
    _running.add(task)
    task.add_done_callback(_running.discard)
