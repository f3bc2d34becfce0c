"""The wire format of core messages and of the handshake (sans-IO).

Theory of operation
-------------------
A transport carries *frames* (whole byte strings). The first byte of every
frame is its *kind*:

==========  =====  ===========================================================
kind        byte   layout after the kind byte
==========  =====  ===========================================================
EVENT       0x01   name length (u8), name (UTF-8), payload
REQUEST     0x02   request id (u64 BE), name length (u8), name, payload
REPLY       0x03   request id (u64 BE), payload
ERROR       0x04   request id (u64 BE), error code (u8), message (UTF-8)
EVENT_H     0x11   header block (see :mod:`pydevts.headers`), then as EVENT
REQUEST_H   0x12   header block, then as REQUEST
REPLY_H     0x13   header block, then as REPLY
HELLO       0x30   JSON object (see :class:`Hello`)
REFUSE      0x31   reason (UTF-8); the sender closes the connection after it
AUTH        0x32   keyring mode only, before HELLO (see :mod:`pydevts.wire.secure`)
router      0x40+  owned by the router (control messages, routing headers)
==========  =====  ===========================================================

Payloads are bytes produced by the cluster's serializer; core never looks
inside them. The handshake is JSON so that core needs no serializer to refuse
a peer that uses another one.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..address import Address
from ..errors import (
    ConfigurationError,
    DeliveryError,
    LocalProtocolError,
    NoHandlerError,
    RemoteHandlerError,
    RemoteProtocolError,
    UnknownNodeError,
)
from ..fields import id_field
from ..headers import EMPTY, Headers, checked_headers, decode_headers, encode_headers
from ..settings import checked_tags

__all__ = [
    "EVENT",
    "REQUEST",
    "REPLY",
    "ERROR",
    "EVENT_H",
    "REQUEST_H",
    "REPLY_H",
    "HEADED",
    "HELLO",
    "REFUSE",
    "ROUTER_KIND_MIN",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "Hello",
    "Message",
    "encode_event",
    "encode_request",
    "encode_reply",
    "encode_error",
    "decode_message",
    "message_name",
    "KIND_NAMES",
    "decode_message_or_none",
    "request_id_of",
    "encode_refuse",
    "decode_refuse",
    "handshake_mismatch",
    "Mismatch",
    "remote_error",
]

PROTOCOL_VERSION = 1
MAGIC = "pydevts"

EVENT = 0x01
REQUEST = 0x02
REPLY = 0x03
ERROR = 0x04
HEADED = 0x10  # kind | HEADED: the message carries headers (EVENT_H, REQUEST_H, REPLY_H)
EVENT_H = EVENT | HEADED
REQUEST_H = REQUEST | HEADED
REPLY_H = REPLY | HEADED
HELLO = 0x30
REFUSE = 0x31
ROUTER_KIND_MIN = 0x40

_U64 = struct.Struct(">Q")
_U64_U8 = struct.Struct(">QB")


class ErrorCode:
    """Codes carried by ERROR frames."""

    NO_HANDLER = 1
    HANDLER_FAILED = 2
    UNREACHABLE = 3
    BAD_PAYLOAD = 4


def _name_bytes(name: str) -> bytes:
    raw = name.encode()
    if not raw or len(raw) > 255:
        raise LocalProtocolError(f"event name must be 1 to 255 UTF-8 bytes, got {len(raw)}: {name!r}")
    return raw


@functools.lru_cache(maxsize=1024)
def _event_header(name: str) -> bytes:
    raw = _name_bytes(name)
    return bytes((EVENT, len(raw))) + raw


def encode_event(name: str, payload: bytes, headers: Headers | None = None) -> bytes:
    if headers:
        return (
            bytes((EVENT_H,)) + encode_headers(checked_headers(headers)) + _event_header(name)[1:] + payload
        )
    return _event_header(name) + payload


def encode_request(request_id: int, name: str, payload: bytes, headers: Headers | None = None) -> bytes:
    raw = _name_bytes(name)
    if headers:
        block = encode_headers(checked_headers(headers))
        return b"".join((b"\x12", block, _U64_U8.pack(request_id, len(raw)), raw, payload))
    return b"".join((b"\x02", _U64_U8.pack(request_id, len(raw)), raw, payload))


def encode_reply(request_id: int, payload: bytes, headers: Headers | None = None) -> bytes:
    if headers:
        return b"\x13" + encode_headers(checked_headers(headers)) + _U64.pack(request_id) + payload
    return b"\x03" + _U64.pack(request_id) + payload


def encode_error(request_id: int, code: int, message: str) -> bytes:
    return b"\x04" + _U64_U8.pack(request_id, code) + message.encode()[:4096]


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded core message. ``payload`` is serializer bytes (or an error message)."""

    kind: int  # EVENT, REQUEST, REPLY or ERROR (a headed kind is reported as its plain kind)
    name: str
    request_id: int
    payload: bytes
    code: int = 0
    headers: Headers = EMPTY


def decode_message(frame: bytes) -> Message:
    """Decode a core message; raise :class:`RemoteProtocolError` if malformed."""
    try:
        kind = frame[0]
        pos, headers = 1, EMPTY
        if kind & HEADED and kind in (EVENT_H, REQUEST_H, REPLY_H):
            headers, pos = decode_headers(frame, 1)
            kind &= ~HEADED
        if kind == EVENT:
            end = pos + 1 + frame[pos]
            if end > len(frame):
                raise IndexError("the event name runs past the end of the frame")
            return Message(EVENT, frame[pos + 1 : end].decode(), 0, frame[end:], 0, headers)
        if kind == REQUEST:
            request_id, n = _U64_U8.unpack_from(frame, pos)
            end = pos + 9 + n
            if end > len(frame):
                raise IndexError("the request name runs past the end of the frame")
            return Message(REQUEST, frame[pos + 9 : end].decode(), request_id, frame[end:], 0, headers)
        if kind == REPLY:
            return Message(REPLY, "", _U64.unpack_from(frame, pos)[0], frame[pos + 8 :], 0, headers)
        if kind == ERROR:
            request_id, code = _U64_U8.unpack_from(frame, 1)
            return Message(ERROR, "", request_id, frame[10:], code)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"malformed message frame ({len(frame)} bytes): {exc}") from exc
    raise RemoteProtocolError(f"unknown message kind 0x{kind:02x}")


#: How plugins name the kinds of core messages (:class:`pydevts.observe.MessageInfo`).
KIND_NAMES = {EVENT: "event", REQUEST: "request", REPLY: "reply", ERROR: "error"}


def decode_message_or_none(frame: bytes) -> Message | None:
    """:func:`decode_message`, or ``None`` for a frame that is not a well-formed core message."""
    try:
        return decode_message(frame)
    except RemoteProtocolError:
        return None


def request_id_of(frame: bytes) -> int | None:
    """The id of a (headed or plain) REQUEST frame; ``None`` for anything else or a malformed one."""
    msg = decode_message_or_none(frame)
    return msg.request_id if msg is not None and msg.kind == REQUEST else None


def message_name(frame: bytes) -> tuple[int, str] | None:
    """``(kind, name)`` of an event or request frame (plain kind), without its payload; else ``None``."""
    msg = decode_message_or_none(frame)
    return (msg.kind, msg.name) if msg is not None and msg.kind in (EVENT, REQUEST) else None


# --------------------------------------------------------------------------
# Handshake
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """What each side of a new connection says about itself.

    ``role`` is ``"member"`` for a node, ``"client"`` for a one-off tool that
    must not become a member. ``extensions`` is room for later additions
    (authentication, capabilities); unknown keys are ignored.
    """

    cluster: str
    node_id: str
    address: str
    serializer: str
    tags: Mapping[str, str] = field(default_factory=dict)
    role: str = "member"
    protocol: int = PROTOCOL_VERSION
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def to_frame(self) -> bytes:
        body = {
            "magic": MAGIC,
            "protocol": self.protocol,
            "cluster": self.cluster,
            "node_id": self.node_id,
            "address": self.address,
            "serializer": self.serializer,
            "tags": dict(self.tags),
            "role": self.role,
            "extensions": dict(self.extensions),
        }
        return bytes((HELLO,)) + json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_frame(cls, frame: bytes) -> Hello:
        """Parse a HELLO frame; raise :class:`RemoteProtocolError` saying what is wrong."""
        if not frame or frame[0] != HELLO:
            kind = f"0x{frame[0]:02x}" if frame else "an empty frame"
            raise RemoteProtocolError(f"expected a pydevts HELLO frame, got kind {kind}")
        try:
            body = json.loads(frame[1:])
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RemoteProtocolError(f"HELLO is not valid JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("magic") != MAGIC:
            raise RemoteProtocolError("HELLO does not come from pydevts (no magic)")
        try:
            tags = body.get("tags") or {}
            if not isinstance(body["protocol"], int):
                raise TypeError(f"protocol must be an integer, not {body['protocol']!r}")
            hello = cls(
                cluster=str(body["cluster"]),
                node_id=str(body["node_id"]),
                address=str(body["address"]),
                serializer=str(body["serializer"]),
                tags={str(k): str(v) for k, v in tags.items()},
                role=str(body.get("role", "member")),
                protocol=int(body["protocol"]),
                extensions=dict(body.get("extensions") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise RemoteProtocolError(f"HELLO is missing or has a bad field: {exc!r}") from exc
        if not hello.node_id:
            raise RemoteProtocolError("HELLO has an empty node id")
        try:
            id_field(hello.node_id)
            checked_tags(hello.tags)
        except (ValueError, ConfigurationError) as exc:
            raise RemoteProtocolError(f"HELLO has a bad field: {exc}") from None
        try:
            Address.parse(hello.address)
        except ValueError as exc:
            raise RemoteProtocolError(f"HELLO has a bad address: {exc}") from exc
        return hello


@dataclass(frozen=True)
class Mismatch:
    """Why two HELLOs cannot talk, worded for each side's reader.

    ``here`` is for this node's own log and error; ``there`` goes in the
    REFUSE frame and is read by the other side, so "this node" is always the
    reader's node.
    """

    here: str
    there: str


def _who(hello: Hello, *, accepted: bool) -> str:
    """How the other side is named: the node that answered a join is "the cluster at ..."."""
    if hello.role == "client":
        return "a client (such as `pydevts members`)"
    return f"the {'cluster' if accepted else 'node'} at {hello.address}"


def handshake_mismatch(local: Hello, remote: Hello, *, initiated: bool = True) -> Mismatch | None:
    """Return why ``remote`` cannot talk to ``local`` (``None`` if it can).

    ``initiated`` says whether ``local`` dialled (so ``remote`` is the
    cluster it joins through) or accepted (``remote`` is the node joining).
    """
    them = _who(remote, accepted=initiated)  # read here
    us = _who(local, accepted=not initiated)  # read there

    def differs(what: str, verb: str, mine: object, theirs: object) -> Mismatch:
        return Mismatch(
            f"{what} differs: this node {verb} {mine!r}; {them} {verb.split()[0]} {theirs!r}",
            f"{what} differs: this node {verb} {theirs!r}; {us} {verb.split()[0]} {mine!r}",
        )

    if remote.protocol != local.protocol:
        return differs("protocol version", "speaks version", local.protocol, remote.protocol)
    if remote.cluster != local.cluster:
        return differs("cluster name", "is in cluster", local.cluster, remote.cluster)
    if remote.serializer != local.serializer:
        return differs("serializer", "uses serializer", local.serializer, remote.serializer)
    ours, theirs = local.extensions.get("router"), remote.extensions.get("router")
    if ours is not None and theirs is not None and ours != theirs:  # clients name no router
        return differs("router", "uses router", ours, theirs)
    if remote.node_id == local.node_id:
        return Mismatch(
            f"node id {remote.node_id!r} is this node's own; {them} claims it too",
            f"node id {remote.node_id!r} is already in use by the node at {local.address}",
        )
    return None


def encode_refuse(reason: str) -> bytes:
    return bytes((REFUSE,)) + reason.encode()[:4096]


def decode_refuse(frame: bytes) -> str:
    return frame[1:].decode(errors="replace")


def remote_error(dest: str, name: str, msg: Message) -> DeliveryError:
    """The exception a caller gets for an ERROR reply ``msg`` to its request ``name`` sent to ``dest``."""
    text = msg.payload.decode(errors="replace")
    if msg.code == ErrorCode.NO_HANDLER:
        return NoHandlerError(text)
    if msg.code == ErrorCode.UNREACHABLE:
        return UnknownNodeError(dest, text)
    remote_type = text.partition(":")[0] if msg.code == ErrorCode.HANDLER_FAILED else ""
    return RemoteHandlerError(f"request {name!r} to {dest} failed remotely: {text}", remote_type)
