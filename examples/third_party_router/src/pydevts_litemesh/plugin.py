"""Registers the ``litemesh`` router with pydevts (entry point ``pydevts:litemesh``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl


@hookimpl
def pydevts_register_routers() -> Mapping[str, Any]:
    from .router import LiteMeshRouter

    return {"litemesh": LiteMeshRouter}
