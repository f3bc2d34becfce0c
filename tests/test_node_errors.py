"""Errors a program meets first: its own exceptions out of `async with node`, handlers that cannot run."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest
from inproc import free_port
from pydevts import Node, UnknownNodeError, handler

pytestmark = pytest.mark.anyio


async def test_an_error_in_the_body_comes_out_as_itself() -> None:
    node = Node(free_port(), node_id="solo")
    with anyio.fail_after(10):
        with pytest.raises(UnknownNodeError):
            async with node:
                await node.send("nobody", "greet", 1)
        with pytest.raises(ValueError, match="mine"):
            async with node:
                raise ValueError("mine")
        async with node:  # and the node can run again afterwards
            assert [m.id for m in node.members] == ["solo"]


def test_a_handler_that_is_not_async_is_refused_at_registration() -> None:
    node = Node(7000)

    def sync(sender: str, payload: Any) -> None:
        pass

    with pytest.raises(TypeError, match="must be an async function"):
        node.add_handler("greet", sync)
    with pytest.raises(TypeError, match="must be an async function"):
        node.on("greet")(sync)


def test_a_handler_with_the_wrong_arguments_is_refused_at_registration() -> None:
    node = Node(7000)

    async def one(payload: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"must take \(sender, payload\)"):
        node.add_handler("greet", one)

    class Broken(Node):
        @handler("greet")
        async def greet(self, payload: Any) -> None:
            pass

    with pytest.raises(TypeError, match=r"must take \(sender, payload\)"):
        Broken(7000)


async def test_a_malformed_emit_from_a_client_is_refused_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pydevts.errors import RemoteHandlerError
    from pydevts.node.client import NodeClient

    port = free_port()
    with anyio.fail_after(15):
        async with Node(port, node_id="n"):
            async with NodeClient(f"127.0.0.1:{port}") as client:
                for name in ("", "x" * 300, "pydevts.emit"):
                    with pytest.raises(RemoteHandlerError, match="PermissionError: event name"):
                        await client.emit(name, 1)
                with pytest.raises(RemoteHandlerError, match="expected"):
                    await client.request("pydevts.emit", [1, 2])
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


async def test_a_server_that_is_not_pydevts_is_named_as_such() -> None:
    from pydevts.errors import RemoteProtocolError
    from pydevts.node.client import NodeClient

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def banner(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"SSH-2.0-OpenSSH_9.2\r\n")
            await anyio.sleep(5)

    with anyio.fail_after(15):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, banner)
            with pytest.raises(RemoteProtocolError, match=f"127.0.0.1:{port} does not speak pydevts"):
                async with NodeClient(f"127.0.0.1:{port}"):
                    pass
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "client:me"])
def test_a_node_id_others_could_not_parse_is_refused(bad: str) -> None:
    from pydevts import ConfigurationError

    with pytest.raises(ConfigurationError, match="node_id"):
        Node(7000, node_id=bad)


@pytest.mark.parametrize("extra", [[], ["--keyring", "RING"]])
async def test_pydevts_node_that_cannot_start_says_why_in_one_line(extra: list[str], tmp_path: Any) -> None:
    import sys

    from pydevts.wire.keyring import generate_key

    ring = tmp_path / "ring"
    ring.write_text(generate_key() + "\n")
    args = [a.replace("RING", str(ring)) for a in extra]
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "pydevts", "node", str(free_port()), "--join-only", *args], check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "pydevts: error: nothing answers"
    )


async def test_the_cli_takes_a_bare_port_for_join_and_refuses_the_memory_transport() -> None:
    import sys

    port = free_port()
    with anyio.fail_after(60):
        async with Node(port, node_id="n"):
            done = await anyio.run_process(
                [sys.executable, "-m", "pydevts", "members", "--join", str(port)], check=False
            )
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout.decode().splitlines()[1].split()[:3] == ["n", f"127.0.0.1:{port}", "alive"]
        done = await anyio.run_process(
            [sys.executable, "-m", "pydevts", "node", str(port), "--transport", "memory"], check=False
        )
    assert (
        done.returncode == 2
        and "memory transport connects nodes inside one Python process" in done.stderr.decode()
    )
