"""The QUIC transport honours the transport contract, on both anyio backends."""

from __future__ import annotations

from typing import Any

import pytest
from pydevts.testing import check_transport
from pydevts_quic import QUICTransport

pytestmark = pytest.mark.anyio


async def _silence(conn: Any) -> None:
    """The peer's host drops off the network: nothing it gets is read, nothing is sent, no goodbye."""
    endpoint = conn.endpoint
    endpoint._datagram = lambda data, addr: None
    endpoint.transmit = lambda conn: None


async def test_quic_honours_the_transport_contract() -> None:
    # A short idle timeout, so that the vanished peer is given up on within the check's bound.
    await check_transport(lambda **settings: QUICTransport(idle_timeout=1.5, **settings), vanish=_silence)
