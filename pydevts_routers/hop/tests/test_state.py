"""HopState in a steady network: routes, exactly-once broadcast, unicast, transmissions.

Every test runs many hop routers in :class:`Network` (core's deterministic
simulator: no sockets, a virtual clock) and compares what they do with an independent BFS.
"""

from __future__ import annotations

import random

import pytest
from hoptest import adjacency, broadcast_from, check_routes, distances, event, send_between
from pydevts.errors import LocalProtocolError, UnknownNodeError
from pydevts.members import Member, MemberState
from pydevts_hop import HopConfig, HopState, MemberChange, Send
from pydevts_hop.simulation import Network, bridged, line, random_sparse, ring
from pydevts_hop.wire import Advert, decode, encode_advert

TOPOLOGIES = {
    "line10": line(10),
    "ring12": ring(12),
    "bridged": bridged(5),
    "sparse50-1": random_sparse(50, 25, random.Random(1)),
    "sparse50-2": random_sparse(50, 10, random.Random(2)),
    "sparse50-3": random_sparse(50, 40, random.Random(3)),
}


def network(edges: list[tuple[str, str]], rng: random.Random | None = None) -> Network:
    net = Network(HopConfig(max_neighbours=0), rng=rng)
    net.build(edges)
    return net


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_routes_match_bfs_next_hop_and_distance(name: str) -> None:
    edges = TOPOLOGIES[name]
    net = network(edges)
    check_routes(net, edges)


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_every_emit_reaches_every_other_node_exactly_once(name: str) -> None:
    edges = TOPOLOGIES[name]
    net = network(edges)
    broadcast_from(net, sorted(net.nodes), edges, tag=1)  # while still flooding after the build
    net.settle()
    duplicates = sum(s.stats.broadcast_duplicates for s in net.nodes.values())
    broadcast_from(net, sorted(net.nodes), edges, tag=2)  # on the trees: no copy is wasted
    assert sum(s.stats.broadcast_duplicates for s in net.nodes.values()) == duplicates


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_every_send_reaches_its_target_exactly_once(name: str) -> None:
    edges = TOPOLOGIES[name]
    net = network(edges)
    ids = sorted(net.nodes)
    pairs = [(a, b) for a in ids for b in ids if a != b]
    if len(pairs) > 400:
        pairs = random.Random(name).sample(pairs, 400)
    send_between(net, pairs)


def test_converged_broadcast_costs_n_minus_1_frames_on_a_sparse_50_node_graph() -> None:
    edges = TOPOLOGIES["sparse50-1"]
    net = network(edges)
    n, links = len(net.nodes), len(edges)
    flooded = broadcast_from(net, ["r00"], edges, tag=1)
    assert n - 1 <= flooded <= 2 * links  # flooding right after a change: every link, at most both ways
    net.settle()
    before = [(s.stats.broadcast_duplicates, s.stats.broadcasts_flooded) for s in net.nodes.values()]
    ids = sorted(net.nodes)
    total = broadcast_from(net, ids, edges, tag=2)
    assert total == n * (n - 1)  # the ideal: one frame per receiving node
    assert [(s.stats.broadcast_duplicates, s.stats.broadcasts_flooded) for s in net.nodes.values()] == before


def test_random_delivery_order_still_converges_and_delivers_once() -> None:
    edges = TOPOLOGIES["sparse50-2"]
    net = network(edges, rng=random.Random(7))
    check_routes(net, edges)
    broadcast_from(net, sorted(net.nodes)[:10], edges, tag=1)
    net.settle()
    assert broadcast_from(net, sorted(net.nodes)[:10], edges, tag=2) == 10 * 49


def test_all_trees_agree_so_each_node_receives_from_its_parent() -> None:
    # Equal-cost paths everywhere (a grid): the smallest-id tie-break must be the same on every node.
    ids = [f"g{r}{c}" for r in range(5) for c in range(5)]
    edges = [(f"g{r}{c}", f"g{r}{c + 1}") for r in range(5) for c in range(4)]
    edges += [(f"g{r}{c}", f"g{r + 1}{c}") for r in range(4) for c in range(5)]
    net = network(edges)
    net.settle()
    assert broadcast_from(net, ids, edges) == 25 * 24
    check_routes(net, edges)
    assert net.nodes["g00"].route("g44") == ("g01", 8)  # smallest parent id wins every tie


def test_members_carry_address_tags_incarnation_next_hop_and_distance() -> None:
    net = Network(HopConfig(max_neighbours=0))
    net.add("a")
    net.add("b", incarnation=5, role="db")
    net.add("c")
    net.build([("a", "b"), ("b", "c")])
    assert net.members["c"]["a"] == MemberChange("a", "a:7000", {}, MemberState.ALIVE, "b", 2, 1)
    assert net.members["a"]["b"] == MemberChange("b", "b:7000", {"role": "db"}, MemberState.ALIVE, "b", 1, 5)
    assert net.members["a"]["b"].to_member() == Member(
        "b", "b:7000", {"role": "db"}, incarnation=5, next_hop="b", distance=1
    )
    assert net.members["c"]["a"].to_member().to_dict()["next_hop"] == "b"
    assert "a" not in net.members["a"]  # never itself


def test_set_tags_reaches_every_member_without_changing_routes() -> None:
    edges = line(4)
    net = network(edges)
    net.settle()
    net.set_tags("n0", role="web")
    net.set_tags("n0", role="api")
    net.run()
    assert net.members["n3"]["n0"].tags == {"role": "api"}
    assert not net.nodes["n3"].flooding(net.now)  # tags are no topology change
    check_routes(net, edges)


def test_a_link_is_used_only_once_both_adverts_confirm_it() -> None:
    a = HopState(Member("a", "a:1"))
    actions = a.link_up(Member("b", "b:1"), 0.0)
    sent = [decode(x.frame) for x in actions if isinstance(x, Send)]
    assert [adv.neighbours for adv in sent if isinstance(adv, Advert)] == [frozenset({"b"})]
    assert a.route("b") is None and not a.members  # b has not confirmed the link yet
    b_advert = Advert("b", 1, 1, "b:1", {}, frozenset({"a"}))
    changes = [x for x in a.receive("b", encode_advert(b_advert), 0.0) if isinstance(x, MemberChange)]
    assert [c.member_id for c in changes] == ["b"] and a.route("b") == ("b", 1)


def test_send_to_an_unknown_node_or_itself_is_refused_clearly() -> None:
    net = network(line(3))
    with pytest.raises(UnknownNodeError, match="'zz': not a member of this cluster"):
        net.send("n0", "zz", event("x", 0))
    with pytest.raises(LocalProtocolError, match="its own node"):
        net.send("n0", "n0", event("x", 0))
    with pytest.raises(LocalProtocolError, match="core frames only"):
        net.send("n0", "n2", b"\x42oops")


def test_unicast_to_a_neighbour_is_the_raw_core_frame() -> None:
    net = network(line(3))
    actions = net.nodes["n0"].send("n1", event("x", 1), net.now)
    assert actions == [Send("n1", event("x", 1))]
    relayed = net.nodes["n0"].send("n2", event("x", 2), net.now)
    assert isinstance(relayed[0], Send) and relayed[0].frame[0] == 0x43


def test_adverts_follow_bfs_distances_on_a_line() -> None:
    edges = line(10)
    net = network(edges)
    dist = distances(adjacency(edges), "n0")
    assert {m: r.distance for m, r in net.members["n0"].items()} == {k: v for k, v in dist.items() if v}
