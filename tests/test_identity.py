"""Identity: a client that claims a member's id takes none of that member's traffic."""

from __future__ import annotations

from typing import Any

import anyio
import msgpack
import pytest
from inproc import RawPeer, cluster, free_port, wait_until
from pydevts import Node
from pydevts.wire import HELLO, REPLY, Hello, decode_message, encode_event, encode_request

pytestmark = pytest.mark.anyio


async def test_a_client_claiming_a_members_id_gets_none_of_its_traffic() -> None:
    port = free_port()
    a, b, c = (Node(port, node_id=n) for n in ("a", "b", "c"))
    to_b: list[Any] = []
    seen_by_c: list[tuple[str, Any]] = []

    @b.on("greet")
    async def b_greet(sender: str, payload: Any) -> None:
        to_b.append(payload)

    @b.on("add")
    async def b_add(sender: str, payload: list[int]) -> int:
        return sum(payload)

    @c.on("greet")
    async def c_greet(sender: str, payload: Any) -> None:
        seen_by_c.append((sender, payload))

    with anyio.fail_after(20):
        async with cluster(a, b, c):
            b_address = next(m.address for m in c.members if m.id == "b")
            async with RawPeer.connect(int(c.address.rsplit(":", 1)[1])) as spy:
                hello = Hello(
                    cluster="default", node_id="b", address=b_address, serializer="msgpack", role="client"
                )
                await spy.send_frames(hello.to_frame())
                answer = await spy.receive_frame()
                assert answer is not None and answer[0] == HELLO, answer
                # the spy's own event is attributed to the spy, not to b
                await spy.send_frames(encode_event("greet", msgpack.packb("forged")))
                await wait_until(lambda: len(seen_by_c) == 1, what="c to get the spy's event")
                ((sender, _),) = seen_by_c
                assert sender != "b" and sender.startswith("client:"), sender
                # c's traffic for b still reaches b, and b's replies are b's
                await c.send("b", "greet", "for b")
                await wait_until(lambda: to_b == ["for b"], what="b to get c's event")
                assert await c.request("b", "add", [1, 2, 3], timeout=5) == 6
                # the spy's own request to c is answered to the spy
                await spy.send_frames(encode_request(7, "pydevts.members", msgpack.packb(None)))
                while True:
                    frame = await spy.receive_frame()
                    assert frame is not None
                    if frame[0] == REPLY:
                        assert decode_message(frame).request_id == 7
                        break


async def test_a_member_may_not_take_a_client_kind_of_id() -> None:
    from pydevts import ConfigurationError
    from pydevts.wire import REFUSE

    with pytest.raises(ConfigurationError, match="client:"):
        Node(7000, node_id="client:1234")
    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="a"):
            async with RawPeer.connect(port) as raw:  # a member HELLO with such an id, by hand
                hello = Hello(
                    cluster="default", node_id="client:1234", address="127.0.0.1:1", serializer="msgpack"
                )
                await raw.send_frames(hello.to_frame())
                frames = await raw.receive_until_eof()
    assert frames and frames[0][0] == REFUSE and b"reserved for clients" in frames[0], frames
