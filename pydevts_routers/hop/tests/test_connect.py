"""HopState's own links: whom it connects to, backoff, and healing after a partition."""

from __future__ import annotations

import math

from hoptest import broadcast_from, check_routes
from pydevts.members import MemberState
from pydevts_hop import HopConfig
from pydevts_hop.simulation import Network, bridged, full_mesh, names

CONFIG = HopConfig()  # max_neighbours=8: nodes open links on their own
BOUND_TICKS = math.ceil(CONFIG.reconvergence_bound / CONFIG.tick_interval)


def two_sites() -> tuple[Network, list[tuple[str, str]]]:
    """Sites A and B (each a LAN: everyone reaches everyone) and x, which reaches both."""
    a, b = names("a", 4), names("b", 4)
    reachable = [*full_mesh([*a, "x"]), *full_mesh([*b, "x"])]
    net = Network(CONFIG, reachable=reachable)
    # Everyone joins through one node it can reach: a0 for site A and x, x for site B.
    net.build([*[(n, "a0") for n in a[1:]], ("x", "a0"), *[(n, "x") for n in b]])
    return net, reachable


def test_nodes_link_to_every_member_they_can_reach_and_route_the_rest() -> None:
    net, reachable = two_sites()
    net.tick(int(CONFIG.connect_delay / CONFIG.tick_interval) + 2)
    assert set(net.links) == {frozenset(p) for p in reachable}
    check_routes(net, reachable)
    assert net.members["a1"]["b2"].next_hop == "x" and net.members["a1"]["b2"].distance == 2
    net.settle()
    broadcast_from(net, sorted(net.nodes), reachable)


def test_unreachable_members_are_retried_with_exponential_backoff() -> None:
    net, _ = two_sites()
    net.tick(int(30 / CONFIG.tick_interval))
    # 30 s of trying a1 -> b2: after 1, 2, 4, 8, 16 s: at most 6 attempts, not 60.
    assert 1 <= net.connects[("a1", "b2")] <= 6
    assert net.members["a1"]["b2"].state is MemberState.ALIVE  # through x all along


def test_the_smaller_id_connects_first_the_larger_waits() -> None:
    net = Network(CONFIG, reachable=full_mesh(["a", "hub", "m", "z"]))
    net.build([("m", "hub"), ("a", "hub"), ("z", "hub")])
    net.tick()
    assert set(net.connects) == {("a", "hub"), ("a", "m"), ("a", "z"), ("m", "z")} - {("a", "hub")}
    net.tick(int(CONFIG.connect_delay / CONFIG.tick_interval) + 1)
    assert {frozenset(p) for p in net.connects} == {
        frozenset(("a", "m")),
        frozenset(("a", "z")),
        frozenset("mz"),
    }
    assert len(net.links) == 6  # a full mesh, each pair opened once, by its smaller id


def test_max_neighbours_caps_the_links_a_node_opens() -> None:
    ids = names("n", 20)
    net = Network(HopConfig(max_neighbours=3), reachable=full_mesh(ids))
    net.build([(n, ids[0]) for n in ids[1:]])
    net.tick(20)
    opened = {n: sum(1 for (src, _dst) in net.connects if src == n) for n in ids}
    assert max(opened.values()) <= 3
    check_routes(net, [(min(p), max(p)) for p in net.links])


def test_a_lost_bridge_is_retried_until_it_is_back_and_the_cluster_heals() -> None:
    edges = bridged(4)
    net = Network(CONFIG, reachable=edges)
    net.build(edges)
    net.tick(10)
    assert net.reachable is not None
    net.reachable.discard(frozenset(("x", "b0")))  # the bridge's interface to site B goes down
    net.cut("x", "b0")
    net.tick(BOUND_TICKS)
    assert net.members["a1"]["b1"].state is MemberState.FAILED
    assert net.members["b1"]["x"].state is MemberState.FAILED
    net.tick(40)
    tries = net.connects[("x", "b0")] + net.connects[("b0", "x")]
    assert 2 <= tries <= 14  # both ends retry, backing off
    net.reachable.add(frozenset(("x", "b0")))  # the interface comes back
    net.tick(int(CONFIG.max_connect_backoff / CONFIG.tick_interval) + 1)
    assert frozenset(("x", "b0")) in net.links
    check_routes(net, edges)
    assert net.members["a1"]["b1"].state.value == "alive"  # (not `is`: mypy narrowed it above)


def test_a_node_left_without_any_link_tries_the_members_it_knows() -> None:
    """Its only neighbour crashed: to the others it is unreachable and they never linked to it,
    so it must dial them itself (found by the simulated contract, "crash of the first node")."""
    from pydevts_hop.dialer import Dialer
    from pydevts_hop.wire import Advert

    dialer = Dialer("r1", CONFIG)
    adverts = {n: Advert(n, 1, 1, f"{n}:7000") for n in ("r2", "r3", "r4")}
    # With a link (to someone else), unreachable members are left to the nodes that lost them.
    assert dialer.due(100.0, adverts, links={"r9"}, reachable=()) == []
    # With none, it tries them (smaller ids wait connect_delay first), within max_neighbours.
    alone = Dialer("r3", HopConfig(max_neighbours=1))
    first = alone.due(100.0, adverts, links=(), reachable=())
    assert [c.member_id for c in first] == ["r4"]  # r3 < r4 dials at once; one slot
    assert alone.due(100.0 + CONFIG.connect_delay, adverts, links=(), reachable=()) == []  # r4 in flight
