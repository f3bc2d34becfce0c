"""The hop router's own frames: a compact binary encoding (sans-IO, stdlib only).

Theory of operation
-------------------
Core frames have a first byte below ``0x40`` (:mod:`pydevts.wire`); the router
owns ``0x40`` and above. The hop router uses four kinds (``0x40`` is left to
the ``peer`` router, so a peer node that reaches a hop node is refused with a
clear message instead of being misread)::

    ADVERT     0x41  flags u8 (bit 0: left) | incarnation u64 | seq u32 |
                     origin str8 | address str8 | tag count u16 |
                     (key str8, value str16) * count |
                     neighbour count u16 | neighbour str8 * count
    BROADCAST  0x42  flags u8 (bit 0: flood) | hop limit u8 | incarnation u64 |
                     seq u64 | origin str8 | core frame (the rest)
    UNICAST    0x43  flags u8 (none defined) | hop limit u8 | origin str8 |
                     dest str8 | core frame (the rest)
    KEEPALIVE  0x44  nothing (the frame is exactly one byte)

Integers are big-endian; ``str8``/``str16`` are a u8/u16 byte length and
UTF-8. Node ids and addresses are 1 to 255 bytes. An advert is ordered by
``(incarnation, seq)``: the incarnation is the node's start time in ms (core
puts it in the HELLO), so a restarted node's adverts always win over those of
its previous run; ``seq`` grows with every change of that run. A broadcast is
identified by ``(origin, incarnation, seq)``; a unicast needs no id because it
is never copied. The *hop limit* is how many more links the frame may cross:
a node forwards it only with ``hop limit - 1 >= 1``.

Decoding is strict: a frame of an unknown kind, a truncated or over-long
frame, unknown flag bits, bad UTF-8, an empty id, a bad address, duplicate
tags or neighbours, a zero hop limit or a carried frame that is not a core
frame raise :class:`HopWireError` (a :class:`ValueError` and a
:class:`~pydevts.errors.RemoteProtocolError`) naming the field. Decoding
builds new objects only, so a caller that decodes before it changes any
state changes nothing when a frame is refused.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydevts.errors import LocalProtocolError, RemoteProtocolError
from pydevts.protocols import Address
from pydevts.wire import ROUTER_KIND_MIN

__all__ = [
    "ADVERT",
    "BROADCAST",
    "KEEPALIVE",
    "UNICAST",
    "Advert",
    "Broadcast",
    "HopFrame",
    "HopWireError",
    "Keepalive",
    "Unicast",
    "decode",
    "encode_advert",
    "encode_broadcast",
    "encode_unicast",
    "relay",
    "KEEPALIVE_FRAME",
]

ADVERT = 0x41
BROADCAST = 0x42
UNICAST = 0x43
KEEPALIVE = 0x44

ADVERT_LEFT = 0x01
BROADCAST_FLOOD = 0x01

KEEPALIVE_FRAME = bytes((KEEPALIVE,))

_NAMES = {ADVERT: "ADVERT", BROADCAST: "BROADCAST", UNICAST: "UNICAST", KEEPALIVE: "KEEPALIVE"}
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_BCAST_HEAD = struct.Struct(">BBBQQ")  # kind, flags, hop limit, incarnation, seq
_UNI_HEAD = struct.Struct(">BBB")  # kind, flags, hop limit


class HopWireError(RemoteProtocolError, ValueError):
    """A hop-router frame is malformed; the message names the frame kind and the field."""


@dataclass(frozen=True, slots=True)
class Advert:
    """A node's link-state advert: who it is and which neighbours it has links to."""

    origin: str
    incarnation: int
    seq: int
    address: str
    tags: Mapping[str, str] = field(default_factory=dict)
    neighbours: frozenset[str] = frozenset()
    left: bool = False

    @property
    def version(self) -> tuple[int, int]:
        return (self.incarnation, self.seq)


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A core frame for every node, from ``origin``; ``flood`` asks relays to flood it."""

    origin: str
    incarnation: int
    seq: int
    hop_limit: int
    flood: bool
    frame: bytes


@dataclass(frozen=True, slots=True)
class Unicast:
    """A core frame for ``dest`` from ``origin``."""

    origin: str
    dest: str
    hop_limit: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class Keepalive:
    """Proof of life on a link that has carried nothing else lately."""


HopFrame = Advert | Broadcast | Unicast | Keepalive


# --------------------------------------------------------------------------
# Encoding (our own values: a bad one is a LocalProtocolError)
# --------------------------------------------------------------------------


def _str(text: str, what: str, width: int = 1) -> bytes:
    raw = text.encode()
    limit = 255 if width == 1 else 65535
    if (width == 1 and not raw) or len(raw) > limit:
        raise LocalProtocolError(f"{what} must be 1 to {limit} UTF-8 bytes, got {len(raw)}: {text!r}")
    return (_U8 if width == 1 else _U16).pack(len(raw)) + raw


def _check_hop_limit(hop_limit: int) -> None:
    if not 1 <= hop_limit <= 255:
        raise LocalProtocolError(f"hop limit must be 1 to 255, got {hop_limit}")


def _check_core(frame: bytes) -> None:
    if not frame or frame[0] >= ROUTER_KIND_MIN:
        raise LocalProtocolError("the hop router carries core frames only (first byte below 0x40)")


def encode_advert(advert: Advert) -> bytes:
    if len(advert.tags) > 65535 or len(advert.neighbours) > 65535:
        raise LocalProtocolError("an advert holds at most 65535 tags and 65535 neighbours")
    parts = [
        bytes((ADVERT, ADVERT_LEFT if advert.left else 0)),
        _U64.pack(advert.incarnation),
        _U32.pack(advert.seq),
        _str(advert.origin, "node id"),
        _str(advert.address, "address"),
        _U16.pack(len(advert.tags)),
    ]
    for key, value in sorted(advert.tags.items()):
        parts += (_str(key, "tag key"), _str(value, "tag value", width=2))
    parts.append(_U16.pack(len(advert.neighbours)))
    parts += (_str(n, "neighbour id") for n in sorted(advert.neighbours))
    return b"".join(parts)


def encode_broadcast(
    origin: str, incarnation: int, seq: int, hop_limit: int, frame: bytes, *, flood: bool = False
) -> bytes:
    _check_hop_limit(hop_limit)
    _check_core(frame)
    flags = BROADCAST_FLOOD if flood else 0
    head = _BCAST_HEAD.pack(BROADCAST, flags, hop_limit, incarnation, seq)
    return b"".join((head, _str(origin, "origin"), frame))


def encode_unicast(origin: str, dest: str, hop_limit: int, frame: bytes) -> bytes:
    _check_hop_limit(hop_limit)
    _check_core(frame)
    return b"".join(
        (_UNI_HEAD.pack(UNICAST, 0, hop_limit), _str(origin, "origin"), _str(dest, "dest"), frame)
    )


def relay(frame: bytes, *, flood: bool | None = None) -> bytes:
    """A decoded BROADCAST or UNICAST frame with its hop limit one lower (and the flood bit set).

    The caller has checked that the hop limit is at least 2.
    """
    flags = frame[1] | BROADCAST_FLOOD if flood else frame[1]
    return bytes((frame[0], flags, frame[2] - 1)) + frame[3:]


# --------------------------------------------------------------------------
# Decoding (a peer's bytes: a bad one is a HopWireError)
# --------------------------------------------------------------------------


class _Reader:
    """Reads fields in order, naming the field and frame kind in every error."""

    __slots__ = ("frame", "kind", "pos")

    def __init__(self, frame: bytes, kind: str) -> None:
        self.frame = frame
        self.kind = kind
        self.pos = 1

    def fail(self, message: str) -> HopWireError:
        return HopWireError(f"malformed hop {self.kind} frame ({len(self.frame)} bytes): {message}")

    def _unpack(self, fmt: struct.Struct, what: str) -> int:
        if self.pos + fmt.size > len(self.frame):
            raise self.fail(f"truncated at {what} (offset {self.pos}, needs {fmt.size} bytes)")
        (value,) = fmt.unpack_from(self.frame, self.pos)
        self.pos += fmt.size
        return int(value)

    def u8(self, what: str) -> int:
        return self._unpack(_U8, what)

    def u16(self, what: str) -> int:
        return self._unpack(_U16, what)

    def u32(self, what: str) -> int:
        return self._unpack(_U32, what)

    def u64(self, what: str) -> int:
        return self._unpack(_U64, what)

    def text(self, what: str, width: int = 1, *, empty_ok: bool = False) -> str:
        size = self.u8(f"{what} length") if width == 1 else self.u16(f"{what} length")
        if size == 0 and not empty_ok:
            raise self.fail(f"{what} is empty")
        end = self.pos + size
        if end > len(self.frame):
            raise self.fail(f"truncated in {what} (needs {size} bytes at offset {self.pos})")
        try:
            value = self.frame[self.pos : end].decode()
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not UTF-8: {exc}") from exc
        self.pos = end
        return value

    def flags(self, known: int) -> int:
        flags = self.u8("flags")
        if flags & ~known:
            raise self.fail(f"unknown flag bits 0x{flags & ~known:02x}")
        return flags

    def hop_limit(self) -> int:
        value = self.u8("hop limit")
        if value == 0:
            raise self.fail("hop limit is 0")
        return value

    def core_frame(self) -> bytes:
        rest = self.frame[self.pos :]
        if not rest:
            raise self.fail("carries no core frame")
        if rest[0] >= ROUTER_KIND_MIN:
            raise self.fail(f"carried frame has kind 0x{rest[0]:02x}, not a core kind (below 0x40)")
        return rest

    def end(self) -> None:
        if self.pos != len(self.frame):
            raise self.fail(f"{len(self.frame) - self.pos} unexpected bytes after the last field")


def _decode_advert(r: _Reader) -> Advert:
    flags = r.flags(ADVERT_LEFT)
    incarnation = r.u64("incarnation")
    seq = r.u32("seq")
    origin = r.text("origin")
    address = r.text("address")
    try:
        Address.parse(address)
    except ValueError as exc:
        raise r.fail(f"bad address: {exc}") from None
    tags: dict[str, str] = {}
    for _ in range(r.u16("tag count")):
        key = r.text("tag key")
        if key in tags:
            raise r.fail(f"tag {key!r} appears twice")
        tags[key] = r.text("tag value", width=2, empty_ok=True)
    neighbours: set[str] = set()
    for _ in range(r.u16("neighbour count")):
        neighbour = r.text("neighbour id")
        if neighbour in neighbours or neighbour == origin:
            raise r.fail(f"neighbour {neighbour!r} is repeated or is the origin itself")
        neighbours.add(neighbour)
    r.end()
    return Advert(origin, incarnation, seq, address, tags, frozenset(neighbours), bool(flags & ADVERT_LEFT))


def _decode_broadcast(r: _Reader) -> Broadcast:
    flags = r.flags(BROADCAST_FLOOD)
    hop_limit = r.hop_limit()
    incarnation = r.u64("incarnation")
    seq = r.u64("seq")
    origin = r.text("origin")
    return Broadcast(origin, incarnation, seq, hop_limit, bool(flags & BROADCAST_FLOOD), r.core_frame())


def _decode_unicast(r: _Reader) -> Unicast:
    r.flags(0)
    hop_limit = r.hop_limit()
    origin = r.text("origin")
    dest = r.text("dest")
    return Unicast(origin, dest, hop_limit, r.core_frame())


def decode(frame: bytes) -> HopFrame:
    """Decode one router frame; raise :class:`HopWireError` saying what is wrong."""
    if not frame:
        raise HopWireError("malformed hop frame: it is empty")
    kind = frame[0]
    name = _NAMES.get(kind)
    if name is None:
        hint = " (the peer router's control frame: every node of a cluster must use one router)"
        raise HopWireError(
            f"unknown hop frame kind 0x{kind:02x}" + (hint if kind == ROUTER_KIND_MIN else "")
            if kind >= ROUTER_KIND_MIN
            else f"frame kind 0x{kind:02x} is a core frame, not a hop-router frame"
        )
    r = _Reader(frame, name)
    if kind == ADVERT:
        return _decode_advert(r)
    if kind == BROADCAST:
        return _decode_broadcast(r)
    if kind == UNICAST:
        return _decode_unicast(r)
    r.end()
    return Keepalive()
