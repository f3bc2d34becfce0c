"""pydevts-pickle: payloads as pickles — for trusted clusters only.

Unpickling executes code chosen by the sender, so this serializer refuses to
be created unless ``trusted=True`` is given explicitly, and a node refuses to
start with it unless the cluster has a keyring (only key holders can send).
"""

from __future__ import annotations

import pickle
from typing import Any

from pydevts.errors import ConfigurationError, SerializationError

__version__ = "0.3.0"

__all__ = ["PickleSerializer", "UNTRUSTED_MESSAGE"]

UNTRUSTED_MESSAGE = (
    "the pickle serializer executes code sent by other nodes (unpickling runs arbitrary code), "
    "so it only runs in a cluster you declare trusted: pass serializer_options={'trusted': True} "
    "(CLI: --trusted-cluster) if, and only if, you trust every holder of the cluster's keyring "
    "(which pickle also needs: keyring=PATH, CLI --keyring PATH)"
)


class PickleSerializer:
    """Encodes payloads with :mod:`pickle` (highest protocol)."""

    name = "pickle"
    requires_keyring = True  # a node refuses to start with it in an open cluster

    def __init__(self, *, trusted: bool = False) -> None:
        if trusted is not True:
            raise ConfigurationError(UNTRUSTED_MESSAGE)

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(
                f"pickle cannot encode a value of type {type(obj).__qualname__!r}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)  # safe only because the cluster was declared trusted
        except Exception as exc:
            raise SerializationError(f"payload is not a valid pickle ({len(data)} bytes): {exc!r}") from exc
