"""The router contract on the simulator: :func:`check_router_simulated`.

The same rules as :func:`pydevts.testing.check_router` (which runs real
nodes), run on the deterministic simulator (:mod:`pydevts.testing.sim`)
against a :class:`~pydevts.routing.machine.RouterMachine`: virtual time, no
sockets, no tasks, and the same seed gives the same run, so a failure comes
with a seed that replays it exactly::

    def test_my_router_honours_the_contract():
        check_router_simulated(MyRouter)

Each rule runs on a fresh :class:`~pydevts.testing.sim.Simulation` of
``nodes`` nodes (``r0`` ... ``r4``, all joining through ``r0`` at once
unless the rule says), once for each of ``seeds`` seeds from ``seed`` on.
The rules, in the order they run (``sim_contract/rules.py``):

``join``
    every node joins through ``r0``; each sees every node alive and got a
    ``joined`` event for each other node.
``exactly-once emit``
    each node broadcasts once: every other node gets it exactly once, the sender never.
``send and request``
    ``send`` reaches its destination only; a request (a send whose handler
    sends the answer back) is answered; a send to an unknown id raises
    ``UnknownNodeError``.
``graceful leave``
    a node that leaves is seen ``left`` (never ``failed``) by the others.
``join through any member``
    a new node joins through the last member (not ``r0``): everyone sees
    everyone, events flow between all.
``concurrent joins``
    three nodes join at the same instant through three different members:
    one full view, events flow between all.
``per-sender order``
    one node broadcasts ``events`` numbered events and sends as many to one
    member, all at the same instant: each receiver gets them in order, exactly once.
``crash of a member`` / ``crash of the first node``
    ``r3`` (resp. ``r0``, the node everyone joined through) crashes: no
    goodbye, its links reset (the peers' ends break half a second later and
    redialling it is refused, as when a process is killed). Every survivor
    marks it ``failed`` within ``failure_timeout``; the survivors form one
    cluster (events flow between all), and a new node joins through one.
``silent crash`` (simulation only)
    the same, but the host goes silent with no reset (a lost machine, a
    pulled cable): only a failure detector (probes, silence) can notice.
    Run when ``detects_silence`` (by default: when the machine sets
    ``hears`` or ``uses_datagrams``), or when named in ``rules``.
``partition and heal``
    the cluster is split in two halves (the links across reset, dials across
    time out); within ``failure_timeout`` each side lists only itself alive;
    after the heal, within ``heal_timeout``, every node lists every node
    alive again and events flow between all. Islands are merged the way a
    node does (``Node(merge_interval=...)``): see ``merge_interval``.
``restart with the same id``
    ``r1`` crashes and a new incarnation joins through ``r0`` at once:
    within ``failure_timeout + step_timeout`` everyone lists it alive, and
    events flow to and from it.
``link churn``
    two nodes broadcast ``events`` numbered events each, one every 5 ms,
    while ``resets`` links between random pairs reset (the host resumes
    them, as the real one does): every receiver gets each sender's events in
    order, exactly once.

After every rule: each node got each author's events in order
(:meth:`~pydevts.testing.sim.Simulation.check_order`), and no router refused
a frame (``receive`` raised). An exception from the machine (in strict mode,
its ``timer`` too) fails the rule, chained.

A run is reproducible only if the machine's own randomness is seeded too
(a ``random.Random()`` without a seed draws from the OS): give it one in
``make``, e.g. ``counter = itertools.count(); make = lambda:
MyRouter(seed=next(counter))`` (``make`` is called once more, first, to
read the machine's class attributes).

``AssertionError`` names the first broken rule, the seed, and what was seen,
e.g. ``router contract (simulated, seed 0), rule 'crash of the first node':
no one cluster of the survivors ['r1', 'r2', 'r3', 'r4'] after r0 crashed
within 15 s: r1 lists ['r1'] alive; ...``. Replay it with ``seed=0, seeds=1,
rules=[...]``.

Options (keywords; times are virtual seconds, which cost only CPU):

- ``seed`` (0), ``seeds`` (3): each rule runs with seeds ``seed`` ..
  ``seed + seeds - 1`` (jitter, the order of simultaneous events, churn);
- ``nodes`` (5, at least 3): the cluster size;
- ``failure_timeout`` (10 s): how soon a crashed member, or the other side
  of a partition, must be marked down;
- ``heal_timeout`` (10 s): how soon a healed partition must be one cluster again;
- ``step_timeout`` (15 s): any other wait (joins, deliveries);
- ``settle`` (1 s): how long to go on after the last awaited delivery, for
  a duplicate to show up;
- ``events`` (200), ``resets`` (6): the sizes of the order and churn rules;
- ``merge_interval`` (1 s, ``None``: off): each node dials the node it
  joined through when it sees that node down but reachable, as a node's
  island merge does (the real contract's nodes run with ``merge_interval=1.0``);
- ``detects_silence`` (``None``: see ``silent crash``);
- ``conditions``: the network (:class:`~pydevts.testing.sim.NetworkConditions`;
  by default 10 ms one way plus up to 5 ms of jitter, no datagram loss);
- ``rules``: run only these rules (names as above), ``skip``: all but these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from ...routing.machine import RouterMachine
from ..sim import NetworkConditions
from .cluster import SimCluster, SimOptions
from .rules import SIM_RULES

__all__ = ["SIM_RULE_NAMES", "check_router_simulated"]

#: The simulated contract's rules, in the order they run.
SIM_RULE_NAMES = tuple(SIM_RULES)


def check_router_simulated(
    make: Callable[[], RouterMachine],
    *,
    seed: int = 0,
    seeds: int = 3,
    nodes: int = 5,
    failure_timeout: float = 10.0,
    heal_timeout: float = 10.0,
    step_timeout: float = 15.0,
    settle: float = 1.0,
    events: int = 200,
    resets: int = 6,
    merge_interval: float | None = 1.0,
    detects_silence: bool | None = None,
    conditions: NetworkConditions | None = None,
    rules: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> None:
    """Check that machines made by ``make()`` honour the router contract, in the simulator.

    Raises ``AssertionError`` naming the first rule broken and its seed (see
    the module documentation for the rules and the options).
    """
    if nodes < 3:
        raise ValueError(f"the router contract needs at least 3 nodes, got {nodes}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    unknown = sorted((set(rules or ()) | set(skip)) - set(SIM_RULES))
    if unknown:
        raise ValueError(f"unknown router contract rules {unknown}; the rules are {list(SIM_RULES)}")
    if detects_silence is None:
        kind = type(make())
        detects_silence = kind.hears or kind.uses_datagrams
    options = SimOptions(
        nodes=nodes,
        failure_timeout=failure_timeout,
        heal_timeout=heal_timeout,
        step_timeout=step_timeout,
        settle=settle,
        events=events,
        resets=resets,
        merge_interval=merge_interval,
        conditions=conditions,
    )
    for name, rule in SIM_RULES.items():
        if (rules is not None and name not in rules) or name in skip:
            continue
        if name == "silent crash" and not detects_silence and (rules is None or name not in rules):
            continue
        for run_seed in range(seed, seed + seeds):
            cluster = SimCluster(make, options, run_seed)
            where = f"router contract (simulated, seed {run_seed}), rule {name!r}"
            try:
                rule(cluster)
                cluster.final_checks()
            except AssertionError as exc:
                raise AssertionError(f"{where}: {exc}") from None
            except Exception as exc:
                at = cluster.sim.now
                raise AssertionError(f"{where}: {type(exc).__name__} at t={at:.3f}: {exc}") from exc
