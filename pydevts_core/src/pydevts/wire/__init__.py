"""The wire: the bytes on one connection, and the link that carries them (mostly sans-IO).

What a newcomer finds here, bottom up:

- :mod:`~pydevts.wire.framing` (length-prefixed frames) and
  :mod:`~pydevts.wire.messages` (the kinds of frames: EVENT, REQUEST, REPLY,
  ERROR, HELLO, REFUSE; re-exported here, so ``from pydevts.wire import Hello``);
- :mod:`~pydevts.wire.keyring` and :mod:`~pydevts.wire.secure` (sealing frames
  and datagrams with a cluster keyring);
- :mod:`~pydevts.wire.session`, :mod:`~pydevts.wire.sessions`,
  :mod:`~pydevts.wire._resume` (resumable links: numbered frames, replay);
- :mod:`~pydevts.wire.link` and :mod:`~pydevts.wire.link_writer` (one
  connection to one peer, with its send queue and backpressure),
  :mod:`~pydevts.wire.linkinfo` (what a user sees of a link);
- :mod:`~pydevts.wire.handshake` (HELLO/REFUSE/AUTH on a fresh connection);
- :mod:`~pydevts.wire.datagrams` (the UDP endpoint SWIM speaks over).

Layer: imports only the top-level vocabulary (:mod:`pydevts.errors`,
:mod:`pydevts.protocols`, :mod:`pydevts.headers`, :mod:`pydevts.limits`, ...),
:mod:`pydevts.observe` (a link calls its plugins' frame hooks) and itself;
never membership, routing, the node or the CLI.
"""

from __future__ import annotations

from .messages import (
    ERROR,
    EVENT,
    EVENT_H,
    HEADED,
    HELLO,
    KIND_NAMES,
    PROTOCOL_VERSION,
    REFUSE,
    REPLY,
    REPLY_H,
    REQUEST,
    REQUEST_H,
    ROUTER_KIND_MIN,
    ErrorCode,
    Hello,
    Message,
    Mismatch,
    decode_message,
    decode_message_or_none,
    decode_refuse,
    encode_error,
    encode_event,
    encode_refuse,
    encode_reply,
    encode_request,
    handshake_mismatch,
    message_name,
    remote_error,
    request_id_of,
)

__all__ = [
    "ERROR",
    "EVENT",
    "EVENT_H",
    "HEADED",
    "HELLO",
    "KIND_NAMES",
    "PROTOCOL_VERSION",
    "REFUSE",
    "REPLY",
    "REPLY_H",
    "REQUEST",
    "REQUEST_H",
    "ROUTER_KIND_MIN",
    "decode_message",
    "decode_message_or_none",
    "decode_refuse",
    "encode_error",
    "encode_event",
    "encode_refuse",
    "encode_reply",
    "encode_request",
    "ErrorCode",
    "handshake_mismatch",
    "Hello",
    "Message",
    "message_name",
    "Mismatch",
    "remote_error",
    "request_id_of",
]
