"""Bounded field parsers: what a value from the network or a file must be before anything uses it.

Each parser returns the value if it is well formed and raises ``ValueError``
saying what is wrong otherwise; the bounds keep a hostile message from
growing a node's memory or making it send what it cannot encode. The SWIM
wire (:mod:`pydevts.swim.wire`), the handshake (:mod:`pydevts.wire`), the
membership views (:mod:`pydevts.cluster.views`) and the node settings
(:mod:`pydevts.settings`) share them. Vocabulary: imports only
:mod:`pydevts.address`.
"""

from __future__ import annotations

from typing import Any

from .address import Address

__all__ = [
    "MAX_ID_BYTES",
    "MAX_TAGS_BYTES",
    "U64_MAX",
    "address_field",
    "id_field",
    "int_field",
    "tags_field",
]

MAX_TAGS_BYTES = 4096
U64_MAX = 2**64 - 1
#: Node ids in SWIM messages: 1 to 255 UTF-8 bytes, printable (event names have the same bound).
MAX_ID_BYTES = 255


def int_field(value: Any, what: str = "an integer") -> int:
    """``value`` if it is an int in u64 (0 to 2**64 - 1); ValueError otherwise (bools and huge ints too)."""
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise ValueError(f"expected {what} from 0 to 2**64-1, got {_short(value)}")
    return value


def id_field(value: Any, what: str = "node id") -> str:
    """A node id: a printable string of 1 to MAX_ID_BYTES UTF-8 bytes; ValueError otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_BYTES or not value.isprintable():
        raise ValueError(f"bad {what} {_short(value)}")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError(f"bad {what} {_short(value)} (not UTF-8)") from None
    if size > MAX_ID_BYTES:
        raise ValueError(f"{what} {_short(value)} is longer than {MAX_ID_BYTES} bytes")
    return value


def address_field(value: Any) -> str:
    """A member address (``HOST:PORT``, see :meth:`pydevts.protocols.Address.parse`); else ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"bad address {_short(value)}")
    Address.parse(value)
    return value


def tags_field(value: Any) -> dict[str, str] | None:
    """Tags: None, or strings to strings of at most MAX_TAGS_BYTES in all; ValueError otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"bad tags {_short(value)}")
    size = 0
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            raise ValueError(f"bad tags {_short(value)}")
        try:
            size += len(k.encode()) + len(v.encode())
        except UnicodeEncodeError:
            raise ValueError("tags are not UTF-8") from None
        if size > MAX_TAGS_BYTES:
            raise ValueError(f"tags take more than {MAX_TAGS_BYTES} bytes")
    return dict(value)


def _short(value: Any) -> str:
    """A bounded repr for error messages (the value may be huge)."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
