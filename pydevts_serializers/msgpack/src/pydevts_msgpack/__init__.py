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
    dicts of them. Tuples come back as lists, except as dict keys, where they
    come back as tuples. Anything else is refused with an error naming its
    type and where it is in the payload.
    """

    name = "msgpack"

    def __init__(self, *, trusted: bool = False) -> None:
        # ``trusted`` is accepted and ignored: msgpack runs no code from the wire.
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
        except TypeError:
            # A map key that is an array (a tuple when it was sent): decode
            # again, turning such keys into tuples. Only on this rare path.
            try:
                return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_tuple_keys)
            except Exception as exc:
                raise SerializationError(f"payload is not valid msgpack ({len(data)} bytes): {exc}") from exc
        except Exception as exc:
            raise SerializationError(f"payload is not valid msgpack ({len(data)} bytes): {exc}") from exc


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_freeze(k): v for k, v in pairs}


_SCALARS = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


def _culprit(obj: Any) -> str:
    """Name the type of the first value msgpack cannot encode, with its path."""
    stack: list[tuple[str, Any]] = [("payload", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _SCALARS):
            continue
        # Push children in reverse so the first one is looked at first.
        if isinstance(value, (list, tuple)):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(value)]))
        elif isinstance(value, dict):
            children = []
            for k, v in value.items():
                if not isinstance(k, (*_SCALARS, tuple)):
                    return f"{type(k).__qualname__!r} (a key of {path})"
                children.append((f"{path}[{k!r}]", v))
            stack.extend(reversed(children))
        else:
            return f"{type(value).__qualname__!r} (at {path})"
    return repr(type(obj).__qualname__)
