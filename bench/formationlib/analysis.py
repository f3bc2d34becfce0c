"""Turn one run's records into where the time went: phases, per-pair delays, dials, CPU, a chart.

Times are wall-clock seconds (``time.time()`` in each process). For an
ordered pair (observer ``o``, member ``m``):

* ``up(m)``       m's ``async with node`` returned (it has joined through n0)
* ``learned``     o's peer router first knew m (a ``sync`` or ``intro`` control
                  message, SWIM, or a link m opened): the earliest of these
* ``link``        o adopted a link to m (``PeerRouter.add_link``)
* ``view``        o's member view reported m ``joined``
* ``cb``          o's lifecycle callback got m's ``joined`` (what ``serf_compare`` measures)
"""

from __future__ import annotations

import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .run import RunRecord

MEMBER_STAGES = (
    ("up(m) -> o learned m", "up_m", "learned"),
    ("learned -> link up", "learned", "link"),
    ("link up -> view joined", "link", "view"),
    ("view joined -> callback", "view", "cb"),
    ("up(m) -> callback (total)", "up_m", "cb"),
    ("both up -> callback", "both_up", "cb"),
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": statistics.median(values),
        "p90": pct(values, 0.9),
        "max": max(values),
    }


def fmt_dist(d: dict[str, float], scale: float = 1000.0, unit: str = "ms") -> str:
    if not d.get("n"):
        return "-"
    return (
        f"p50 {d['p50'] * scale:7.0f}  p90 {d['p90'] * scale:7.0f}  max {d['max'] * scale:7.0f} {unit}"
        f"  (min {d['min'] * scale:.0f}, n={d['n']})"
    )


@dataclass
class Pair:
    observer: str
    member: str
    up_m: float | None = None
    both_up: float | None = None
    learned: float | None = None
    learned_via: str = ""
    heard: float | None = None
    link: float | None = None
    link_initiated: bool | None = None
    view: float | None = None
    cb: float | None = None


@dataclass
class Analysis:
    n: int
    ok: bool
    error: str
    figures: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    dials: dict[str, Any] = field(default_factory=dict)
    per_node: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    critical: list[str] = field(default_factory=list)
    chart: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


def _first(events: list[list[Any]], kind: str, subject: str, pred: Any = None) -> list[Any] | None:
    for ev in events:
        if ev[1] == kind and ev[2] == subject and (pred is None or pred(ev[3])):
            return ev
    return None


def _index(events: list[list[Any]]) -> dict[tuple[str, str], list[list[Any]]]:
    out: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for ev in events:
        out[(ev[1], ev[2])].append(ev)
    return out


def analyse(rec: RunRecord) -> Analysis:
    names = [f"n{i}" for i in range(rec.n)]
    a = Analysis(n=rec.n, ok=not rec.error, error=rec.error)
    if len(rec.dumps) < rec.n:
        a.ok = False
        return a
    cut = rec.t_dump or float("inf")  # nodes exit once asked for their records: ignore what follows
    dumps = {nm: {**d, "events": [ev for ev in d["events"] if ev[0] < cut]} for nm, d in rec.dumps.items()}
    ms = {nm: dumps[nm]["milestones"] for nm in names}
    idx = {nm: _index(dumps[nm]["events"]) for nm in names}
    a.missing = sorted({x for nm in names for x in dumps[nm].get("missing", [])})
    t0 = rec.t_first_launch
    up = {nm: ms[nm].get("started") for nm in names}

    # ---- pairs
    pairs: dict[tuple[str, str], Pair] = {}
    for o in names:
        ev = idx[o]
        for m in names:
            if m == o:
                continue
            p = Pair(o, m, up_m=up[m])
            if up[m] is not None and up[o] is not None:
                p.both_up = max(up[m], up[o])
            learn = ev.get(("learn", m), [])
            links = [e for e in ev.get(("link", m), []) if e[3]["outcome"] in ("adopted", "dup_replaced")]
            cands: list[tuple[float, str]] = [(e[0], str(e[3])) for e in learn[:1]]
            if links:
                cands.append((links[0][0], "link " + ("out" if links[0][3]["initiated"] else "in")))
            if cands:
                p.learned, p.learned_via = min(cands)
            heard = ev.get(("swim_heard", m), [])
            p.heard = heard[0][0] if heard else None
            if links:
                p.link, p.link_initiated = links[0][0], links[0][3]["initiated"]
            view = [e for e in ev.get(("view", m), []) if e[3] == "joined"]
            p.view = view[0][0] if view else None
            cb = [e for e in ev.get(("cb", m), []) if e[3] == "joined"]
            p.cb = cb[0][0] if cb else None
            pairs[(o, m)] = p

    for label, start, end in MEMBER_STAGES:
        vals = []
        for p in pairs.values():
            s, e = getattr(p, start), getattr(p, end)
            if s is not None and e is not None:
                vals.append(e - s)
        a.stages[label] = dist(vals)
    a.stages["learned via"] = dict(Counter(p.learned_via.split(":")[0] for p in pairs.values()))  # type: ignore[assignment]
    a.stages["swim heard before link"] = {  # type: ignore[assignment]
        "pairs": sum(
            1 for p in pairs.values() if p.heard is not None and p.link is not None and p.heard < p.link
        )
    }

    # ---- per-node phases of start-up (n1.., launched together)
    phase_defs = [
        ("launch -> exec", None, "exec"),
        ("exec -> main (interpreter)", "exec", "main"),
        ("main -> imported (pydevts)", "main", "imported"),
        ("imported -> join start", "imported", "join_start"),
        ("join start -> started", "join_start", "started"),
        ("launch -> started (up)", None, "started"),
        ("started -> complete (cb)", "started", "complete"),
    ]
    for label, s, e in phase_defs:
        vals = []
        for nm in names[1:]:
            start = rec.launched[nm] if s is None else ms[nm].get(s)
            end = ms[nm].get(e)
            if start is not None and end is not None:
                vals.append(end - start)
        a.phases[label] = dist(vals)
    joins = []
    for nm in names[1:]:
        b = idx[nm].get(("join_begin", ""), [])
        e = [x for k, v in idx[nm].items() if k[0] == "join_end" for x in v]
        if b and e:
            joins.append(e[0][0] - b[0][0])
    a.phases["join_or_start (connect+handshake n0)"] = dist(joins)

    # ---- headline figures
    completes = {nm: ms[nm].get("complete") for nm in names}
    view_done: dict[str, float | None] = {}
    link_done: dict[str, float | None] = {}
    for o in names:
        vt = [pairs[(o, m)].view for m in names if m != o]
        lt = [pairs[(o, m)].link for m in names if m != o]
        view_done[o] = max(vt) if all(v is not None for v in vt) else None  # type: ignore[type-var]
        link_done[o] = max(lt) if all(v is not None for v in lt) else None  # type: ignore[type-var]
    done = [t for t in completes.values() if t is not None]
    if len(done) == rec.n:
        t_done = max(done)
        last_up = max(v for v in up.values() if v is not None)
        last_imported = max(ms[nm]["imported"] for nm in names)
        a.figures = {
            "launch -> all complete (serf_compare (a))": t_done - t0,
            "last launch -> all complete": t_done - rec.t_last_launch,
            "last imported -> all complete": t_done - last_imported,
            "last up (started) -> all complete  [goal <= 0.5 s]": t_done - last_up,
            "first launch -> last up": last_up - t0,
            "last launch -> last up": last_up - rec.t_last_launch,
            "last up -> all views complete": max(v for v in view_done.values() if v is not None) - last_up
            if all(v is not None for v in view_done.values())
            else float("nan"),
            "last up -> all links up": max(v for v in link_done.values() if v is not None) - last_up
            if all(v is not None for v in link_done.values())
            else float("nan"),
        }
    else:
        a.ok = False

    # ---- dials, links, connects
    reasons: Counter[str] = Counter()
    connects_ok = connects_failed = 0
    connect_s: list[float] = []
    accept_s: list[float] = []
    dup = Counter()
    reconnects = 0
    per_node: dict[str, dict[str, Any]] = {}
    for nm in names:
        evs = dumps[nm]["events"]
        c: Counter[str] = Counter()
        for ev in evs:
            kind, info = ev[1], ev[3]
            if kind == "dial":
                reasons[info["reason"]] += 1
                c["dial_" + info["reason"]] += 1
            elif kind == "connect":
                if info["ok"]:
                    connects_ok += 1
                    connect_s.append(info["s"])
                else:
                    connects_failed += 1
                    c["connect_failed"] += 1
                c["connects"] += 1
            elif kind == "accept" and info.get("role") == "member":
                accept_s.append(info["s"])
                c["accepts"] += 1
            elif kind == "link":
                dup[info["outcome"]] += 1
                if info["outcome"] != "adopted":
                    c["dup_links"] += 1
            elif kind == "reconnect":
                reconnects += 1
                c["reconnects"] += 1
            elif kind == "lag":
                c["lag_ms"] += round(info * 1000)
                c["lag_max_ms"] = max(c["lag_max_ms"], round(info * 1000))
        per_node[nm] = dict(c)
    safety_pairs = set()
    for nm in names:
        for ev in dumps[nm]["events"]:
            if ev[1] == "dial" and ev[3]["reason"] == "safety":
                safety_pairs.add(frozenset((nm, ev[2])))
    a.dials = {
        "dials on learning (smaller id)": reasons["learn"],
        "dials by the 3 s safety net (PeerState.tick)": reasons["safety"],
        "pairs that needed the safety net": len(safety_pairs),
        "reconnect loops": reconnects,
        "connects ok / failed (NodeContext.connect)": f"{connects_ok} / {connects_failed}",
        "links adopted / duplicate kept-old / duplicate replaced": (
            f"{dup['adopted']} / {dup['dup_kept']} / {dup['dup_replaced']}"
        ),
        "links needed (N(N-1)/2 pairs, counted at both ends)": rec.n * (rec.n - 1),
        "connect+handshake s (dialler)": dist(connect_s),
        "handshake s (acceptor)": dist(accept_s),
    }

    # ---- messages
    sums: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for nm in names:
        for group, keys in dumps[nm]["counters"].items():
            for key, cell in keys.items():
                acc = sums[group].setdefault(key, [0, 0, 0])
                for i in range(3):
                    acc[i] += cell[i]
    a.messages = {
        g: {k: {"count": v[0], "bytes": v[1], "entries": v[2]} for k, v in ks.items()}
        for g, ks in sums.items()
    }

    # ---- CPU
    cpu_start = sum(ms[nm].get("cpu_started", 0.0) for nm in names[1:])
    cpu_form = sum(ms[nm].get("cpu_complete", 0.0) - ms[nm].get("cpu_started", 0.0) for nm in names[1:])
    cpu_imp = sum(ms[nm].get("cpu_imported", 0.0) for nm in names[1:])
    all_cpu = sum(ms[nm]["rusage"]["utime"] + ms[nm]["rusage"]["stime"] for nm in names)
    a.cpu = {
        "CPU s of n1.. until imported (interpreter + imports)": cpu_imp,
        "CPU s of n1.. until up (started)": cpu_start,
        "CPU s of n1.. from up to complete": cpu_form,
        "CPU s of all nodes until the dump (user+sys)": all_cpu,
        "machine busy CPU s, launch .. dump (all processes)": rec.machine_busy_s,
        "wall s, launch .. dump": rec.wall_s,
        "machine load average before the run (1 min)": rec.loadavg_before[0],
        "other processes' share of the cores, launch .. dump": (rec.machine_busy_s - all_cpu)
        / (len(os.sched_getaffinity(0)) * rec.wall_s)
        if rec.wall_s
        else float("nan"),
    }
    if a.figures:
        span = a.figures["launch -> all complete (serf_compare (a))"]
        cores = len(os.sched_getaffinity(0))
        a.cpu["node CPU / (cores x launch..complete)"] = (
            cpu_start + cpu_form + ms["n0"].get("cpu_complete", 0.0)
        ) / (cores * span)

    a.per_node = {
        nm: {
            "launch": rec.launched[nm] - t0,
            "imported": ms[nm]["imported"] - t0,
            "up": (up[nm] or float("nan")) - t0,
            "links_done": (link_done[nm] or float("nan")) - t0,
            "complete": (completes[nm] or float("nan")) - t0,
            **per_node[nm],
        }
        for nm in names
    }

    # ---- critical path: the last callback of the last node to complete
    if a.figures:
        o = max(names, key=lambda nm: completes[nm] or 0.0)
        m = max((x for x in names if x != o), key=lambda x: pairs[(o, x)].cb or 0.0)
        a.critical = describe_pair(pairs, o, m, t0, idx, ms)
        a.critical += describe_pair(pairs, m, o, t0, idx, ms)
    a.chart = chart(names, rec, ms, pairs, t0)
    return a


def describe_pair(
    pairs: dict[tuple[str, str], Pair],
    o: str,
    m: str,
    t0: float,
    idx: dict[str, dict[tuple[str, str], list[list[Any]]]],
    ms: dict[str, dict[str, Any]],
) -> list[str]:
    p = pairs[(o, m)]

    def rel(t: float | None) -> str:
        return "-" if t is None else f"{(t - t0) * 1000:7.0f} ms"

    lines = [
        f"{o} about {m}: {m} up {rel(p.up_m)}; {o} up {rel(ms[o].get('started'))}; "
        f"learned {rel(p.learned)} via {p.learned_via or '-'}; SWIM heard {rel(p.heard)}",
    ]
    for ev in idx[o].get(("dial", m), []):
        lines.append(f"    {o} dials {m} at {rel(ev[0])} ({ev[3]['reason']}, attempt {ev[3]['attempt']})")
    for ev in idx[o].get(("connect", m), []):
        lines.append(f"    {o}'s connect to {m} done at {rel(ev[0])} after {ev[3]['s'] * 1000:.0f} ms")
    for ev in idx[o].get(("accept", m), []):
        lines.append(
            f"    {o} accepted {m}'s connection at {rel(ev[0])} (handshake {ev[3]['s'] * 1000:.0f} ms)"
        )
    for ev in idx[o].get(("link", m), []):
        way = "dialled" if ev[3]["initiated"] else "accepted"
        lines.append(f"    link at {o}: {ev[3]['outcome']} ({way}) {rel(ev[0])}")
    lines.append(f"    view joined {rel(p.view)}; callback {rel(p.cb)}")
    return lines


def chart(
    names: list[str],
    rec: RunRecord,
    ms: dict[str, dict[str, Any]],
    pairs: dict[tuple[str, str], Pair],
    t0: float,
    width: int = 72,
) -> list[str]:
    """One row per node: ' ' not launched, '-' starting Python and importing, 'j' joining through n0,
    a digit d: d*10 % of the others in its view (callback), '*' all of them."""
    ends = [ms[nm].get("complete") or 0.0 for nm in names]
    span = max(max(ends) - t0, 0.1)
    step = span / width
    rows = [
        f"one column = {step * 1000:.0f} ms from n0's launch; ' ' not launched, '-' interpreter+imports, "
        "'j' joining, d = d*10 % of the others seen (callback), '*' all"
    ]
    for nm in names:
        row = []
        others = [pairs[(nm, m)].cb for m in names if m != nm]
        for i in range(width):
            t = t0 + (i + 0.5) * step
            if t < rec.launched[nm]:
                row.append(" ")
            elif t < ms[nm]["imported"]:
                row.append("-")
            elif ms[nm].get("started") is None or t < ms[nm]["started"]:
                row.append("j")
            else:
                seen = sum(1 for c in others if c is not None and c <= t)
                row.append("*" if seen == len(others) else str(min(9, seen * 10 // max(1, len(others)))))
        rows.append(f"{nm:>4} |{''.join(row)}|")
    return rows
