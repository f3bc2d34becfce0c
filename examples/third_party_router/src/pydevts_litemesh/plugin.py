"""Registers the ``litemesh`` router with pydevts (entry point ``pydevts:litemesh``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl
from pydevts.plugins import lazy


@hookimpl
def pydevts_register_routers() -> Mapping[str, Any]:
    # Imported when first used, not when plugins are discovered (node start-up time).
    return {"litemesh": lazy("pydevts_litemesh.router:LiteMeshRouter")}
