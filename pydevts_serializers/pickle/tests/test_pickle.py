"""The pickle serializer: refuses untrusted use, round-trips any picklable object."""

from __future__ import annotations

import dataclasses
import datetime
import decimal

import pytest
from pydevts import ConfigurationError, Registry, SerializationError
from pydevts_pickle import UNTRUSTED_MESSAGE, PickleSerializer


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize("options", [{}, {"trusted": False}, {"trusted": "yes"}, {"trusted": 1}])
def test_refuses_unless_trusted_is_exactly_true(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="executes code sent by other nodes"):
        PickleSerializer(**options)  # type: ignore[arg-type]


def test_refusal_says_how_to_declare_trust() -> None:
    assert "trusted" in UNTRUSTED_MESSAGE and "--trusted-cluster" in UNTRUSTED_MESSAGE


def test_registered_through_the_entry_point() -> None:
    registry = Registry()
    info = registry.info("serializer", "pickle")
    assert info.distribution == "pydevts-pickle"
    with pytest.raises(ConfigurationError):
        registry.create("serializer", "pickle")
    assert registry.create("serializer", "pickle", trusted=True).name == "pickle"


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"a": (1, 2), (3, 4): {5}},
        Point(1, 2),
        decimal.Decimal("1.10"),
        datetime.datetime(2026, 11, 27, 12, 0),
        [b"bytes", bytearray(b"x"), frozenset({1})],
    ],
)
def test_round_trips_python_objects(value: object) -> None:
    ser = PickleSerializer(trusted=True)
    assert ser.loads(ser.dumps(value)) == value


def test_unpicklable_value_names_its_type() -> None:
    ser = PickleSerializer(trusted=True)
    with pytest.raises(SerializationError, match="'generator'"):
        ser.dumps(x for x in range(3))


def test_garbage_is_a_serialization_error() -> None:
    ser = PickleSerializer(trusted=True)
    with pytest.raises(SerializationError, match="not a valid pickle"):
        ser.loads(b"\x80\x05garbage")
