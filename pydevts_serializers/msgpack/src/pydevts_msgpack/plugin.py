"""Registers the ``msgpack`` serializer with pydevts (entry point ``pydevts:msgpack``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl
from pydevts.plugins import lazy


@hookimpl
def pydevts_register_serializers() -> Mapping[str, Any]:
    # Imported when first used, not when plugins are discovered (node start-up time).
    return {"msgpack": lazy("pydevts_msgpack:MsgpackSerializer")}
