"""Which QUIC Initial packets become connections: bounded memory under a flood.

An Initial that opens a connection costs aioquic's whole connection state
(TLS, keys, loss recovery: tens of KB) before anything shows that its sender
can even receive at the address it claims. Two bounds keep a flood of
Initials (spoofed or not) from growing a node:

* **Address validation under load.** While ``retry_above`` or more
  handshakes are in progress, an Initial without a token is answered with a
  stateless Retry (RFC 9000, section 8.1.2) carrying a sealed token
  (aioquic's ``QuicRetryTokenHandler``: address, connection IDs, time); only
  a sender that echoes it from that address gets a connection. A spoofed
  flood then costs one small reply per packet and no state. Below the
  threshold there is no Retry, which would cost every connection a round
  trip. A token that does not validate is answered with an INVALID_TOKEN
  close, so a real client fails at once instead of timing out.
* **A cap on half-open connections** (``max_half_open``): when it is full,
  the oldest handshake of the address holding the most is dropped (see
  :class:`pydevts.limits.PendingTable`), and each handshake (TLS, then the
  stream preamble) must end within ``handshake_timeout`` or it is dropped.
  A dropped connection is forgotten at once: its memory is given back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aioquic.quic.packet import QuicHeader, encode_quic_retry
from aioquic.quic.retry import QuicRetryTokenHandler
from pydevts.limits import PendingTable, address_key

from ._aioquic import invalid_token_close

__all__ = ["Admission", "AdmissionStats"]


@dataclass
class AdmissionStats:
    """Counters of a transport's listeners (``node.statistics()["transport.<name>"]``)."""

    retries_sent: int = 0  # Initials answered with a Retry (address validation under load)
    invalid_tokens: int = 0  # Initials whose token did not validate
    half_open_dropped: int = 0  # handshakes dropped to make room for newer ones
    half_open_timed_out: int = 0  # handshakes that did not finish within handshake_timeout


class Admission:
    """The half-open connections of one listener and the verdict on each new Initial (sans-IO)."""

    def __init__(
        self,
        *,
        max_half_open: int = 64,
        retry_above: int = 8,
        handshake_timeout: float = 5.0,
        stats: AdmissionStats | None = None,
    ) -> None:
        self.retry_above = retry_above
        self.handshake_timeout = handshake_timeout
        self.stats = stats if stats is not None else AdmissionStats()
        self.half_open: PendingTable[Any] = PendingTable(max_half_open)
        self._tokens: QuicRetryTokenHandler | None = None

    def initial(
        self, header: QuicHeader, addr: tuple[str, int], now: float
    ) -> tuple[bytes, bytes | None] | bytes | None:
        """What to do with an Initial that matches no connection.

        ``(original destination CID, retry source CID or None)``: open a
        connection; bytes: send them back (a Retry or a close); None: drop it.
        """
        if header.token:
            if self._tokens is None:
                self._tokens = QuicRetryTokenHandler()
            try:
                original = self._tokens.validate_token(
                    address=addr, destination_cid=header.destination_cid, token=header.token, now=now
                )
            except ValueError:
                self.stats.invalid_tokens += 1
                if header.version is None:
                    return None
                return invalid_token_close(
                    version=header.version,
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                )
            return original, header.destination_cid
        if len(self.half_open) >= self.retry_above and header.version is not None:
            if self._tokens is None:
                self._tokens = QuicRetryTokenHandler()
            source_cid = os.urandom(8)
            token = self._tokens.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=now,
            )
            self.stats.retries_sent += 1
            return bytes(
                encode_quic_retry(
                    version=header.version,
                    source_cid=source_cid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid,
                    retry_token=token,
                )
            )
        return header.destination_cid, None

    def opened(self, conn: Any, addr: tuple[str, int]) -> Any:
        """``conn`` began its handshake; return the half-open connection to drop for it, if any."""
        victim = self.half_open.add(conn, address_key(str(addr[0])))
        if victim is not None:
            self.stats.half_open_dropped += 1
        return victim

    def done(self, conn: Any) -> None:
        """``conn`` finished its handshake, or ended."""
        self.half_open.remove(conn)
