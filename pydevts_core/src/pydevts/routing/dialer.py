"""Dialling for the link host: ``Connect`` actions, and reconnecting a dropped link with backoff.

Policy (the same for every router):

* a ``Connect`` dials at once; one dial per member at a time;
* a link that drops without a goodbye while its session can resume is
  redialled: first after the member's current backoff (0 for a link that
  had been up for at least ``max_backoff``, so a blip costs nothing), then
  doubling from 50 ms up to ``max_backoff``, until a link to that member
  comes (either way), the machine gives up (``CloseLink``), or the address
  refuses the connection (nothing listens there any more: the machine gets
  ``link_down(resumable=False)``);
* a link that dies young carries its backoff over to the next drop, so a
  member whose links keep breaking is not redialled in a tight loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ..address import Address
from ..errors import ConnectError, PydevtsError

if TYPE_CHECKING:
    from ..wire.link import Link
    from .host import LinkHost

__all__ = ["FIRST_RETRY", "Backoff", "Dialer"]

log = logging.getLogger("pydevts.routing")

#: The first wait after a failed reconnection attempt, in seconds (then doubled up to max_backoff).
FIRST_RETRY = 0.05
#: Members whose backoff is remembered at once (a bound; the oldest are dropped past it).
MAX_REMEMBERED = 4096


class Backoff:
    """Per-member reconnection backoff that outlives one attempt (bounded table)."""

    def __init__(self, max_backoff: float) -> None:
        self.max_backoff = max_backoff
        self._next: dict[str, float] = {}
        self._up_since: dict[str, float] = {}

    def link_up(self, member_id: str, now: float) -> None:
        self._up_since[member_id] = now
        self._bound(self._up_since)

    def first_delay(self, member_id: str, now: float) -> float:
        """The wait before the first redial after a drop now; raises the next one."""
        up_since = self._up_since.pop(member_id, now)
        if now - up_since >= self.max_backoff:
            self._next.pop(member_id, None)  # it had lived long enough: a fresh start
        delay = self._next.get(member_id, 0.0)
        self._next[member_id] = min(max(delay * 2, FIRST_RETRY), self.max_backoff)
        self._bound(self._next)
        return delay

    def after_failure(self, delay: float) -> float:
        return min(max(delay * 2, FIRST_RETRY), self.max_backoff)

    def forget(self, member_id: str) -> None:
        self._next.pop(member_id, None)
        self._up_since.pop(member_id, None)

    @staticmethod
    def _bound(table: dict[str, float]) -> None:
        if len(table) > MAX_REMEMBERED:
            del table[next(iter(table))]


class Dialer:
    """Carries out ``Connect`` actions and redials dropped links for one :class:`LinkHost`."""

    def __init__(self, host: LinkHost, counts: dict[str, int]) -> None:
        self.host = host
        self.counts = counts
        self.backoff = Backoff(host.machine.max_backoff)
        self._dialing: set[str] = set()

    def connect(self, member_id: str, address: str) -> None:
        host = self.host
        if (
            member_id in self._dialing
            or member_id in host.links
            or member_id in host.resting
            or host.stopping
        ):
            return  # dialling it already, linked, or its dropped link is being redialled
        self._dialing.add(member_id)
        # A member whose links keep dying is not dialled in a tight loop: the redial backoff applies.
        delay = self.backoff.first_delay(member_id, anyio.current_time())
        host.ctx.spawn(self._connect, member_id, address, delay, name=f"pydevts connect {member_id}")

    async def _connect(self, member_id: str, address: str, delay: float = 0.0) -> None:
        host = self.host
        if delay:
            await anyio.sleep(delay)
        self.counts["dials"] += 1
        refused = False
        try:
            link = await host.ctx.connect(Address.parse(address))
        except ConnectError as exc:
            refused = exc.refused
            link = None
            log.info("could not link to %s at %s: %s", member_id, address, exc)
        except (PydevtsError, ValueError) as exc:
            link = None
            log.info("could not link to %s at %s: %s", member_id, address, exc)
        except Exception:  # a bug must cost this attempt, never the node
            link = None
            log.exception("linking to %s at %s failed", member_id, address)
        finally:
            self._dialing.discard(member_id)
        if link is None:
            self.counts["dial_failures"] += 1
            host.input(lambda m, now: m.connect_failed(now, member_id, refused=refused))
            return
        if link.peer_id != member_id:
            log.warning("expected %s at %s but found %s", member_id, address, link.peer_id)
            host.input(lambda m, now: m.connect_failed(now, member_id, refused=False))
        host.add_link(link)

    def redial(self, link: Link) -> None:
        host = self.host
        delay = self.backoff.first_delay(link.peer_id, anyio.current_time())
        host.ctx.spawn(self._redial, link, delay, name=f"pydevts redial {link.peer_id}")

    async def _redial(self, link: Link, delay: float) -> None:
        host, peer = self.host, link.peer_id

        def wanted() -> bool:
            session = link.session
            return (
                not host.stopping
                and host.resting.get(peer) is link
                and (session is None or session.closed is None)  # the node did not drop it
            )

        while wanted():
            if delay:
                await anyio.sleep(delay)
                if not wanted():
                    return
            self.counts["redials"] += 1
            try:
                new = await host.ctx.connect(Address.parse(link.peer.address))
            except ConnectError as exc:
                self.counts["dial_failures"] += 1
                if exc.refused and wanted():  # nobody listens there any more: gone, not just cut off
                    log.info("member %s is gone: %s", peer, exc)
                    host.give_up(link)
                    return
                log.debug("reconnecting to %s: %s", peer, exc)
            except (PydevtsError, ValueError) as exc:
                self.counts["dial_failures"] += 1
                log.debug("reconnecting to %s: %s", peer, exc)
            else:
                if new.peer_id == peer:
                    if wanted() or peer in host.links:
                        # Ours, or the peer's own redial won the race: the duplicate rule picks one.
                        log.info("reconnected to %s", peer)
                        host.add_link(new)
                    else:  # the machine gave up on it while we dialled (CloseLink)
                        host.ctx.spawn(new.aclose, "no longer wanted")
                    return
                host.ctx.spawn(new.aclose, "not the node expected")
            delay = self.backoff.after_failure(delay)
