"""MemberView: the sans-IO member list and the lifecycle events it produces."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydevts.members import Member, MemberEvent, MemberState, MemberView

LOCAL = Member("a", "127.0.0.1:7000", {"role": "local"})
B = Member("b", "127.0.0.1:7001", {"zone": "eu"})
C = Member("c", "127.0.0.1:7002")


@pytest.fixture
def view() -> MemberView:
    return MemberView(LOCAL)


def test_new_view_holds_only_the_local_member(view: MemberView) -> None:
    assert len(view) == 1
    assert view.local == LOCAL
    assert view.local_id == "a"
    assert "a" in view and "b" not in view
    assert list(view) == [LOCAL]
    assert view.alive_ids() == []
    assert view.get("b") is None


def test_upsert_unknown_alive_member_is_joined(view: MemberView) -> None:
    assert view.upsert(B) == MemberEvent("joined", B)
    assert view.get("b") == B
    assert "b" in view and len(view) == 2


def test_upsert_same_member_again_gives_no_event(view: MemberView) -> None:
    view.upsert(B)
    assert view.upsert(B) is None
    assert view.upsert(Member("b", B.address, dict(B.tags))) is None  # equal, not identical


def test_upsert_with_changed_tags_is_updated(view: MemberView) -> None:
    view.upsert(B)
    changed = replace(B, tags={"zone": "us"})
    assert view.upsert(changed) == MemberEvent("updated", changed)
    assert view.get("b") == changed


def test_upsert_with_added_tag_is_updated(view: MemberView) -> None:
    view.upsert(B)
    changed = replace(B, tags={**B.tags, "extra": "1"})
    event = view.upsert(changed)
    assert event is not None and event.kind == "updated"


def test_upsert_with_changed_address_is_updated(view: MemberView) -> None:
    view.upsert(B)
    moved = replace(B, address="10.0.0.5:7001")
    assert view.upsert(moved) == MemberEvent("updated", moved)


def test_upsert_with_only_incarnation_changed_gives_no_event(view: MemberView) -> None:
    view.upsert(B)
    newer = replace(B, incarnation=5)
    assert view.upsert(newer) is None
    assert view.get("b") == newer  # still recorded


@pytest.mark.parametrize(("state", "kind"), [(MemberState.LEFT, "left"), (MemberState.FAILED, "failed")])
def test_set_state_gone(view: MemberView, state: MemberState, kind: str) -> None:
    view.upsert(B)
    event = view.set_state("b", state)
    assert event is not None
    assert event.kind == kind
    assert event.member == replace(B, state=state)
    # The member stays in the view (so it can be shown) but is not alive.
    assert view.get("b") == replace(B, state=state)
    assert "b" in view
    assert view.alive_ids() == []


@pytest.mark.parametrize("state", [MemberState.LEFT, MemberState.FAILED])
def test_set_state_to_the_same_state_gives_no_event(view: MemberView, state: MemberState) -> None:
    view.upsert(B)
    assert view.set_state("b", state) is not None
    assert view.set_state("b", state) is None


def test_set_state_alive_on_alive_member_gives_no_event(view: MemberView) -> None:
    view.upsert(B)
    assert view.set_state("b", MemberState.ALIVE) is None


def test_set_state_unknown_member_gives_no_event_and_adds_nothing(view: MemberView) -> None:
    assert view.set_state("zzz", MemberState.FAILED) is None
    assert "zzz" not in view
    assert len(view) == 1


def test_failed_then_left_is_no_new_event(view: MemberView) -> None:
    view.upsert(B)
    view.set_state("b", MemberState.FAILED)
    assert view.set_state("b", MemberState.LEFT) is None
    assert view.get("b") == replace(B, state=MemberState.LEFT)


@pytest.mark.parametrize("gone", [MemberState.FAILED, MemberState.LEFT])
def test_rejoin_after_gone_is_joined(view: MemberView, gone: MemberState) -> None:
    view.upsert(B)
    view.set_state("b", gone)
    back = replace(B, tags={"zone": "eu", "restarted": "yes"})
    assert view.upsert(back) == MemberEvent("joined", back)
    assert view.alive_ids() == ["b"]


def test_set_state_alive_after_failed_is_joined(view: MemberView) -> None:
    view.upsert(B)
    view.set_state("b", MemberState.FAILED)
    event = view.set_state("b", MemberState.ALIVE)
    assert event == MemberEvent("joined", B)


def test_upsert_of_a_gone_member_that_was_never_known_gives_no_event_and_no_record(view: MemberView) -> None:
    failed = replace(B, state=MemberState.FAILED)
    assert view.upsert(failed) is None
    assert view.get("b") is None  # nothing was ever said about it: nothing to reap later either
    assert view.alive_ids() == []


def test_upsert_gone_state_of_alive_member_gives_that_event(view: MemberView) -> None:
    view.upsert(B)
    left = replace(B, state=MemberState.LEFT)
    assert view.upsert(left) == MemberEvent("left", left)


def test_suspect_is_alive_and_produces_no_event(view: MemberView) -> None:
    view.upsert(B)
    assert view.set_state("b", MemberState.SUSPECT) is None
    assert view.get("b") == replace(B, state=MemberState.SUSPECT)
    assert view.alive_ids() == ["b"]
    assert view.set_state("b", MemberState.ALIVE) is None


@pytest.mark.parametrize("state", [MemberState.FAILED, MemberState.LEFT, MemberState.SUSPECT])
def test_local_member_cannot_change_state(view: MemberView, state: MemberState) -> None:
    assert view.set_state("a", state) is None
    assert view.local == LOCAL
    assert view.local.alive


def test_alive_ids_excludes_local_and_gone_members(view: MemberView) -> None:
    d = Member("d", "h:4")
    for m in (B, C, d):
        view.upsert(m)
    assert sorted(view.alive_ids()) == ["b", "c", "d"]
    view.set_state("c", MemberState.FAILED)
    view.set_state("d", MemberState.LEFT)
    assert view.alive_ids() == ["b"]
    assert len(view) == 4


def test_iteration_is_a_snapshot(view: MemberView) -> None:
    view.upsert(B)
    seen = []
    for m in view:
        seen.append(m.id)
        view.upsert(Member(m.id + "x", "h:9"))  # mutating while iterating is safe
    assert seen == ["a", "b"]
    assert len(view) == 4


def test_member_alive_property_and_to_dict() -> None:
    assert Member("x", "h:1").alive
    assert Member("x", "h:1", state=MemberState.SUSPECT).alive
    assert not Member("x", "h:1", state=MemberState.FAILED).alive
    assert not Member("x", "h:1", state=MemberState.LEFT).alive
    assert B.to_dict() == {
        "id": "b",
        "address": "127.0.0.1:7001",
        "tags": {"zone": "eu"},
        "state": "alive",
        "incarnation": 0,
        "next_hop": None,
        "distance": None,
    }
    routed = Member("c", "h:2", next_hop="b", distance=2).to_dict()
    assert (routed["next_hop"], routed["distance"]) == ("b", 2)


def test_member_state_str_is_its_value() -> None:
    assert str(MemberState.FAILED) == "failed"
    assert MemberState("left") is MemberState.LEFT


def reap(view: MemberView, older_than: float) -> list[Member]:
    """What the node's reaper does when the router agrees."""
    gone = [view.drop(m.id) for m in view.due(older_than)]
    return [m for m in gone if m is not None]


def test_drop_refuses_members_that_are_not_down() -> None:
    view = MemberView(LOCAL)
    view.upsert(B)
    assert view.drop("b") is None and view.drop("a") is None and view.drop("zz") is None
    assert "b" in view


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def clocked_view() -> tuple[Clock, MemberView]:
    """A view on a fake clock, with b and c alive."""
    clock = Clock()
    view = MemberView(LOCAL, clock=clock)
    view.upsert(B)
    view.upsert(C)
    return clock, view


def test_reap_drops_members_down_for_long_enough_and_only_them() -> None:
    clock, view = clocked_view()
    view.set_state("b", MemberState.FAILED)
    clock.now += 5
    view.set_state("c", MemberState.LEFT)
    assert reap(view, 10) == []
    clock.now += 5  # b down for 10 s, c for 5 s
    assert reap(view, 10) == [replace(B, state=MemberState.FAILED)]
    assert "b" not in view and "c" in view and "a" in view
    assert reap(view, 10) == []  # reaped once
    clock.now += 100
    assert [m.id for m in reap(view, 10)] == ["c"]
    assert list(view) == [LOCAL]  # the local member is never reaped


def test_a_member_that_came_back_is_not_reaped_and_left_after_failed_keeps_its_time() -> None:
    clock, view = clocked_view()
    view.set_state("b", MemberState.FAILED)
    view.set_state("c", MemberState.FAILED)
    clock.now += 8
    view.upsert(B)  # b is back
    view.set_state("c", MemberState.LEFT)  # still down: down since the failure
    clock.now += 3
    assert [m.id for m in reap(view, 10)] == ["c"]
    view.set_state("b", MemberState.FAILED)  # down again: the clock restarts
    clock.now += 9
    assert reap(view, 10) == []
    clock.now += 1
    assert [m.id for m in reap(view, 10)] == ["b"]
    assert view.upsert(B) == MemberEvent("joined", B)  # a reaped member that returns is a newcomer
