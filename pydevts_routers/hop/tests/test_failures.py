"""HopState when things break: cuts, the only bridge, loops, bad frames, leave, restart."""

from __future__ import annotations

import math
import pickle
import random
import re
from collections import Counter

import pytest
from hoptest import broadcast_from, check_routes, event, send_between
from pydevts.errors import LocalProtocolError, UnknownNodeError
from pydevts.members import MemberState
from pydevts.wire import ERROR, ErrorCode, decode_message, encode_request
from pydevts_hop import HopConfig, HopWireError
from pydevts_hop.simulation import Network, bridged, random_sparse, ring
from pydevts_hop.wire import Advert, encode_advert, encode_broadcast, encode_unicast

CONFIG = HopConfig(max_neighbours=0)
BOUND_TICKS = math.ceil(CONFIG.reconvergence_bound / CONFIG.tick_interval)  # 7 ticks = 3.5 s


def network(edges: list[tuple[str, str]], config: HopConfig = CONFIG) -> Network:
    net = Network(config)
    net.build(edges)
    net.settle()
    return net


def tick_until_noticed(net: Network, a: str, b: str) -> int:
    """Tick until ``a`` or ``b`` notices the cut link; leave the frames of that tick in flight."""
    for ticks in range(1, 100):
        net.tick(deliver=False)
        if b not in net.nodes[a].links or a not in net.nodes[b].links:
            return ticks
        net.run()
    raise AssertionError(f"the cut {a}-{b} was never noticed")


def without(edges: list[tuple[str, str]], *gone: tuple[str, str]) -> list[tuple[str, str]]:
    drop = {frozenset(e) for e in gone}
    return [e for e in edges if frozenset(e) not in drop]


# ------------------------------------------------------------------ link cuts


def test_a_silently_cut_link_is_routed_around_within_the_documented_bound() -> None:
    edges = ring(12)
    net = network(edges)
    assert net.nodes["n03"].route("n00") == ("n02", 3)
    net.cut("n00", "n01")
    net.tick(BOUND_TICKS - 6)  # nothing heard for 0.5 s: not failed yet
    assert net.nodes["n03"].route("n00") == ("n02", 3)
    net.tick(6)
    remaining = without(edges, ("n00", "n01"))
    check_routes(net, remaining)
    assert net.nodes["n03"].route("n00") == ("n04", 9)
    assert net.members["n03"]["n00"].next_hop == "n04"
    send_between(net, [("n03", "n00"), ("n00", "n01"), ("n01", "n11")])
    broadcast_from(net, sorted(net.nodes), remaining)


def test_a_closed_link_is_routed_around_at_once() -> None:
    edges = ring(12)
    net = network(edges)
    net.unlink("n00", "n01")
    net.run()
    check_routes(net, without(edges, ("n00", "n01")))


def test_a_broadcast_sent_while_views_disagree_still_reaches_everyone_once() -> None:
    edges = ring(12)
    net = network(edges)
    net.cut("n00", "n01")
    assert tick_until_noticed(net, "n00", "n01") <= BOUND_TICKS  # its adverts are still in flight
    # n03's view is stale: in its tree n00 and n11 hang below n01, over the cut link.
    assert net.nodes["n03"].route("n11") == ("n02", 4)
    remaining = without(edges, ("n00", "n01"))
    broadcast_from(net, ["n03", "n07"], remaining, tag=1)  # runs the queue: adverts and broadcasts race
    flooded = sum(s.stats.broadcasts_flooded for s in net.nodes.values())
    assert flooded > 0  # the fallback did the work
    net.settle()
    assert broadcast_from(net, sorted(net.nodes), remaining, tag=2) == 12 * 11


def test_cutting_the_only_bridge_makes_the_far_side_unreachable_and_restoring_heals() -> None:
    edges = bridged(5)
    net = network(edges)
    net.cut("x", "b0")
    net.tick(BOUND_TICKS)
    assert frozenset(("x", "b0")) not in net.links
    with pytest.raises(UnknownNodeError, match=r"'b3': unreachable: no route to it from a1"):
        net.send("a1", "b3", event("a1", 1))
    with pytest.raises(UnknownNodeError, match="unreachable"):
        net.send("b2", "x", event("b2", 1))
    for a in ("a0", "a4", "x"):
        assert {net.members[a][b].state for b in ("b0", "b1", "b4")} == {MemberState.FAILED}
    for b in ("b0", "b4"):
        assert {net.members[b][a].state for a in ("a0", "a3", "x")} == {MemberState.FAILED}
        assert net.members[b][a].next_hop is None and net.members[b][a].distance is None
    remaining = without(edges, ("x", "b0"))
    check_routes(net, remaining)
    broadcast_from(net, ["a1", "x", "b1"], remaining)  # each side hears its own side only

    net.link("x", "b0")  # the bridge is back
    net.run()
    check_routes(net, edges)
    assert {net.members["a2"][b].state for b in ("b0", "b1", "b4")} == {MemberState.ALIVE}
    assert net.members["a2"]["b4"].distance == 4 and net.members["a2"]["b4"].next_hop == "a0"
    send_between(net, [("a1", "b3"), ("b2", "a4")])
    # each side missed the other's broadcasts during the cut: the next one may wait reorder_wait
    broadcast_from(net, ["a1", "b3"], edges, after_gaps=True)


def test_a_request_caught_by_a_cut_is_answered_unreachable_on_the_destination_behalf() -> None:
    net = network(bridged(5))
    net.cut("x", "b0")
    tick_until_noticed(net, "x", "b0")
    assert net.nodes["a1"].route("b3") is not None  # a1 has not heard yet
    net.send("a1", "b3", encode_request(42, "add", b"[1]"))
    net.run()
    (reply,) = [(o, f) for o, f in net.delivered["a1"] if f[0] == ERROR]
    msg = decode_message(reply[1])
    assert reply[0] == "b3" and msg.request_id == 42 and msg.code == ErrorCode.UNREACHABLE
    assert re.fullmatch(rb"b3 is unreachable: no route to it from (x|a0)", msg.payload)  # whoever knew first


# ------------------------------------------------------------------ loops


def _inconsistent_pair() -> Network:
    """a and b linked; forged adverts make a route c via b, and b route c via a."""
    net = network([("a", "b")])
    a, b = net.nodes["a"], net.nodes["b"]
    seq_a, seq_b = a.adverts["a"].seq, b.adverts["b"].seq
    net._apply(
        "a", a.receive("b", encode_advert(Advert("b", 1, seq_b + 9, "b:1", {}, frozenset("ac"))), net.now)
    )
    net._apply("a", a.receive("b", encode_advert(Advert("c", 1, 1, "c:1", {}, frozenset("b"))), net.now))
    net._apply(
        "b", b.receive("a", encode_advert(Advert("a", 1, seq_a + 9, "a:1", {}, frozenset("bc"))), net.now)
    )
    net._apply("b", b.receive("a", encode_advert(Advert("c", 1, 1, "c:1", {}, frozenset("a"))), net.now))
    net.run()
    assert a.route("c") == ("b", 2) and b.route("c") == ("a", 2)
    return net


def test_a_unicast_between_inconsistent_views_dies_by_its_hop_limit() -> None:
    net = _inconsistent_pair()
    before = net.frames[0x43]
    net.send("a", "c", event("a", 1))
    net.run(max_steps=1000)
    hop_limit = 2 * 2 + CONFIG.hop_slack
    assert net.frames[0x43] - before == hop_limit
    assert sum(s.stats.hop_limit_drops for s in net.nodes.values()) == 1
    net.send("a", "c", encode_request(7, "x", b""))
    net.run(max_steps=1000)
    (origin, frame) = net.delivered["a"][-1]
    assert origin == "c" and decode_message(frame).code == ErrorCode.UNREACHABLE


def test_a_broadcast_between_inconsistent_views_ends_and_is_delivered_once() -> None:
    net = _inconsistent_pair()
    net.broadcast("a", event("a", 1))
    net.run(max_steps=1000)
    assert Counter(net.delivered["b"])[("a", event("a", 1))] == 1


# ------------------------------------------------------------------ bad frames


def test_malformed_frames_are_refused_and_change_nothing() -> None:
    net = network(ring(6))
    state = net.nodes["n0"]
    good = [
        encode_advert(Advert("n3", 1, 99, "n3:7000", {}, frozenset({"n2"}))),
        encode_broadcast("n3", 1, 500, 4, event("n3", 1)),
        encode_unicast("n3", "n0", 4, event("n3", 1)),
    ]
    headers = (len(good[0]) - 1, 19 + 1 + 2, 3 + 1 + 2 + 1 + 2)  # the broadcast/unicast up to their frame
    bad = [g[:n] for g, h in zip(good, headers, strict=True) for n in range(1, h + 1)]
    bad += [b"", b"\x40{}", b"\x45", b"\x44\x00", good[0][:-1] + b"\xff", good[1][:1] + b"\x08" + good[1][2:]]
    snapshot = pickle.dumps(state)
    for frame in bad:
        with pytest.raises(HopWireError):
            state.receive("n1", frame, net.now + 1)
        with pytest.raises(ValueError):
            state.receive("stranger", frame, net.now + 1)
    assert pickle.dumps(state) == snapshot


def test_frames_from_a_neighbour_without_a_link_are_counted_and_ignored() -> None:
    net = network(ring(4))
    state = net.nodes["n0"]
    assert state.receive("n2", encode_unicast("n2", "n0", 3, event("n2", 1)), net.now) == []
    assert state.stats.from_unlinked == 1


# ------------------------------------------------------------------ leave, crash, restart, purge


def test_a_node_that_leaves_is_left_not_failed_and_is_routed_around() -> None:
    edges = ring(8)
    net = network(edges)
    net.leave("n2")
    assert {net.members[n]["n2"].state for n in net.nodes if n != "n2"} == {MemberState.LEFT}
    with pytest.raises(LocalProtocolError, match="has left"):
        net.broadcast("n2", event("n2", 1))
    with pytest.raises(UnknownNodeError, match="it left the cluster"):
        net.send("n1", "n2", event("n1", 1))
    del net.nodes["n2"]
    check_routes(net, without(edges, ("n1", "n2"), ("n2", "n3")))


def test_a_crashed_node_is_failed_then_comes_back_with_a_new_incarnation() -> None:
    edges = ring(8)
    net = network(edges)
    for i in range(3):
        net.broadcast("n5", event("n5", i))
    net.run()
    net.crash("n5")
    net.tick(BOUND_TICKS)
    assert {net.members[n]["n5"].state for n in net.nodes} == {MemberState.FAILED}
    check_routes(net, without(edges, ("n4", "n5"), ("n5", "n6")))

    net.add("n5", incarnation=2)
    net.link("n5", "n4")
    net.link("n5", "n6")
    net.run()
    check_routes(net, edges)
    assert {net.members[n]["n5"].incarnation for n in net.nodes if n != "n5"} == {2}
    broadcast_from(net, ["n5"], edges, tag=0)  # seq 1 again, of the new run: delivered


def test_unreachable_nodes_are_purged_after_purge_after() -> None:
    config = HopConfig(max_neighbours=0, purge_after=10.0)
    net = network(ring(6), config)
    net.crash("n3")
    net.tick(BOUND_TICKS)
    assert net.members["n0"]["n3"].state is MemberState.FAILED
    net.tick(int(10.0 / config.tick_interval))
    state = net.nodes["n0"]
    assert "n3" not in state.adverts and "n3" not in state.members
    assert state.statistics()["known_nodes"] == 5 and state.stats.purged == 1


def test_idle_links_stay_up_on_keepalives() -> None:
    net = network(ring(5))
    net.tick(200)
    assert all(s.stats.links_timed_out == 0 for s in net.nodes.values())
    assert all(s.stats.keepalives_sent > 0 for s in net.nodes.values())
    check_routes(net, ring(5))


# ------------------------------------------------------------------ churn


def test_under_random_churn_no_node_ever_delivers_a_broadcast_twice() -> None:
    rng = random.Random(11)
    edges = random_sparse(30, 20, rng)
    net = Network(CONFIG, rng=random.Random(12))
    net.build(edges)
    down: set[tuple[str, str]] = set()
    sent = 0
    for _ in range(120):
        roll = rng.random()
        if roll < 0.15:
            e = rng.choice(edges)
            down.add(e)
            net.cut(*e)
        elif roll < 0.25:
            e = rng.choice(edges)
            down.add(e)
            net.unlink(*e)
        elif roll < 0.4 and down:
            e = rng.choice(sorted(down))
            down.discard(e)
            net.unlink(*e)
            net.link(*e)
        elif roll < 0.8:
            origin = rng.choice(sorted(net.nodes))
            net.broadcast(origin, event(origin, sent))
            sent += 1
        else:
            net.tick(rng.randrange(1, 4), deliver=rng.random() < 0.5)
        if rng.random() < 0.5:
            net.run()
    net.run()
    for node, got in net.delivered.items():
        counts = Counter(got)
        assert max(counts.values(), default=1) == 1, f"{node} delivered a broadcast twice"
        assert all(origin != node for origin, _ in got)
    for e in sorted(down):  # heal everything: back to exactly-once to everyone, on trees
        net.unlink(*e)
        net.link(*e)
    net.tick(BOUND_TICKS)
    net.settle()
    check_routes(net, edges)
    # broadcasts lost during the churn leave gaps: the next one may wait reorder_wait
    assert broadcast_from(net, sorted(net.nodes), edges, tag=10_000, after_gaps=True) == 30 * 29


def test_a_full_table_makes_room_for_a_newcomer_by_forgetting_the_longest_gone() -> None:
    config = HopConfig(max_neighbours=0, max_nodes=6)  # a ring of 6 fills it
    net = network(ring(6), config)
    net.crash("n3")
    net.tick(BOUND_TICKS)
    net.crash("n4")
    net.tick(BOUND_TICKS)
    assert net.members["n0"]["n3"].state is MemberState.FAILED
    state = net.nodes["n0"]
    assert len(state.adverts) == 6
    net.add("n9")
    net.link("n9", "n0")
    net.run()
    assert "n9" in state.adverts and state.route("n9") == ("n9", 1)  # the newcomer counts
    assert "n3" not in state.adverts and "n4" in state.adverts  # n3 had been gone longest
    assert state.stats.purged == 1 and len(state.adverts) == 6
