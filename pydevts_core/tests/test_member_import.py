"""MemberView.import_down and the checks of a ``pydevts.members`` answer (views.py), incl. fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.cluster.views import MAX_ROWS, import_rows, member_rows, parse_rows
from pydevts.members import MAX_IMPORTED_VIEW, Member, MemberState, MemberView


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def view() -> tuple[MemberView, Clock]:
    clock = Clock()
    return MemberView(Member("me", "127.0.0.1:1"), clock=clock), clock


def test_import_down_records_a_down_member_it_lacks_without_an_event_and_keeps_its_age() -> None:
    v, clock = view()
    left = Member("b", "127.0.0.1:2", state=MemberState.LEFT)
    assert v.import_down(left, down_for=30.0)
    assert v.get("b") == left and v.down_for("b") == 30.0
    assert v.due(29.0) == [left] and v.due(31.0) == []
    clock.now += 5
    assert v.down_for("b") == 35.0
    # a member that comes back is a newcomer to this view: joined
    event = v.upsert(Member("b", "127.0.0.1:2"))
    assert event is not None and event.kind == "joined"


def test_import_down_refuses_live_known_and_local_members_and_stops_at_the_bound() -> None:
    v, _ = view()
    assert not v.import_down(Member("a", "h:1"))  # alive
    assert not v.import_down(Member("me", "h:1", state=MemberState.FAILED))  # this node
    v.upsert(Member("c", "h:3"))
    assert not v.import_down(Member("c", "h:3", state=MemberState.FAILED))  # known: the router decides
    assert v.get("c") is not None and v.get("c").alive  # type: ignore[union-attr]
    for i in range(MAX_IMPORTED_VIEW):
        v.import_down(Member(f"x{i}", "h:1", state=MemberState.LEFT))
    assert len(v) == MAX_IMPORTED_VIEW


def test_rows_round_trip_and_members_due_for_reaping_are_not_imported() -> None:
    a, clock = view()
    a.upsert(Member("b", "h:2"))
    a.set_state("b", MemberState.LEFT)
    a.upsert(Member("c", "h:3"))
    a.set_state("c", MemberState.FAILED)
    clock.now += 100
    rows = parse_rows(member_rows(a))
    assert [(r.member.id, r.member.state, r.down_for) for r in rows] == [
        ("b", MemberState.LEFT, 100.0),
        ("c", MemberState.FAILED, 100.0),
        ("me", MemberState.ALIVE, 0.0),
    ]
    fresh, _ = view()
    assert [m.id for m in import_rows(fresh, rows, reap_after=1000)] == ["b", "c"]
    again, _ = view()
    assert import_rows(again, rows, reap_after=50) == []  # a would reap them now: so would we
    assert [r["id"] for r in member_rows(a, down_only=True)] == ["b", "c"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"id": "x"}, "is a list"),
        (["x"], "is an object"),
        ([{"id": "x", "address": "h:1", "state": "gone"}], "unknown member state"),
        ([{"id": "", "address": "h:1", "state": "left"}], "member id"),
        ([{"id": "x", "address": "nope", "state": "left"}], "HOST:PORT"),
        ([{"id": "x", "address": "h:1", "state": "left", "down_for": "1"}], "down_for"),
        ([{"id": "x", "address": "h:1", "state": "left", "down_for": float("nan")}], "down_for"),
        ([{"id": "x", "address": "h:1", "state": "left", "incarnation": -1}], "incarnation"),
        ([{"id": "x", "address": "h:1", "state": "left", "tags": {"k": 1}}], "tags"),
        ([{"id": "x", "address": "h:1", "state": "left"}] * (MAX_ROWS + 1), "at most"),
    ],
)
def test_a_bad_answer_is_refused_saying_what_is_wrong(rows: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rows(rows)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=30,
)
row_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=8) | json_values,
        "address": st.sampled_from(["h:1", "[::1]:2", "h", ""]) | json_values,
        "state": st.sampled_from([s.value for s in MemberState]) | json_values,
        "down_for": st.floats() | json_values,
        "incarnation": st.integers() | json_values,
        "tags": st.dictionaries(st.text(max_size=4), st.text(max_size=4)) | json_values,
    },
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row_like, max_size=5) | json_values)
def test_fuzz_parse_rows_raises_only_value_error(rows: Any) -> None:
    v, _ = view()
    try:
        parsed = parse_rows(rows)
    except ValueError:
        return
    import_rows(v, parsed, reap_after=60)
    assert all(not m.alive or m.id == "me" for m in v)
