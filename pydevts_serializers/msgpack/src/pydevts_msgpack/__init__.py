"""pydevts-msgpack: the default pydevts serializer (MessagePack)."""

from __future__ import annotations

from typing import Any

import msgpack
from pydevts.errors import SerializationError

__version__ = "0.3.0"

__all__ = ["MsgpackSerializer"]


class MsgpackSerializer:
    """Encodes payloads with MessagePack.

    Encodes ``None``, bool, int, float, str, bytes, and lists, tuples and
    dicts of them (tuples come back as lists; dict keys may be any of these
    scalar types). Anything else is refused with an error naming its type.
    """

    name = "msgpack"

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def dumps(self, obj: Any) -> bytes:
        try:
            return self._packer.pack(obj)
        except TypeError as exc:
            self._packer.reset()
            raise SerializationError(f"msgpack cannot encode a value of type {_culprit(obj)}: {exc}") from exc
        except (ValueError, OverflowError) as exc:
            self._packer.reset()
            raise SerializationError(f"msgpack cannot encode the payload: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        except Exception as exc:
            raise SerializationError(f"payload is not valid msgpack ({len(data)} bytes): {exc}") from exc


_SCALARS = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


def _culprit(obj: Any) -> str:
    """Name the type of the first value msgpack cannot encode, with its path."""
    stack: list[tuple[str, Any]] = [("payload", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _SCALARS):
            continue
        if isinstance(value, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, _SCALARS):
                    return f"{type(k).__qualname__!r} (a key of {path})"
                stack.append((f"{path}[{k!r}]", v))
        else:
            return f"{type(value).__qualname__!r} (at {path})"
    return repr(type(obj).__qualname__)
