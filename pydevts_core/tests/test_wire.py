"""Core message wire format and the HELLO handshake record (sans-IO)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from pydevts.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from pydevts.wire import (
    ERROR,
    EVENT,
    HELLO,
    PROTOCOL_VERSION,
    REFUSE,
    REPLY,
    REQUEST,
    ROUTER_KIND_MIN,
    ErrorCode,
    Hello,
    Message,
    decode_message,
    decode_refuse,
    encode_error,
    encode_event,
    encode_refuse,
    encode_reply,
    encode_request,
    handshake_mismatch,
)

U64_MAX = 2**64 - 1
PAYLOADS = [b"", b"\x00", b"payload", bytes(range(256)), b"\x01\x05name"]
NAMES = ["e", "greet", "ns.sub/event-name_1", "héllo wörld ✓", "x" * 255, "é" * 127]


def test_kind_bytes_are_as_documented() -> None:
    assert (EVENT, REQUEST, REPLY, ERROR, HELLO, REFUSE, ROUTER_KIND_MIN) == (
        0x01,
        0x02,
        0x03,
        0x04,
        0x30,
        0x31,
        0x40,
    )


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", NAMES)
def test_event_round_trip(name: str, payload: bytes) -> None:
    frame = encode_event(name, payload)
    assert frame[0] == EVENT
    assert decode_message(frame) == Message(EVENT, name, 0, payload)


@pytest.mark.parametrize("request_id", [0, 1, 255, 2**32, U64_MAX])
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", NAMES[:4])
def test_request_round_trip(name: str, payload: bytes, request_id: int) -> None:
    frame = encode_request(request_id, name, payload)
    assert frame[0] == REQUEST
    assert decode_message(frame) == Message(REQUEST, name, request_id, payload)


@pytest.mark.parametrize("request_id", [0, 7, U64_MAX])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_reply_round_trip(request_id: int, payload: bytes) -> None:
    frame = encode_reply(request_id, payload)
    assert frame[0] == REPLY
    assert decode_message(frame) == Message(REPLY, "", request_id, payload)


@pytest.mark.parametrize(
    "code", [ErrorCode.NO_HANDLER, ErrorCode.HANDLER_FAILED, ErrorCode.UNREACHABLE, ErrorCode.BAD_PAYLOAD]
)
@pytest.mark.parametrize("message", ["", "boom", "ValueError: ünïcode ✓"])
def test_error_round_trip(code: int, message: str) -> None:
    frame = encode_error(12345, code, message)
    assert frame[0] == ERROR
    decoded = decode_message(frame)
    assert decoded == Message(ERROR, "", 12345, message.encode(), code)
    assert decoded.payload.decode() == message


def test_error_codes_are_distinct() -> None:
    codes = [ErrorCode.NO_HANDLER, ErrorCode.HANDLER_FAILED, ErrorCode.UNREACHABLE, ErrorCode.BAD_PAYLOAD]
    assert len(set(codes)) == len(codes)
    assert all(0 < c < 256 for c in codes)


def test_error_message_is_truncated_to_4096_bytes() -> None:
    decoded = decode_message(encode_error(1, ErrorCode.HANDLER_FAILED, "x" * 10_000))
    assert decoded.payload == b"x" * 4096


def test_event_payload_is_not_interpreted() -> None:
    # A payload that itself looks like a message must come back verbatim.
    inner = encode_request(9, "inner", b"data")
    assert decode_message(encode_event("outer", inner)).payload == inner


# ------------------------------------------------------------------ name limits


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="256-ascii"),
        pytest.param("é" * 128, id="256-bytes-utf8"),
        pytest.param("✓" * 86, id="258-bytes-utf8"),
    ],
)
def test_bad_event_names_raise_local_protocol_error(name: str) -> None:
    with pytest.raises(LocalProtocolError, match="1 to 255 UTF-8 bytes"):
        encode_event(name, b"")
    with pytest.raises(LocalProtocolError, match="1 to 255 UTF-8 bytes"):
        encode_request(1, name, b"")


def test_name_of_exactly_255_bytes_is_accepted() -> None:
    name = "é" * 127 + "x"  # 254 + 1 bytes
    assert len(name.encode()) == 255
    assert decode_message(encode_event(name, b"p")).name == name
    assert decode_message(encode_request(3, name, b"p")).name == name


def test_local_protocol_error_is_a_protocol_error_not_remote() -> None:
    with pytest.raises(ProtocolError) as info:
        encode_event("", b"")
    assert not isinstance(info.value, RemoteProtocolError)


# ------------------------------------------------------------------ malformed frames


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x01", id="event-no-name-length"),
        pytest.param(b"\x01\x02\xff\xfe", id="event-name-not-utf8"),
        pytest.param(b"\x01\x03\xe2\x82", id="event-name-cut-in-utf8-char"),
        pytest.param(b"\x02", id="request-no-id"),
        pytest.param(b"\x02" + bytes(5), id="request-short-id"),
        pytest.param(b"\x02" + bytes(8), id="request-no-name-length"),
        pytest.param(b"\x02" + bytes(8) + b"\x02\xc3\x28", id="request-name-not-utf8"),
        pytest.param(b"\x03", id="reply-no-id"),
        pytest.param(b"\x03" + bytes(7), id="reply-short-id"),
        pytest.param(b"\x04" + bytes(7), id="error-short-id"),
        pytest.param(b"\x04" + bytes(8), id="error-no-code"),
    ],
)
def test_malformed_frames_raise_remote_protocol_error(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed message frame"):
        decode_message(frame)


@pytest.mark.parametrize("kind", [0x00, 0x05, 0x2F, HELLO, REFUSE, ROUTER_KIND_MIN, 0x41, 0xFF])
def test_unknown_kinds_raise_remote_protocol_error(kind: int) -> None:
    with pytest.raises(RemoteProtocolError, match=f"unknown message kind 0x{kind:02x}"):
        decode_message(bytes([kind]) + b"whatever")


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x01\x05ab", id="event-name-truncated"),
        pytest.param(b"\x01\xff", id="event-name-missing"),
        pytest.param(b"\x02" + bytes(8) + b"\x05ab", id="request-name-truncated"),
    ],
)
def test_truncated_name_raises_remote_protocol_error(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(frame)


def test_every_truncation_of_valid_frames_is_detected_or_a_prefix() -> None:
    """Cutting REPLY/ERROR frames inside their fixed header must always be detected."""
    for frame in (encode_reply(5, b"body"), encode_error(5, 1, "msg")):
        header = 9 if frame[0] == REPLY else 10
        for cut in range(header):
            with pytest.raises(RemoteProtocolError):
                decode_message(frame[:cut])


# ------------------------------------------------------------------ HELLO


def make_hello(**overrides: object) -> Hello:
    base = Hello(
        cluster="prod",
        node_id="node-a",
        address="127.0.0.1:7000",
        serializer="msgpack",
        tags={"zone": "eu", "rôle": "wörker"},
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_hello_defaults() -> None:
    hello = Hello(cluster="c", node_id="n", address="h:1", serializer="s")
    assert hello.role == "member"
    assert hello.protocol == PROTOCOL_VERSION
    assert dict(hello.tags) == {} and dict(hello.extensions) == {}


@pytest.mark.parametrize(
    "hello",
    [
        pytest.param(make_hello(), id="default"),
        pytest.param(make_hello(role="client", tags={}), id="client"),
        pytest.param(make_hello(protocol=7, extensions={"auth": {"scheme": "x", "n": [1, 2]}}), id="ext"),
        pytest.param(make_hello(address="[::1]:9000", cluster="clüster ✓"), id="unicode-v6"),
    ],
)
def test_hello_round_trip(hello: Hello) -> None:
    frame = hello.to_frame()
    assert frame[0] == HELLO
    assert Hello.from_frame(frame) == hello


def test_hello_frame_is_json_with_magic() -> None:
    body = json.loads(make_hello().to_frame()[1:])
    assert body["magic"] == "pydevts"
    assert body["protocol"] == PROTOCOL_VERSION
    assert body["node_id"] == "node-a"


def test_hello_ignores_unknown_keys_and_defaults_optional_ones() -> None:
    body = {
        "magic": "pydevts",
        "protocol": 1,
        "cluster": "c",
        "node_id": "n",
        "address": "h:1",
        "serializer": "s",
        "future_field": {"anything": True},
    }
    hello = Hello.from_frame(bytes([HELLO]) + json.dumps(body).encode())
    assert hello == Hello(cluster="c", node_id="n", address="h:1", serializer="s")


def _hello_frame(body: object) -> bytes:
    return bytes([HELLO]) + json.dumps(body).encode()


def _good_body() -> dict[str, object]:
    return json.loads(make_hello().to_frame()[1:])


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        pytest.param(b"", "an empty frame", id="empty"),
        pytest.param(encode_event("x", b""), "got kind 0x01", id="event-kind"),
        pytest.param(encode_refuse("no"), "got kind 0x31", id="refuse-kind"),
        pytest.param(b"\x30", "not valid JSON", id="no-body"),
        pytest.param(b"\x30{not json", "not valid JSON", id="bad-json"),
        pytest.param(b"\x30\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(_hello_frame([1, 2]), "no magic", id="json-list"),
        pytest.param(_hello_frame({"protocol": 1}), "no magic", id="no-magic"),
        pytest.param(_hello_frame({**_good_body(), "magic": "other"}), "no magic", id="wrong-magic"),
    ],
)
def test_hello_from_frame_errors(frame: bytes, expected: str) -> None:
    with pytest.raises(RemoteProtocolError, match=expected):
        Hello.from_frame(frame)


@pytest.mark.parametrize("missing", ["cluster", "node_id", "address", "serializer", "protocol"])
def test_hello_missing_required_field_is_named(missing: str) -> None:
    body = _good_body()
    del body[missing]
    with pytest.raises(RemoteProtocolError, match="missing or has a bad field") as info:
        Hello.from_frame(_hello_frame(body))
    assert missing in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("protocol", "one"), ("protocol", None), ("tags", [1, 2]), ("tags", "x"), ("extensions", 5)],
)
def test_hello_bad_field_types(field: str, value: object) -> None:
    body = _good_body()
    body[field] = value
    with pytest.raises(RemoteProtocolError, match="missing or has a bad field"):
        Hello.from_frame(_hello_frame(body))


def test_hello_empty_node_id_is_refused() -> None:
    body = _good_body()
    body["node_id"] = ""
    with pytest.raises(RemoteProtocolError, match="empty node id"):
        Hello.from_frame(_hello_frame(body))


# ------------------------------------------------------------------ handshake_mismatch


def test_compatible_hellos_have_no_mismatch() -> None:
    local = make_hello()
    remote = make_hello(node_id="node-b", address="10.0.0.2:7000", tags={"other": "1"}, role="client")
    assert handshake_mismatch(local, remote) is None
    assert handshake_mismatch(remote, local) is None


def test_mismatch_protocol_version() -> None:
    mismatch = handshake_mismatch(make_hello(), make_hello(node_id="b", protocol=PROTOCOL_VERSION + 1))
    assert mismatch is not None
    assert mismatch.here == (
        f"protocol version differs: this node speaks version {PROTOCOL_VERSION}; "
        f"the cluster at 127.0.0.1:7000 speaks {PROTOCOL_VERSION + 1}"
    )


def test_mismatch_cluster_name() -> None:
    mismatch = handshake_mismatch(make_hello(), make_hello(node_id="b", cluster="staging"))
    assert mismatch is not None
    assert (
        mismatch.here
        == "cluster name differs: this node is in cluster 'prod'; the cluster at 127.0.0.1:7000 is 'staging'"
    )


def test_mismatch_serializer() -> None:
    mismatch = handshake_mismatch(make_hello(), make_hello(node_id="b", serializer="json"))
    assert mismatch is not None
    assert "this node uses serializer 'msgpack'" in mismatch.here and mismatch.here.endswith("uses 'json'")


def test_mismatch_router_but_clients_name_none() -> None:
    peer = make_hello(extensions={"router": "peer"})
    mismatch = handshake_mismatch(peer, make_hello(node_id="b", extensions={"router": "hop"}))
    assert mismatch is not None
    assert (
        mismatch.here
        == "router differs: this node uses router 'peer'; the cluster at 127.0.0.1:7000 uses 'hop'"
    )
    assert handshake_mismatch(peer, make_hello(node_id="c")) is None  # a client: no router


def test_mismatch_is_worded_for_each_sides_reader() -> None:
    """The refusing side logs ``here``; the REFUSE frame carries ``there``, read by the joiner."""
    cluster = make_hello(address="10.0.0.1:7000", extensions={"router": "hop"})
    joiner = make_hello(node_id="b", address="10.0.0.2:7001", extensions={"router": "peer"})
    mismatch = handshake_mismatch(cluster, joiner, initiated=False)
    assert mismatch is not None
    assert (
        mismatch.here == "router differs: this node uses router 'hop'; the node at 10.0.0.2:7001 uses 'peer'"
    )
    assert (
        mismatch.there
        == "router differs: this node uses router 'peer'; the cluster at 10.0.0.1:7000 uses 'hop'"
    )
    # the joiner, checking the cluster's answer, words it the same way for itself
    from_joiner = handshake_mismatch(joiner, cluster, initiated=True)
    assert from_joiner is not None and from_joiner.here == mismatch.there
    client = make_hello(node_id="c", address="10.0.0.3:0", role="client", cluster="other")
    refused = handshake_mismatch(cluster, client, initiated=False)
    assert refused is not None and "a client (such as `pydevts members`) is 'other'" in refused.here


def test_mismatch_duplicate_node_id() -> None:
    mismatch = handshake_mismatch(make_hello(), make_hello(address="10.0.0.9:1"), initiated=False)
    assert mismatch is not None
    assert "node id 'node-a'" in mismatch.there and "already in use" in mismatch.there
    assert "127.0.0.1:7000" in mismatch.there  # names where the id is in use
    assert "10.0.0.9:1 claims it too" in mismatch.here


def test_mismatch_reports_protocol_before_cluster() -> None:
    reason = handshake_mismatch(make_hello(), make_hello(protocol=99, cluster="x", serializer="y"))
    assert reason is not None and reason.here.startswith("protocol version")


# ------------------------------------------------------------------ REFUSE


@pytest.mark.parametrize("reason", ["", "cluster name differs", "ünïcode ✓"])
def test_refuse_round_trip(reason: str) -> None:
    frame = encode_refuse(reason)
    assert frame[0] == REFUSE
    assert decode_refuse(frame) == reason


def test_refuse_reason_is_truncated_and_never_fails_to_decode() -> None:
    frame = encode_refuse("✓" * 5000)  # 3-byte chars: the 4096-byte cut splits one
    assert len(frame) == 1 + 4096
    text = decode_refuse(frame)
    assert text.startswith("✓" * 1365)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("node_id", "x" * 300, "bad node id"),
        ("node_id", "evil\x00id", "node id"),
        ("node_id", "line\nbreak", "node id"),
        ("tags", {"k": "v" * 5000}, "tags take"),
    ],
)
def test_hello_fields_are_bounded(field: str, value: object, expected: str) -> None:
    body = _good_body()
    body[field] = value
    with pytest.raises(RemoteProtocolError, match=expected):
        Hello.from_frame(_hello_frame(body))
