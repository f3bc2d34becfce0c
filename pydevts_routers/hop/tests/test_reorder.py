"""Per-origin ordering of broadcast delivery (sans-IO)."""

from __future__ import annotations

from pydevts_hop.reorder import Reorder


def frames(*seqs: int) -> list[bytes]:
    return [f"m{s}".encode() for s in seqs]


def test_in_order_arrivals_are_delivered_at_once() -> None:
    r = Reorder(max_wait=1.0)
    assert [r.arrive("a", 1, s, f, 0.0) for s, f in zip(range(1, 4), frames(1, 2, 3), strict=True)] == [
        frames(1),
        frames(2),
        frames(3),
    ]
    assert r.held_total == 0 and r.next_due() is None


def test_an_early_arrival_waits_for_the_gap_to_fill() -> None:
    r = Reorder(max_wait=1.0)
    assert r.arrive("a", 1, 1, b"m1", 0.0) == frames(1)
    assert r.arrive("a", 1, 3, b"m3", 0.1) == []
    assert r.arrive("a", 1, 4, b"m4", 0.2) == []
    assert r.next_due() == 1.1
    assert r.arrive("a", 1, 2, b"m2", 0.3) == frames(2, 3, 4)
    assert r.due(5.0) == [] and r.held_total == 2


def test_a_gap_that_never_fills_is_skipped_after_max_wait() -> None:
    r = Reorder(max_wait=1.0)
    r.arrive("a", 1, 1, b"m1", 0.0)
    assert r.arrive("a", 1, 3, b"m3", 0.5) == []
    assert r.due(1.4) == []
    assert r.due(1.5) == [("a", b"m3")]
    assert r.gaps_skipped == 1
    assert r.arrive("a", 1, 2, b"m2", 2.0) == frames(2)  # later than its turn: delivered late, not lost
    assert r.arrive("a", 1, 4, b"m4", 2.0) == frames(4)


def test_the_first_broadcast_heard_sets_where_the_origin_stands() -> None:
    r = Reorder(max_wait=1.0)
    assert r.arrive("b", 1, 7, b"b7", 0.0) == [b"b7"]  # b sent 1-6 before we could hear of it
    assert r.arrive("b", 1, 8, b"b8", 0.1) == [b"b8"]
    assert r.arrive("b", 1, 10, b"b10", 0.2) == []
    assert r.arrive("b", 1, 9, b"b9", 0.3) == [b"b9", b"b10"]


def test_a_unicast_from_an_origin_waits_behind_what_it_has_held() -> None:
    r = Reorder(max_wait=1.0)
    assert r.unicast("a", [b"u0"]) == [b"u0"]  # nothing known of a: at once
    r.arrive("a", 1, 1, b"a1", 0.0)
    assert r.unicast("a", [b"u1"]) == [b"u1"]  # nothing held: at once
    assert r.arrive("a", 1, 3, b"a3", 0.0) == []
    # a send never overtakes an earlier emit, and the emits stay in order: it waits for 2 too
    assert r.unicast("a", [b"u2", b"u3"]) == []
    assert r.arrive("a", 1, 5, b"a5", 0.1) == []
    assert r.unicast("a", [b"u4"]) == []
    assert r.unicast("nobody", [b"x"]) == [b"x"]
    assert r.arrive("a", 1, 2, b"a2", 0.2) == [b"a2", b"a3", b"u2", b"u3"]  # u4 came after 5
    assert r.arrive("a", 1, 4, b"a4", 0.3) == [b"a4", b"a5", b"u4"]
    assert r.unicast("a", [b"u5"]) == [b"u5"]
    assert r.unicasts_held == 2 and r.gaps_skipped == 0


def test_a_unicast_behind_a_gap_that_never_fills_goes_with_what_was_held() -> None:
    r = Reorder(max_wait=1.0)
    r.arrive("a", 1, 1, b"a1", 0.0)
    r.arrive("a", 1, 3, b"a3", 0.5)
    r.arrive("a", 1, 5, b"a5", 0.6)
    assert r.unicast("a", [b"u"]) == []
    # one late tick: both gaps have waited max_wait, both are skipped at once
    assert r.due(2.0) == [("a", b"a3"), ("a", b"a5"), ("a", b"u")]
    assert r.gaps_skipped == 2 and r.next_due() is None
    r.arrive("a", 1, 7, b"a7", 3.0)
    assert r.unicast("a", [b"v"]) == []
    assert r.forget("a") == [b"a7", b"v"]


def test_origins_are_independent_and_a_new_incarnation_starts_over() -> None:
    r = Reorder(max_wait=1.0)
    r.arrive("a", 1, 1, b"a1", 0.0)
    assert r.arrive("b", 1, 1, b"b1", 0.0) == [b"b1"]
    assert r.arrive("a", 1, 3, b"a3", 0.0) == []
    assert r.unicast("a", [b"u"]) == []
    # restarted: what the old run had held comes first, then the new run starts at once
    assert r.arrive("a", 2, 1, b"A1", 0.1) == [b"a3", b"u", b"A1"]
    assert r.due(9.0) == []


def test_too_many_held_skips_the_gap_without_waiting() -> None:
    r = Reorder(max_wait=10.0, max_held=3)
    r.arrive("a", 1, 1, b"m1", 0.0)
    assert [r.arrive("a", 1, s, f"m{s}".encode(), 0.0) for s in (3, 4, 5)] == [[], [], []]
    assert r.arrive("a", 1, 6, b"m6", 0.0) == frames(3, 4, 5, 6)


def test_forget_hands_out_what_was_held_in_order() -> None:
    r = Reorder(max_wait=1.0)
    r.arrive("a", 1, 1, b"m1", 0.0)
    r.arrive("a", 1, 4, b"m4", 0.0)
    r.arrive("a", 1, 3, b"m3", 0.0)
    assert r.forget("a") == frames(3, 4)
    assert r.forget("a") == [] and len(r) == 0


def test_right_after_learning_of_an_origin_its_first_broadcast_waits_for_earlier_ones() -> None:
    r = Reorder(max_wait=1.0)
    assert r.arrive("a", 1, 2, b"a2", 0.0, fresh=True) == []  # 1 may be racing behind it
    assert r.arrive("a", 1, 1, b"a1", 0.2) == [b"a1", b"a2"]
    assert r.arrive("b", 1, 7, b"b7", 0.0, fresh=True) == []  # or sent before we joined
    assert r.due(1.0) == [("b", b"b7")]
    assert r.arrive("c", 1, 1, b"c1", 0.0, fresh=True) == [b"c1"]  # number 1: nothing to wait for


def test_a_gap_still_filling_over_a_slower_path_is_not_given_up_on() -> None:
    r = Reorder(max_wait=1.0)
    r.arrive("a", 1, 1, b"m1", 0.0)
    assert r.arrive("a", 1, 4, b"m4", 0.0) == []
    assert r.arrive("a", 1, 2, b"m2", 0.9) == frames(2)  # the slow path is still delivering
    assert r.next_due() == 1.9
    assert r.due(1.5) == []  # was: 3 skipped, and delivered after 4
    assert r.arrive("a", 1, 3, b"m3", 1.6) == frames(3, 4)
    assert r.arrive("a", 1, 6, b"m6", 2.0) == []
    assert r.due(3.0) == [("a", b"m6")]  # no sign of 5 for max_wait: skipped
