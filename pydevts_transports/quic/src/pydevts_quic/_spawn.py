"""Start a task that belongs to no task group (the QUIC endpoints' drivers).

anyio has no public call for this, so it is done per backend: a plain
``asyncio`` task (kept referenced until it ends) or a trio system task. The
function must not raise: nobody is there to receive the exception.

The backend is told without ``sniffio`` (which this distribution does not
depend on): trio is running only if it was imported and knows the current task.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["on_trio", "spawn_detached"]

_running: set[asyncio.Task[Any]] = set()


def on_trio() -> bool:
    """True when called from a trio task (including trio in guest mode), False otherwise."""
    if "trio" not in sys.modules:  # never imported: it cannot be running
        return False
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def spawn_detached(func: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if on_trio():
        import trio

        trio.lowlevel.spawn_system_task(func)
        return
    task = asyncio.get_running_loop().create_task(func())
    _running.add(task)
    task.add_done_callback(_running.discard)
