"""The msgpack serializer: round trips, refusals that name the culprit, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydevts.errors import PydevtsError, SerializationError
from pydevts.protocols import Serializer
from pydevts_msgpack import MsgpackSerializer


class Custom:
    pass


class Other:
    pass


@pytest.fixture
def ser() -> MsgpackSerializer:
    return MsgpackSerializer()


def test_is_a_serializer_named_msgpack(ser: MsgpackSerializer) -> None:
    assert isinstance(ser, Serializer)
    assert ser.name == "msgpack"


SAME = [
    None,
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    -33,
    2**31,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    0.0,
    -1.5,
    1e300,
    math.inf,
    -math.inf,
    "",
    "hello",
    "ünïcode ✓ \U0001f600",
    "x" * 70_000,
    b"",
    b"\x00\xff" * 40_000,
    [],
    {},
    [1, "two", b"three", None, [4.0, [5]]],
    {"a": 1, "b": [1, 2, {"c": None}], "d": {"e": {"f": b"g"}}},
    {1: "int key", -2: "neg", b"k": "bytes key", False: "bool key", 1.5: "float key", None: "none key"},
    {"nested": [{"deep": [[[]]]}]},
]


@pytest.mark.parametrize("value", SAME, ids=lambda v: type(v).__name__)
def test_round_trip(ser: MsgpackSerializer, value: Any) -> None:
    data = ser.dumps(value)
    assert isinstance(data, bytes)
    back = ser.loads(data)
    assert back == value
    assert type(back) is type(value)


def test_nan_round_trips(ser: MsgpackSerializer) -> None:
    assert math.isnan(ser.loads(ser.dumps(float("nan"))))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((1, 2, (3, 4)), [1, 2, [3, 4]]),
        ({"t": ("a", "b")}, {"t": ["a", "b"]}),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
    ],
    ids=["tuple", "tuple-in-dict", "bytearray", "memoryview"],
)
def test_round_trip_with_documented_conversions(ser: MsgpackSerializer, value: Any, expected: Any) -> None:
    back = ser.loads(ser.dumps(value))
    assert back == expected
    assert type(back) is type(expected)


def test_encoding_is_deterministic_across_instances() -> None:
    value = {"k": [1, 2.5, "s", b"b"]}
    assert MsgpackSerializer().dumps(value) == MsgpackSerializer().dumps(value)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        pytest.param(Custom(), "'Custom'", "(at payload)", id="top-level"),
        pytest.param([{"key": Custom()}], "'Custom'", "(at payload[0]['key'])", id="in-dict-in-list"),
        pytest.param({"a": [1, 2, Custom()]}, "'Custom'", "(at payload['a'][2])", id="in-list-in-dict"),
        pytest.param({"s": {1, 2}}, "'set'", "(at payload['s'])", id="set"),
        pytest.param((1, (2, (3, object()))), "'object'", "(at payload[1][1][1])", id="nested-tuples"),
        pytest.param({Custom(): 1}, "'Custom'", "(a key of payload)", id="bad-key"),
        pytest.param({"x": {Other(): 1}}, "'Other'", "(a key of payload['x'])", id="bad-nested-key"),
    ],
)
def test_unsupported_type_names_type_and_path(
    ser: MsgpackSerializer, value: Any, type_name: str, where: str
) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value)
    message = str(info.value)
    assert type_name in message
    assert where in message
    assert isinstance(info.value.__cause__, TypeError)
    assert isinstance(info.value, PydevtsError)


def test_unsupported_type_message_names_the_first_culprit(ser: MsgpackSerializer) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps([Custom(), Other()])
    assert "'Custom' (at payload[0])" in str(info.value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**100])
def test_int_out_of_range_is_refused(ser: MsgpackSerializer, value: int) -> None:
    with pytest.raises(SerializationError, match="cannot encode"):
        ser.dumps(value)


def test_tuple_dict_key_is_refused_or_round_trips(ser: MsgpackSerializer) -> None:
    value = {(1, 2): 3}
    try:
        data = ser.dumps(value)
    except SerializationError:
        return  # refusing at the sender is fine
    ser.loads(data)  # ... but what was encoded must decode


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x92\x01", id="truncated-array"),
        pytest.param(b"\xa5abc", id="truncated-str"),
        pytest.param(b"\xa2\xff\xfe", id="str-not-utf8"),
        pytest.param(b"\x01\x02", id="extra-data"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="huge-array-announced"),
    ],
)
def test_garbage_raises_serialization_error(ser: MsgpackSerializer, data: bytes) -> None:
    with pytest.raises(SerializationError, match="not valid msgpack") as info:
        ser.loads(data)
    assert f"({len(data)} bytes)" in str(info.value)
    assert info.value.__cause__ is not None


def test_still_works_after_encode_errors(ser: MsgpackSerializer) -> None:
    fresh = MsgpackSerializer()
    value = {"after": [1, 2, 3]}
    for bad in ([1, 2, Custom()], {"a": "b" * 1000, "z": Custom()}, 2**70, {Custom(): 1}):
        with pytest.raises(SerializationError):
            ser.dumps(bad)
        # no leftover bytes from the failed, partly packed payload
        assert ser.dumps(value) == fresh.dumps(value)
        assert ser.loads(ser.dumps(value)) == value


def test_still_works_after_decode_errors(ser: MsgpackSerializer) -> None:
    with pytest.raises(SerializationError):
        ser.loads(b"\x92\x01")
    assert ser.loads(ser.dumps([1, 2])) == [1, 2]
