"""Snapshot files (snapshot.py): round trip, atomic writes, bounds, and a fuzzed parser."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.cluster.snapshot import (
    MAX_SNAPSHOT_BYTES,
    MAX_SNAPSHOT_MEMBERS,
    Snapshot,
    SnapshotError,
    encode_snapshot,
    load_snapshot,
    parse_snapshot,
    snapshot_of,
    write_snapshot,
)
from pydevts.members import Member, MemberState, MemberView

NOW = 1_700_000_000.0
GOOD = Snapshot("default", "me", NOW - 10, (("a", "127.0.0.1:7000"), ("b", "[::1]:7001")))


def parse(data: bytes, cluster: str = "default", max_age: float = 3600.0) -> Snapshot:
    return parse_snapshot(data, cluster=cluster, now=NOW, max_age=max_age)


def test_a_snapshot_round_trips_and_lists_live_members_first_up_to_the_cap() -> None:
    assert parse(encode_snapshot(GOOD)) == GOOD
    view = MemberView(Member("me", "h:1"))
    view.upsert(Member("z", "h:2"))
    view.upsert(Member("a", "h:3"))
    view.set_state("a", MemberState.FAILED)
    assert snapshot_of("c", view, now=NOW).members == (("z", "h:2"), ("a", "h:3"))
    for i in range(MAX_SNAPSHOT_MEMBERS + 5):
        view.upsert(Member(f"m{i:05d}", "h:4"))
    big = snapshot_of("c", view, now=NOW)
    assert len(big.members) == MAX_SNAPSHOT_MEMBERS and ("a", "h:3") not in big.members
    # the longest ASCII ids and addresses: 1024 of them fit; multi-byte ones are cut at the byte cap
    for id_char, count in (("y", MAX_SNAPSHOT_MEMBERS), ("\U0001f600", None)):
        wide = MemberView(Member("x" * 255, "h:1"))
        for i in range(MAX_SNAPSHOT_MEMBERS):
            wide.upsert(Member(f"{i:04d}" + id_char * (251 // len(id_char.encode())), "h" * 253 + ":65535"))
        snap = snapshot_of("c", wide, now=NOW)
        assert len(encode_snapshot(snap)) <= MAX_SNAPSHOT_BYTES
        assert count is None or len(snap.members) == count
        assert parse_snapshot(encode_snapshot(snap), cluster="c", now=NOW, max_age=60) == snap


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\xff garbage", "not JSON"),
        (b"[]", "not a pydevts snapshot"),
        (json.dumps({"format": "pydevts-snapshot", "version": 2}).encode(), "version"),
        (encode_snapshot(Snapshot("blue", "me", NOW, ())), "belongs to cluster 'blue'"),
        (encode_snapshot(Snapshot("default", "me", NOW - 7200, ())), "stale"),
        (encode_snapshot(Snapshot("default", "client:x", NOW, ())), "bad node_id"),
        (encode_snapshot(Snapshot("default", "me", NOW, (("a", "nope"),))), "bad member"),
        (b" " * (MAX_SNAPSHOT_BYTES + 1), "larger than"),
        (encode_snapshot(GOOD).replace(str(NOW - 10).encode(), b"1e999"), "not a time"),
        (encode_snapshot(GOOD).replace(str(NOW - 10).encode(), b"9" * 400), "not a time"),
    ],
)
def test_an_unusable_snapshot_says_why(data: bytes, why: str) -> None:
    with pytest.raises(SnapshotError, match=why):
        parse(data)


def test_loading_warns_and_ignores_corrupt_foreign_and_stale_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "snap.json"
    with caplog.at_level(logging.INFO, "pydevts.snapshot"):
        assert load_snapshot(path, cluster="default", max_age=60) is None  # none yet: INFO, not a warning
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        for content, why in [
            (b"{not json", "not JSON"),
            (encode_snapshot(Snapshot("blue", "me", time.time(), ())), "belongs to cluster"),
            (encode_snapshot(Snapshot("default", "me", time.time() - 120, ())), "stale"),
        ]:
            caplog.clear()
            path.write_bytes(content)
            assert load_snapshot(path, cluster="default", max_age=60) is None
            assert [r.levelno for r in caplog.records] == [logging.WARNING]
            assert why in caplog.records[0].getMessage() and str(path) in caplog.records[0].getMessage()
        caplog.clear()
        path.unlink()  # a directory where the file should be: cannot read it, a warning too
        path.mkdir()
        assert load_snapshot(path, cluster="default", max_age=60) is None
        assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "snap.json"
    write_snapshot(path, GOOD)
    assert parse(path.read_bytes()) == GOOD

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(path, Snapshot("default", "other", NOW, ()))
    assert parse(path.read_bytes()) == GOOD  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=30,
)
FIELDS = ["format", "version", "cluster", "node_id", "written", "members"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values, st.integers(0, 2), st.binary(max_size=4))
def test_fuzz_an_almost_valid_snapshot_raises_only_snapshot_error(
    field: str, value: Any, how: int, noise: bytes
) -> None:
    doc = json.loads(encode_snapshot(GOOD))
    if field == "members" and how == 2:
        doc["members"] = [value, *doc["members"]]
    else:
        doc[field] = value
    data = json.dumps(doc).encode()
    if how == 1:
        data = data[: len(data) // 2] + noise
    try:
        parse(data)
    except SnapshotError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_raise_only_snapshot_error(data: bytes) -> None:
    try:
        parse(data)
    except SnapshotError:
        pass
