"""``pydevts top``: a live view of the cluster, redrawn every ``--interval`` seconds.

Each interval it asks the node at ``--join`` for every member's snapshot (the
``pydevts.stats`` fan-out, :mod:`pydevts.node.inspect`), computes rates from the
difference with the previous sample (each node's own monotonic clock), and
draws: a header (cluster, member counts by state, who did not answer), the
members (state, route, events/s, counters), each member link (frames/s and
bytes/s each way, queued bytes) and, for nodes running the ``latencies``
plugin, request latencies.

On a terminal it draws with plain ANSI codes (alternate screen, cursor home;
no curses) and reads keys in cbreak mode: ``q`` quits, Ctrl-C too, and the
terminal is restored either way. When stdout is not a terminal it prints one
plain-text screen per interval, and ``--once`` prints a single one (two
samples an interval apart, so that it has rates) and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TextIO

import anyio
from anyio.abc import TaskStatus

from ..errors import PydevtsError
from ..members import MemberState
from ..node.client import NodeClient
from ..node.inspect import ClusterStats, NodeStats, fetch_cluster
from ..wire.linkinfo import LinkInfo
from .commands import _client, ask

__all__ = ["render", "run_top"]

DROP_COUNTERS = ("dropped_after_leave", "links.undelivered", "keyring.datagrams_dropped", "router.too_old")
FETCH_ERRORS = (PydevtsError, OSError, EOFError)


async def run_top(args: argparse.Namespace) -> int:
    return await ask(args, lambda client: Top(args, client).run())


# ------------------------------------------------------------------ formatting


def _clean(text: str, limit: int = 40) -> str:
    """What a node sent, safe on a terminal: control characters as ``?``, at most ``limit`` long."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "~"


def _human(value: float | None, *, whole: bool = False) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}" if whole or value == 0 else f"{value:.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    ms = value * 1000
    return f"{ms:.2f}ms" if ms < 10 else f"{ms:.0f}ms" if ms < 1000 else f"{value:.2f}s"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` to the left, numbers to the right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def drops(stats: dict[str, int]) -> int:
    """Messages a node dropped or could not deliver (router drops, undelivered frames, ...)."""
    return sum(v for k, v in stats.items() if k in DROP_COUNTERS or (k.startswith("router.") and "drop" in k))


# ------------------------------------------------------------------ rates


def _rate(now: NodeStats, before: NodeStats | None, new: int, old: int | None) -> float | None:
    """Per second between two samples of one node; None on the first sample or after a reset."""
    if before is None or old is None:
        return None
    elapsed = now.clock - before.clock
    return (new - old) / elapsed if elapsed > 0 and new >= old else None


def _link_key(link: LinkInfo) -> tuple[str, str, bool]:
    return (link.peer, link.role, link.initiated)


def _previous_link(link: LinkInfo, before: NodeStats | None) -> LinkInfo | None:
    if before is None:
        return None
    for old in before.links:
        if _link_key(old) == _link_key(link) and old.age <= link.age:  # the same link, older
            return old
    return None


# ------------------------------------------------------------------ the screen


def render(
    cluster: ClusterStats,
    before: dict[str, NodeStats],
    *,
    target: str,
    interval: float,
    live: bool = False,
    error: str | None = None,
) -> list[str]:
    """One screen of text for ``cluster`` (rates against ``before``, by node id)."""
    by_id = {n.id: n for n in cluster.nodes}
    first = cluster.nodes[0] if cluster.nodes else None
    cluster_name = _clean(first.cluster) if first else "?"
    router = _clean(first.router) if first else "?"
    hint = f"every {interval:g} s, q quits" if live else time.strftime("%Y-%m-%d")
    lines = [
        f"pydevts top - cluster {cluster_name!r} via {target} ({router} router) - "
        f"{time.strftime('%H:%M:%S')} ({hint})"
    ]
    members = cluster.members
    counts = {state: sum(1 for m in members if m.state is state) for state in MemberState}
    alive = sum(1 for m in members if m.alive)
    answered = sum(1 for m in members if m.alive and m.id in by_id)
    lines.append(
        "members: "
        + ", ".join(f"{n} {state.value}" for state, n in counts.items())
        + f"; {answered} of {alive} live answered"
    )
    for member_id, why in sorted(cluster.missing.items())[:5]:
        lines.append(f"  not answering: {_clean(member_id)} ({_clean(why, 100)})")
    if cluster.missing_total > 5:
        lines.append(f"  ... and {cluster.missing_total - 5} more not answering")
    if error is not None:
        lines.append(f"! {_clean(error, 200)} (showing the last sample; retrying)")
    lines += ["", *_members_table(cluster, before), "", *_links_table(cluster, before)]
    lines += ["", *_latencies_table(cluster, before)]
    return lines


def _members_table(cluster: ClusterStats, before: dict[str, NodeStats]) -> list[str]:
    by_id = {n.id: n for n in cluster.nodes}
    routed = any(m.distance is not None for m in cluster.members)
    header = ("ID", "ADDRESS", "STATE", *(("VIA", "HOPS") if routed else ()))
    header += ("EV/S IN", "EVENTS IN", "HANDLER ERR", "REQ SERVED", "DROPS", "LINKS", "QUEUED")
    rows = []
    for m in cluster.members:
        route = (_clean(m.next_hop or "-"), "-" if m.distance is None else str(m.distance)) if routed else ()
        node = by_id.get(m.id)
        if node is None:
            numbers = ("?",) * 7
        else:
            stats, old = node.statistics, before.get(m.id)
            received = stats.get("events_received", 0)
            rate = _rate(node, old, received, None if old is None else old.statistics.get("events_received"))
            links = [link for link in node.links if link.role == "member"]
            numbers = (
                _human(rate),
                _human(received, whole=True),
                _human(stats.get("handler_errors", 0), whole=True),
                _human(stats.get("requests_served", 0), whole=True),
                _human(drops(stats), whole=True),
                str(len(links)),
                _human(sum(link.queued_bytes for link in links), whole=True),
            )
        rows.append((_clean(m.id), _clean(m.address, 48), m.state.value, *route, *numbers))
    return ["MEMBERS", *_table(header, rows, left=5 if routed else 3)]


def _links_table(cluster: ClusterStats, before: dict[str, NodeStats]) -> list[str]:
    rows: list[tuple[float, str, str, tuple[str, ...]]] = []
    clients = 0
    for node in cluster.nodes:
        old_node = before.get(node.id)
        for link in node.links:
            if link.role != "member":
                clients += 1
                continue
            old = _previous_link(link, old_node)

            def rate(
                new: int, old_value: int | None, node: NodeStats = node, old_node: NodeStats | None = old_node
            ) -> float | None:
                return _rate(node, old_node, new, old_value)

            fin = rate(link.frames_in, old.frames_in if old else None)
            fout = rate(link.frames_out, old.frames_out if old else None)
            bin_ = rate(link.bytes_in, old.bytes_in if old else None)
            bout = rate(link.bytes_out, old.bytes_out if old else None)
            busy = (bin_ or 0.0) + (bout or 0.0)
            cells = (
                f"{_clean(node.id)} -> {_clean(link.peer)}",
                _human(fin),
                _human(fout),
                _human(bin_),
                _human(bout),
                _human(link.queued_bytes, whole=True),
                f"{link.age:.0f}s",
            )
            rows.append((-busy, node.id, link.peer, cells))
    rows.sort()
    header = ("NODE -> PEER", "FRAMES/S IN", "FRAMES/S OUT", "BYTES/S IN", "BYTES/S OUT", "QUEUED", "AGE")
    more = sum(n.links_total - len(n.links) for n in cluster.nodes)
    title = f"LINKS ({len(rows)} member links, busiest first; {clients} client links not shown"
    title += f"; {more} more not listed)" if more else ")"
    return [title, *_table(header, [r[3] for r in rows])]


def _latencies_table(cluster: ClusterStats, before: dict[str, NodeStats]) -> list[str]:
    rows = []
    for node in cluster.nodes:
        old_node = before.get(node.id)
        old_names = (old_node.latencies if old_node is not None else None) or {}
        for name, s in sorted((node.latencies or {}).items()):
            old = old_names.get(name)
            rows.append(
                (
                    _clean(node.id),
                    _clean(name),
                    _human(_rate(node, old_node, s.count, old.count if old is not None else None)),
                    _human(s.count, whole=True),
                    _human(s.count - s.ok, whole=True),
                    _seconds(s.p50),
                    _seconds(s.p99),
                )
            )
    if not rows:
        return ["REQUEST LATENCIES: none reported (nodes keep them with the `latencies` plugin)"]
    header = ("NODE", "REQUEST", "REQ/S", "SENT", "NOT OK", "P50", "P99")
    return ["REQUEST LATENCIES (requests each node sent)", *_table(header, rows, left=2)]


def fit(lines: list[str], columns: int, rows: int) -> list[str]:
    """``lines`` cut to the terminal: at most ``columns`` wide, ``rows`` high."""
    if len(lines) > rows:
        lines = [*lines[: max(rows - 1, 0)], f"... {len(lines) - rows + 1} more lines: enlarge the window"]
    return [line[:columns] for line in lines]


@contextmanager
def _terminal(out: TextIO, key_fd: int | None) -> Iterator[None]:
    """Alternate screen, hidden cursor, keys without Enter (cbreak); all restored on exit."""
    saved = None
    if key_fd is not None:
        import termios
        import tty

        saved = termios.tcgetattr(key_fd)
        tty.setcbreak(key_fd)
    out.write("\x1b[?1049h\x1b[?25l")
    out.flush()
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            out.write("\x1b[?25h\x1b[?1049l")
            out.flush()
        if saved is not None and key_fd is not None:
            import termios

            with suppress(OSError):
                termios.tcsetattr(key_fd, termios.TCSADRAIN, saved)


# ------------------------------------------------------------------ the loop


class Top:
    def __init__(self, args: argparse.Namespace, client: NodeClient) -> None:
        self.args = args
        self.target = str(args.join)
        self.interval: float = args.interval
        self.out = sys.stdout
        self._client: NodeClient | None = client
        self._own: NodeClient | None = None  # a client opened again after a failure (closed here)
        self.last: ClusterStats | None = None
        self.before: dict[str, NodeStats] = {}
        self.error: str | None = None
        self.code = 0

    async def sample(self) -> ClusterStats:
        """Fetch the fan-out; the previous sample becomes what rates are measured against."""
        if self._client is None:
            client = _client(self.args)
            await client.__aenter__()
            self._client = self._own = client
        try:
            cluster = await fetch_cluster(self._client)
        except FETCH_ERRORS:
            await self._drop_client()
            raise
        if self.last is not None:
            self.before = {n.id: n for n in self.last.nodes}
        self.last, self.error = cluster, None
        return cluster

    async def _drop_client(self) -> None:
        own, self._own, self._client = self._own, None, None
        if own is not None:
            with anyio.CancelScope(shield=True), suppress(*FETCH_ERRORS):
                await own.__aexit__(None, None, None)

    def screen(self, live: bool) -> list[str]:
        assert self.last is not None
        return render(
            self.last, self.before, target=self.target, interval=self.interval, live=live, error=self.error
        )

    async def run(self) -> int:
        try:
            await self.sample()  # a node that cannot be asked: the error, exit status 1
            if self.args.once:
                await anyio.sleep(self.interval)
                await self.sample()
                self.out.write("\n".join(self.screen(False)) + "\n")
                return 0
            if self.out.isatty():
                return await self._live()
            while True:  # not a terminal: one plain screen per interval
                self.out.write("\n".join(self.screen(False)) + "\n\n")
                self.out.flush()
                await self._next()
        finally:
            await self._drop_client()

    async def _next(self) -> None:
        """Sleep until the next sample is due, then take it (a failure is shown, not raised)."""
        await anyio.sleep(self.interval)
        try:
            await self.sample()
        except FETCH_ERRORS as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    async def _live(self) -> int:
        key_fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        async with anyio.create_task_group() as tg:
            await tg.start(self._signals, tg.cancel_scope)
            with _terminal(self.out, key_fd):
                if key_fd is not None:
                    tg.start_soon(self._keys, key_fd, tg.cancel_scope)
                while True:
                    self.draw()
                    await self._next()
        return self.code

    def draw(self) -> None:
        size = shutil.get_terminal_size()
        lines = fit(self.screen(True), size.columns, size.lines)
        self.out.write("\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()

    async def _keys(self, fd: int, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                continue
            if not data:
                return  # end of input: keep running (Ctrl-C still quits)
            if b"q" in data.lower():
                scope.cancel()
                return

    async def _signals(
        self, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGWINCH) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGWINCH:
                    self.draw()  # the window changed size: redraw now
                    continue
                self.code = 128 + int(signum)
                scope.cancel()
                return
