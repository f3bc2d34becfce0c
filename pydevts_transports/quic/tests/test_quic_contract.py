"""The QUIC transport honours the transport contract, on both anyio backends."""

from __future__ import annotations

import pytest
from pydevts.testing import check_transport
from pydevts_quic import QUICTransport

pytestmark = pytest.mark.anyio


async def test_quic_honours_the_transport_contract() -> None:
    await check_transport(lambda **settings: QUICTransport(**settings))
