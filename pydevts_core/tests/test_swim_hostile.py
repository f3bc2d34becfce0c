"""Hostile datagrams against the SWIM machine (sans-IO): each rule of docs/membership.md, "Hostile input".

Unit tests drive ``SwimState`` by hand; the property tests (hypothesis) feed the
parsers random and mutated input and check that only ``ValueError`` comes out,
that the machine's state stays bounded and that everything it sends is
encodable and passes its own parser.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.members import Member, MemberState
from pydevts.protocols import MAX_HOST_CHARS, Address
from pydevts.swim import MAX_QUEUED, MAX_RELAYS, Send, StateChange, SwimConfig, SwimState
from pydevts.swim.wire import MAX_ID_BYTES, MAX_UPDATES, U64_MAX, check_update, parse_message

ALIVE, SUSPECT, FAILED, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.FAILED, MemberState.LEFT
CFG = SwimConfig(probe_interval=1.0, probe_timeout=0.5, suspicion_mult=3.0)
HUGE = 10**4299  # 4,300 digits: the most json.loads accepts, far past u64
VICTIM = "192.0.2.1:9"  # an address of the attacker's choosing


def addr(node_id: str) -> str:
    return f"{node_id}.test:7000"


def upd(kind: str, node_id: str, inc: int, tags: dict[str, str] | None = None, at: str = "") -> list[Any]:
    return [kind, node_id, at or addr(node_id), inc, tags if kind == "alive" and tags is not None else None]


def gossip(*updates: list[Any]) -> dict[str, Any]:
    return {"t": "gossip", "u": list(updates)}


def sends(actions: Iterable[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def changes(actions: Iterable[object]) -> list[Member]:
    return [a.member for a in actions if isinstance(a, StateChange)]


def make(
    local: str = "a",
    peers: Iterable[str] = ("b", "c"),
    config: SwimConfig = CFG,
    incarnation: int = 0,
    seed: int = 0,
) -> SwimState:
    state = SwimState(Member(local, addr(local), incarnation=incarnation), config, random.Random(seed))
    for peer in peers:
        state.learn(Member(peer, addr(peer)), 0.0)
    state._gossip.clear()
    return state


def invented(n: int, start: int = 0, at: str = VICTIM) -> list[list[Any]]:
    return [upd("alive", f"evil{i}", 1, {}, at=at) for i in range(start, start + n)]


def in_batches(updates: list[list[Any]]) -> list[dict[str, Any]]:
    return [gossip(*updates[i : i + MAX_UPDATES]) for i in range(0, len(updates), MAX_UPDATES)]


def assert_encodable(actions: Iterable[object]) -> None:
    """Everything the machine sends fits the wire: JSON-encodable and accepted by its own parser."""
    for send in sends(actions):
        parse_message(json.loads(json.dumps(send.message)))
        Address.parse(send.address)


class Net:
    """A few states on a perfect network; datagrams are delivered at once (JSON round trip)."""

    def __init__(self, ids: Iterable[str], incarnation: int = 0) -> None:
        self.now = 0.0
        self.nodes: dict[str, SwimState] = {}
        for i, nid in enumerate(ids):
            self.nodes[nid] = SwimState(
                Member(nid, addr(nid), incarnation=incarnation), CFG, random.Random(i)
            )
        for a in self.nodes.values():
            for b in self.nodes.values():
                if a is not b:
                    a.learn(b.local, 0.0)
        self.to_outsiders: list[Send] = []

    def deliver(self, src: str, actions: list[Any]) -> None:
        queue = [(src, s) for s in sends(actions)]
        while queue:
            sender, send = queue.pop(0)
            node = self.nodes.get(send.to)
            if node is None or send.address != node.local.address:
                self.to_outsiders.append(send)
                continue
            msg = json.loads(json.dumps(send.message))
            queue += [(send.to, s) for s in sends(node.receive(sender, msg, self.now))]

    def inject(self, to: str, sender: str, message: dict[str, Any]) -> None:
        self.deliver(to, self.nodes[to].receive(sender, json.loads(json.dumps(message)), self.now))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.05)):
            self.now = round(self.now + 0.05, 9)
            for nid, node in self.nodes.items():
                self.deliver(nid, node.tick(self.now))

    def views(self, subject: str) -> set[tuple[MemberState, int]]:
        return {
            (n.members[subject].state, n.members[subject].incarnation)
            for i, n in self.nodes.items()
            if i != subject
        }


# ------------------------------------------------------------------ 1. bounded types


@pytest.mark.parametrize(
    "inc",
    [-1, U64_MAX + 1, HUGE, True, False, 1.0, "1", None],
    ids=["negative", "2**64", "4300-digits", "true", "false", "float", "str", "none"],
)
def test_incarnations_outside_u64_are_refused_before_any_arithmetic(inc: Any) -> None:
    a = make()
    before = dict(a.members), a.local
    for kind in ("alive", "suspect", "failed", "left"):
        for subject in ("b", "a", "z"):
            with pytest.raises(ValueError):
                a.receive("b", gossip([kind, subject, addr(subject), inc, None]), 1.0)
    assert (dict(a.members), a.local) == before


@pytest.mark.parametrize("seq", [-1, U64_MAX + 1, HUGE, True, 2.0])
def test_sequence_numbers_outside_u64_are_refused(seq: Any) -> None:
    a = make()
    for kind in ("ping", "ack"):
        with pytest.raises(ValueError):
            a.receive("b", {"t": kind, "seq": seq}, 1.0)
    with pytest.raises(ValueError):
        a.receive("b", {"t": "ping-req", "seq": seq, "target": "c", "addr": addr("c")}, 1.0)


def test_u64_edges_are_accepted() -> None:
    a = make()
    assert sends(a.receive("b", {"t": "ping", "seq": U64_MAX}, 1.0))[0].message["seq"] == U64_MAX
    (change,) = changes(a.receive("b", gossip(upd("alive", "z", U64_MAX, {})), 1.0))
    assert change.incarnation == U64_MAX
    (change,) = changes(a.receive("b", gossip(upd("suspect", "c", U64_MAX - 1)), 1.0))
    assert (change.state, change.incarnation) == (SUSPECT, U64_MAX - 1)


BAD_ADDRESSES = [
    "127.0.0.1\x00:7000",
    "evil\x00host:1",
    "host:7000\x00",
    "a\nb:1",
    "\x7f:1",
    "a b:1",
    "\udcff:1",
    "x" * (MAX_HOST_CHARS + 1) + ":1",
    "ü" * 64 + ".test:1",
    "host:65536",
    "host:-1",
    "host:٣",
    "host",
    ":7000",
    "[]:1",
    "",
]


@pytest.mark.parametrize("bad", BAD_ADDRESSES, ids=[repr(b)[:30] for b in BAD_ADDRESSES])
def test_bad_addresses_are_refused_everywhere_they_travel(bad: str) -> None:
    with pytest.raises(ValueError):
        Address.parse(bad)
    a = make()
    for message in (
        gossip(["alive", "z", bad, 1, {}]),
        gossip(["suspect", "b", bad, 0, None]),
        {"t": "ping", "seq": 1, "addr": bad},
        {"t": "ping-req", "seq": 1, "target": "z", "addr": bad},
    ):
        with pytest.raises(ValueError):
            a.receive("b", message, 1.0)
    assert "z" not in a.members


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:7000", "[::1]:0", "::1:65535", "host.test:80", "ü.test:1", "x" * MAX_HOST_CHARS + ":1"],
)
def test_good_addresses_still_parse(text: str) -> None:
    parsed = Address.parse(text)
    assert Address.parse(str(parsed)) == parsed


BAD_IDS: list[Any] = ["", "x" * (MAX_ID_BYTES + 1), "é" * 128, "a\x00b", "a\nb", "\udcff", 5, None, ["x"]]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:20] for b in BAD_IDS])
def test_bad_node_ids_are_refused(bad: Any) -> None:
    a = make()
    with pytest.raises(ValueError):
        a.receive("b", gossip(["alive", bad, addr("z"), 1, {}]), 1.0)
    with pytest.raises(ValueError):
        a.receive("b", {"t": "ping-req", "seq": 1, "target": bad, "addr": addr("z")}, 1.0)
    if isinstance(bad, str):
        with pytest.raises(ValueError):
            a.receive(bad, {"t": "ping", "seq": 1}, 1.0)
    a.receive("b", gossip(["alive", "x" * MAX_ID_BYTES, addr("z"), 1, {}]), 1.0)  # the longest allowed


def test_tags_are_bounded() -> None:
    a = make()
    with pytest.raises(ValueError):
        a.receive("b", gossip(upd("alive", "z", 1, {"k": "v" * 4096})), 1.0)
    with pytest.raises(ValueError):
        a.receive("b", gossip(upd("alive", "z", 1, {"k": "\udcff"})), 1.0)
    (change,) = changes(a.receive("b", gossip(upd("alive", "z", 1, {"k": "v" * 4095})), 1.0))
    assert len(change.tags["k"]) == 4095


def test_updates_per_message_are_bounded() -> None:
    a = make()
    with pytest.raises(ValueError):
        a.receive("b", gossip(*invented(MAX_UPDATES + 1)), 1.0)
    assert not any(i.startswith("evil") for i in a.members)
    a.receive("b", gossip(*invented(MAX_UPDATES)), 1.0)
    assert sum(i.startswith("evil") for i in a.members) == MAX_UPDATES
    with pytest.raises(ValueError):
        SwimConfig(max_piggyback=MAX_UPDATES + 1)


# ------------------------------------------------------------------ 2. refutations stay encodable


def test_an_accusation_at_the_top_of_u64_is_refused_and_one_below_is_refuted_at_the_top() -> None:
    x = make("x", ["a", "b"], incarnation=5)
    for kind in ("suspect", "failed", "left"):
        with pytest.raises(ValueError):
            x.receive("a", gossip(upd(kind, "x", U64_MAX)), 1.0)
    actions = x.receive("a", gossip(upd("suspect", "x", U64_MAX - 1)), 1.0)
    assert x.incarnation == U64_MAX
    assert {s.to for s in sends(actions)} == {"a", "b"}
    assert_encodable(actions)
    # at the top: set_tags saturates instead of leaving u64
    assert_encodable(x.set_tags({"k": "v"}, 2.0))
    assert x.incarnation == U64_MAX


def test_the_4300_digit_incarnation_of_the_issue_changes_nothing() -> None:
    net = Net(["a", "b", "c"])
    with pytest.raises(ValueError):
        net.inject("a", "c", gossip(upd("suspect", "b", HUGE)))
    net.run(1.0)
    assert net.views("b") == {(ALIVE, 0)}


# ------------------------------------------------------------------ 3. accusations reach the accused


@pytest.mark.parametrize("kind", ["failed", "left"])
def test_an_accusation_about_a_member_no_longer_sent_to_is_told_to_it_on_the_next_tick(kind: str) -> None:
    a = make("a", ["b", "x"])
    actions = a.receive("b", gossip(upd(kind, "x", 7)), 1.0)
    assert "x" not in {s.to for s in sends(actions)}  # not in the broadcast (it is down here)...
    notices = [s for s in sends(a.tick(1.05)) if s.to == "x" and s.message["t"] == "gossip"]
    assert [(s.address, s.message) for s in notices] == [(addr("x"), gossip(upd(kind, "x", 7)))]
    assert [s for s in sends(a.tick(1.1)) if s.to == "x" and s.message["t"] == "gossip"] == []  # once


def test_a_suspicion_of_our_own_reaches_the_suspect_at_once() -> None:
    a = make("a", ["x"])
    actions = a.link_down("x", 1.0)
    assert any(s.to == "x" and s.message == gossip(upd("suspect", "x", 0)) for s in sends(actions))


def test_a_member_saying_it_leaves_is_not_told_so() -> None:
    a = make("a", ["b", "x"])
    a.receive("x", gossip(upd("left", "x", 0)), 1.0)
    a.member_left("b", 1.0)
    assert [s for s in sends(a.tick(1.05)) if s.message["t"] == "gossip"] == []


@pytest.mark.parametrize("kind", ["suspect", "failed", "left"])
def test_a_spoofed_accusation_at_a_large_incarnation_is_refuted_everywhere(kind: str) -> None:
    net = Net(["a", "b", "x"])
    big = 2**63
    net.inject("a", "b", gossip(upd(kind, "x", big)))  # "b" is spoofed
    net.run(0.2)
    assert net.nodes["x"].incarnation == big + 1
    assert net.views("x") == {(ALIVE, big + 1)}
    net.run(10.0)
    assert net.views("x") == {(ALIVE, big + 1)}


def test_a_spoofed_left_about_self_is_refuted_like_suspect_and_failed() -> None:
    x = make("x", ["a", "b"], incarnation=3)
    actions = x.receive("a", gossip(upd("left", "x", 40)), 1.0)
    assert x.incarnation == 41
    assert {s.to for s in sends(actions)} == {"a", "b"}
    assert all(s.message == gossip(upd("alive", "x", 41, {})) for s in sends(actions))


def test_sustained_spoofed_failed_never_keeps_a_live_member_down() -> None:
    net = Net(["a", "b", "x"])
    for i in range(40):  # 2 s of forged verdicts, each above the last refutation
        inc = net.nodes["x"].incarnation
        net.inject("a" if i % 2 else "b", "b" if i % 2 else "a", gossip(upd("failed", "x", inc)))
        net.run(0.05)
        assert net.views("x") == {(ALIVE, inc + 1)}  # refuted within the same tick
    net.run(5.0)
    assert net.views("x") == {(ALIVE, net.nodes["x"].incarnation)}


def test_a_restarted_member_held_left_at_a_spoofed_incarnation_is_told_and_refutes() -> None:
    net = Net(["a", "b"])
    big = 2**62
    # x was spoofed out while it was down: both hold it LEFT far above its clock
    for node in net.nodes.values():
        node.members["x"] = Member("x", addr("x"), state=LEFT, incarnation=big)
    x = SwimState(Member("x", addr("x"), incarnation=1000), CFG, random.Random(9))
    net.nodes["x"] = x
    for other in ("a", "b"):
        x.learn(net.nodes[other].local, net.now)
    net.run(3.0)  # x pings them; they tell it it left; it refutes
    assert x.incarnation == big + 1
    assert net.views("x") == {(ALIVE, big + 1)}


# ------------------------------------------------------------------ 4. reflection: unconfirmed members


def test_new_members_from_datagrams_go_through_a_token_bucket() -> None:
    a = make()
    for message in in_batches(invented(400)):
        a.receive("b", message, 1.0)
    assert sum(i.startswith("evil") for i in a.members) == CFG.new_members_burst == 200
    assert a.stats.new_members_rate_limited == 200
    for message in in_batches(invented(400, start=400)):
        a.receive("b", message, 2.0)  # one second later: 50 more
    assert sum(i.startswith("evil") for i in a.members) == 250
    # a hint from the router (a link came up) is not limited
    assert changes(a.learn(Member("real", addr("real")), 2.0))


def test_members_tracked_are_bounded_and_down_ones_make_room() -> None:
    config = SwimConfig(max_members=10, new_members_burst=1000)
    a = make("a", ["b", "c"], config)
    a.receive("b", gossip(*invented(20)), 1.0)
    assert len(a.members) == 10
    assert a.stats.new_members_over_limit == 12
    a.members["c"] = Member("c", addr("c"), state=FAILED)
    a.failed_at["c"] = 1.0
    a.receive("b", gossip(upd("alive", "newcomer", 1, {})), 2.0)
    assert "newcomer" in a.members and "c" not in a.members and len(a.members) == 10


def test_unconfirmed_members_get_no_broadcasts_no_piggyback_no_indirect_probes() -> None:
    a = make("a", ["b", "c"])
    a.receive("b", gossip(*invented(50)), 1.0)
    assert not a.confirmed("evil0") and a.confirmed("b")
    assert a.size() == 3  # gossip does not stretch the suspicion timeout
    out = a.set_tags({"v": "1"}, 1.0)
    assert {s.to for s in sends(out)} == {"b", "c"}
    now = 1.0
    for _ in range(100):
        for s in sends(a.tick(now)):
            if s.address == VICTIM and s.message["t"] == "gossip":  # an accusation, told to the accused
                assert [u[1] for u in s.message["u"]] == [s.to]
            elif s.address == VICTIM:
                assert s.message["t"] == "ping" and "u" not in s.message
        now += 0.05
    assert not any(
        s.message["t"] == "ping-req" and s.message["target"].startswith("evil") for s in sends(a.tick(now))
    )


def test_unconfirmed_members_take_at_most_every_other_probe() -> None:
    a = make("a", ["b", "c"])
    a.receive("b", gossip(*invented(50)), 0.0)
    targets = []
    for k in range(400):  # 20 s of 50 ms ticks: 20 probe rounds
        now = k * 0.05
        for s in sends(a.tick(now)):
            if s.message["t"] == "ping":
                targets.append(s.to if s.to in ("b", "c") else "evil")
                if s.to in ("b", "c"):
                    a.receive(s.to, {"t": "ack", "seq": s.message["seq"]}, now)
    assert len(targets) == 20
    assert targets.count("evil") == 10 and targets.count("b") == targets.count("c") == 5


def test_four_hundred_invented_members_cost_a_bounded_number_of_datagrams() -> None:
    """The reflection of the issue: >200,000 datagrams to the victim; now a few per probe round."""
    net = Net(["a", "b", "c"])
    for message in in_batches(invented(400)):
        for to in net.nodes:
            net.inject(to, "b", message)
    net.run(20.0)
    at_victim = [s for s in net.to_outsiders if s.address == VICTIM]
    # per node: one ping every other probe turn (2/s at most), a suspect and a failed notice each
    assert len(at_victim) <= 3 * (20 * 2 + 2 * 200)
    assert all("u" not in s.message or s.message["t"] == "gossip" for s in at_victim)
    for nid in net.nodes:
        assert net.views(nid) == {(ALIVE, 0)}


def test_an_unconfirmed_member_that_answers_is_confirmed_and_reported() -> None:
    a = make("a", [])
    assert changes(a.receive("b", gossip(upd("alive", "z", 1, {})), 0.0))
    assert not a.confirmed("z")
    ping = next(s for s in sends(a.tick(0.0)) if s.message["t"] == "ping")
    assert ping.to == "z" and "u" not in ping.message
    (change,) = changes(a.receive("z", {"t": "ack", "seq": ping.message["seq"]}, 0.1))
    assert change.id == "z" and a.confirmed("z")


def test_an_unconfirmed_member_that_fails_is_not_probed_as_dead_and_is_forgotten() -> None:
    a = make("a", ["b"])
    a.receive("b", gossip(upd("alive", "z", 1, {})), 0.0)
    a.receive("b", gossip(upd("failed", "z", 1)), 0.0)
    assert a.members["z"].state == FAILED
    now = 0.0
    while now < CFG.dead_probe_window + 2:
        assert not [s for s in sends(a.tick(now)) if s.to == "z" and s.message["t"] == "ping"]
        now += 0.5
    assert "z" not in a.members


def test_ping_reqs_only_from_confirmed_members_and_bounded() -> None:
    a = make("a", ["b"])
    a.receive("b", gossip(upd("alive", "z", 1, {})), 0.0)
    req = {"t": "ping-req", "seq": 1, "target": "v", "addr": VICTIM}
    assert a.receive("z", dict(req), 0.0) == []  # unconfirmed
    assert a.receive("stranger", dict(req), 0.0) == []  # unknown
    assert a.stats.ping_reqs_refused == 2
    for i in range(MAX_RELAYS + 10):
        a.receive("b", {**req, "seq": i}, 0.0)
    assert len(a._relays) == MAX_RELAYS


def test_a_strangers_ping_is_answered_without_piggyback() -> None:
    a = make("a", ["b"])
    a.set_tags({"big": "x" * 4000}, 0.0)
    (ack,) = sends(a.receive("stranger", {"t": "ping", "seq": 3, "addr": VICTIM}, 0.0))
    assert ack.message == {"t": "ack", "seq": 3}


# ------------------------------------------------------------------ 5. property tests

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=12,
)
ints = st.one_of(
    st.integers(0, 10),
    st.integers(U64_MAX - 2, U64_MAX + 2),
    st.integers(-5, -1),
    st.just(HUGE),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
)
ids = st.one_of(st.sampled_from(["a", "b", "c", "z", "evil"]), st.text(max_size=300), json_values)
addresses = st.one_of(
    st.sampled_from([addr("z"), VICTIM, "127.0.0.1\x00:1", "h:99999", "[::1]:1"]),
    st.builds(lambda h, p: f"{h}:{p}", st.text(max_size=260), st.integers(-1, 70000)),
    json_values,
)
tags = st.one_of(
    st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), json_values
)
updates = st.one_of(
    st.lists(
        st.one_of(
            st.sampled_from(["alive", "suspect", "failed", "left", "zombie"]), ids, addresses, ints, tags
        )
    ),
    st.tuples(st.sampled_from(["alive", "suspect", "failed", "left"]), ids, addresses, ints, tags).map(list),
    json_values,
)
messages = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"t": st.sampled_from(["ping", "ack", "ping-req", "gossip", "pong"])},
        optional={
            "seq": ints,
            "u": st.one_of(st.lists(updates, max_size=6), json_values),
            "target": ids,
            "addr": addresses,
        },
    ),
)
PROPERTY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_bounded(state: SwimState, actions: list[Any]) -> None:
    assert len(state.members) <= state.config.max_members
    assert len(state._gossip) <= MAX_QUEUED and len(state._relays) <= MAX_RELAYS
    assert 0 <= state.incarnation <= U64_MAX
    assert all(0 <= m.incarnation <= U64_MAX for m in state.members.values())
    assert_encodable(actions)


@PROPERTY
@given(sender=ids, message=messages)
def test_property_receive_raises_only_value_error_and_stays_bounded(sender: Any, message: Any) -> None:
    state = make("a", ["b", "c"], SwimConfig(max_members=8))
    try:
        actions = state.receive(sender, message, 1.0)
    except ValueError:
        return
    check_bounded(state, actions)
    check_bounded(state, state.tick(1.05))


@PROPERTY
@given(message=messages)
def test_property_parse_message_is_total(message: Any) -> None:
    try:
        parsed = parse_message(message)
    except ValueError:
        return
    for update in parsed.updates:
        assert check_update(update) == update
        Address.parse(update[2])
        assert 0 <= update[3] <= U64_MAX


VALID = [
    {"t": "ping", "seq": 1, "u": [upd("alive", "z", 2, {"k": "v"}), upd("suspect", "b", 0)]},
    {"t": "ack", "seq": 1, "via": "c"},
    {"t": "ping-req", "seq": 9, "target": "z", "addr": addr("z")},
    gossip(upd("failed", "c", 0), upd("left", "a", 3)),
]


def mutate(value: Any, draw: Any) -> Any:
    """Replace one value somewhere in ``value`` (a JSON-like structure) with a random one."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(value[key], draw)}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(value[i], draw), *value[i + 1 :]]
    return draw(st.one_of(ints, ids, addresses, tags, json_values))


@PROPERTY
@given(data=st.data(), which=st.integers(0, len(VALID) - 1))
def test_property_mutated_valid_messages(data: Any, which: int) -> None:
    state = make("a", ["b", "c"], SwimConfig(max_members=8))
    message = mutate(VALID[which], data.draw)
    try:
        actions = state.receive("b", message, 1.0)
    except ValueError:
        return
    check_bounded(state, actions)


@PROPERTY
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_property_address_parse(text: str) -> None:
    try:
        parsed = Address.parse(text)
    except ValueError:
        return
    assert 0 <= parsed.port <= 65535 and 0 < len(parsed.host) <= MAX_HOST_CHARS
    assert parsed.host.isprintable() and "\x00" not in parsed.host
    assert Address.parse(str(parsed)) == parsed


def test_a_router_hint_swim_could_not_carry_is_refused_and_counted() -> None:
    a = make("a", ["b"])
    for member in (
        Member("x" * (MAX_ID_BYTES + 1), addr("x")),
        Member("x", addr("x"), {"k": "v" * 5000}),
        Member("x\x00", addr("x")),
        Member("x", addr("x"), incarnation=U64_MAX + 1),
    ):
        assert a.learn(member, 1.0) == []
    assert a.stats.hints_refused == 4 and set(a.members) == {"b"}
