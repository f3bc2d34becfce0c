"""Registers the ``pickle`` serializer with pydevts (entry point ``pydevts:pickle``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydevts import hookimpl


@hookimpl
def pydevts_register_serializers() -> Mapping[str, Any]:
    from . import PickleSerializer

    return {"pickle": PickleSerializer}
