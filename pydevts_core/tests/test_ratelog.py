"""pydevts.ratelog: at most N lines per interval per key, then a "(suppressed K similar)" line."""

from __future__ import annotations

import logging

import pytest
from pydevts.ratelog import MAX_KEYS, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.ratelog"]


def test_burst_per_key_then_a_summary_in_the_next_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), burst=3, interval=10.0, clock=clock)
    logged = [rl.warning("bad", "bad thing %d", i) for i in range(10_000)]
    assert logged == [True] * 3 + [False] * 9_997
    assert rl.warning("other", "another kind") is True  # keys have their own budget
    assert messages(caplog) == ["bad thing 0", "bad thing 1", "bad thing 2", "another kind"]
    assert rl.suppressed == 9_997
    clock.now += 10.0
    assert rl.warning("bad", "bad thing %d", 10_000) is True
    assert messages(caplog)[-2:] == [
        "(suppressed 9997 similar messages in the last 10 s: bad)",
        "bad thing 10000",
    ]
    clock.now += 10.0
    rl.warning("bad", "quiet window")  # nothing held back in the last window: no summary
    assert messages(caplog)[-1] == "quiet window"


def test_flush_reports_what_is_held_back_and_keys_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), burst=1, interval=60.0, clock=Clock())
    rl.info("k", "one")
    rl.info("k", "two")
    rl.flush()
    assert messages(caplog) == ["one", "(suppressed 1 similar messages in the last 0 s: k)"]
    for i in range(MAX_KEYS + 50):
        rl.info(f"key{i}", "x")
    assert len(rl._windows) <= MAX_KEYS
    with pytest.raises(ValueError):
        RateLimitedLog(logging.getLogger("test.ratelog"), burst=0)
