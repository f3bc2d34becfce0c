"""Registers the ``hop`` router with pydevts (entry point ``pydevts:hop``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl


@hookimpl
def pydevts_register_routers() -> Mapping[str, Any]:
    from .router import HopRouter

    return {"hop": HopRouter}
