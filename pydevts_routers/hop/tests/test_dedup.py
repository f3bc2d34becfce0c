"""The per-origin sliding window that makes broadcasts exactly-once."""

from __future__ import annotations

import random

import pytest
from pydevts_hop.dedup import Dedup, Verdict

NEW, DUP, OLD = Verdict.NEW, Verdict.DUPLICATE, Verdict.TOO_OLD


def test_each_number_is_new_once_in_any_order() -> None:
    d = Dedup(window=64)
    seqs = list(range(1, 61))
    random.Random(1).shuffle(seqs)
    assert [d.check("a", 1, s) for s in seqs] == [NEW] * 60
    assert [d.check("a", 1, s) for s in seqs] == [DUP] * 60
    assert d.check("b", 1, 1) is NEW  # origins are independent


def test_numbers_behind_the_window_are_never_delivered() -> None:
    d = Dedup(window=8)
    assert d.check("a", 1, 20) is NEW
    assert d.check("a", 1, 13) is NEW  # 20 - 13 = 7 < 8: inside
    assert d.check("a", 1, 12) is OLD  # outside: it may have been seen and forgotten
    assert d.check("a", 1, 13) is DUP


def test_a_big_jump_clears_the_window_without_a_huge_shift() -> None:
    d = Dedup(window=8)
    d.check("a", 1, 1)
    assert d.check("a", 1, 2**63) is NEW
    assert d.check("a", 1, 2**63) is DUP
    assert d.check("a", 1, 1) is OLD


def test_a_new_incarnation_restarts_the_window_and_the_old_one_is_refused() -> None:
    d = Dedup(window=8)
    for s in (1, 2, 3):
        d.check("a", 1, s)
    assert d.check("a", 2, 1) is NEW  # the origin restarted
    assert d.check("a", 2, 1) is DUP
    assert d.check("a", 1, 4) is OLD  # a straggler of the previous run


def test_peek_records_nothing_and_forget_frees_the_origin() -> None:
    d = Dedup(window=8)
    assert d.peek("a", 1, 1) is NEW and len(d) == 0
    d.check("a", 1, 1)
    assert "a" in d
    d.forget("a")
    assert "a" not in d and d.check("a", 1, 1) is NEW


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Dedup(window=0)
