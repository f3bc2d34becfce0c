"""Event headers: a small map of strings carried beside an event's payload (sans-IO).

Events, requests and replies may carry headers — trace context, an
idempotency key, a content type — that handlers and plugins read without
touching the payload. A message without headers is sent exactly as before
(no byte more); one with headers uses the *headed* kind of its message
(``kind | 0x10``, see :mod:`pydevts.wire`) whose body starts with this block::

    block length (u16 BE), count (u8), then per header:
        key length (u8), key (ASCII), value length (u16 BE), value (UTF-8)

Bounds (checked when sending, and again on receipt — a peer's frame that
breaks one is refused as malformed):

* at most :data:`MAX_HEADERS` (32) headers;
* a key is 1 to :data:`MAX_KEY` (64) characters of ``A-Z a-z 0-9 - _ .``,
  compared as given (case matters; W3C ``traceparent`` is lower case);
* a value is at most :data:`MAX_VALUE` (1,024) UTF-8 bytes;
* the whole block is at most :data:`MAX_BLOCK` (4,096) bytes.

Keys starting with ``pydevts-`` are pydevts' own (``pydevts-trace``, see
:mod:`pydevts.observe.tracing`); applications may read them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "EMPTY",
    "MAX_BLOCK",
    "MAX_HEADERS",
    "MAX_KEY",
    "MAX_VALUE",
    "Headers",
    "checked_headers",
    "decode_headers",
    "encode_headers",
]

Headers = Mapping[str, str]


class _NoHeaders(Mapping[str, str]):
    """The headers of a message that has none: empty, read-only, hashable, shared."""

    __slots__ = ()

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


EMPTY: Headers = _NoHeaders()

MAX_HEADERS = 32
MAX_KEY = 64
MAX_VALUE = 1024
MAX_BLOCK = 4096

_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_U16 = struct.Struct(">H")


def checked_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` as a plain dict, or LocalProtocolError saying which bound it breaks."""
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise LocalProtocolError(
            f"at most {MAX_HEADERS} headers may travel with a message, got {len(headers)}"
        )
    out: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise LocalProtocolError(
                f"header name {key!r} must be 1 to {MAX_KEY} characters of A-Z a-z 0-9 - _ ."
            )
        if not isinstance(value, str):
            raise LocalProtocolError(f"header {key!r} must be a string, not {type(value).__name__}")
        if len(value.encode()) > MAX_VALUE:
            raise LocalProtocolError(f"header {key!r} is over {MAX_VALUE} bytes")
        out[key] = value
    return out


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The block for ``headers`` (already checked, non-empty), length prefix included."""
    parts = [bytes((len(headers),))]
    for key, value in headers.items():
        raw_key, raw_value = key.encode(), value.encode()
        parts += (bytes((len(raw_key),)), raw_key, _U16.pack(len(raw_value)), raw_value)
    block = b"".join(parts)
    if len(block) > MAX_BLOCK:
        raise LocalProtocolError(f"headers take {len(block)} bytes; at most {MAX_BLOCK} may travel")
    return _U16.pack(len(block)) + block


def decode_headers(frame: bytes, offset: int) -> tuple[Headers, int]:
    """Read the block at ``offset`` of ``frame``; return the headers (read-only) and the offset after it.

    Raises :class:`RemoteProtocolError` naming what is wrong: the bounds
    above, a block running past the frame, a bad key, a value not UTF-8,
    a repeated key.
    """
    if offset + 2 > len(frame):
        raise RemoteProtocolError("headed message: no header block length")
    (size,) = _U16.unpack_from(frame, offset)
    start, end = offset + 2, offset + 2 + size
    if size > MAX_BLOCK:
        raise RemoteProtocolError(f"header block of {size} bytes; at most {MAX_BLOCK} are taken")
    if end > len(frame) or size < 1:
        raise RemoteProtocolError(
            "header block runs past the end of the frame" if size else "empty header block"
        )
    count = frame[start]
    if count > MAX_HEADERS:
        raise RemoteProtocolError(f"{count} headers; at most {MAX_HEADERS} are taken")
    pos = start + 1
    out: dict[str, str] = {}
    try:
        for _ in range(count):
            n = frame[pos]
            key = frame[pos + 1 : pos + 1 + n].decode("ascii")
            pos += 1 + n
            (m,) = _U16.unpack_from(frame, pos)
            if m > MAX_VALUE:
                raise RemoteProtocolError(f"header {key!r} is {m} bytes; at most {MAX_VALUE} are taken")
            value = frame[pos + 2 : pos + 2 + m].decode()
            pos += 2 + m
            if pos > end or not _KEY.match(key):
                raise RemoteProtocolError(
                    f"bad header name {key!r}" if pos <= end else "a header runs past its block"
                )
            if key in out:
                raise RemoteProtocolError(f"header {key!r} given twice")
            out[key] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"malformed header block: {exc}") from None
    if pos != end:
        raise RemoteProtocolError(f"header block has {end - pos} bytes after its {count} headers")
    return MappingProxyType(out), end
