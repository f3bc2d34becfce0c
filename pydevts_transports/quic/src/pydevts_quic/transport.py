"""The ``quic`` transport: pydevts frames over QUIC (aioquic), on asyncio and trio.

Each connection carries frames on one bidirectional stream (see
:mod:`pydevts_quic.connection`); a listener is one UDP socket serving every
connection made to it, plus the node's failure-detector datagrams
(:meth:`QUICTransport.open_datagrams`). Each outgoing connection has a UDP
socket of its own, ``connect()``-ed so that a host answering "port
unreachable" is reported at once as a refused connection.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

import anyio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from pydevts.errors import AddressInUseError, ConfigurationError, ConnectError, TransportError
from pydevts.protocols import Address, Connection
from pydevts.wire import PROTOCOL_VERSION
from pydevts.wire.framing import DEFAULT_MAX_FRAME_SIZE

from . import _aioquic
from ._spawn import spawn_detached
from .admission import Admission, AdmissionStats
from .closing import LINGER
from .connection import PREAMBLE, STREAM_ID, QUICConnection
from .endpoint import Endpoint
from .tls import TLSSettings
from .udp import Datagrams, tune_socket

__all__ = ["ALPN", "QUICListener", "QUICTransport"]

#: The ALPN protocol name: the pydevts wire protocol version. Peers that differ refuse the handshake.
ALPN = f"pydevts/{PROTOCOL_VERSION}"


class QUICListener:
    """A bound UDP socket accepting QUIC connections."""

    def __init__(self, endpoint: Endpoint, transport: QUICTransport) -> None:
        self._endpoint = endpoint
        self._transport = transport

    @property
    def address(self) -> Address:
        return self._endpoint.address

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    async def serve(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        async def accepted(conn: Connection) -> None:
            await handler(conn)

        async with anyio.create_task_group() as tg:
            while (conn := await self._endpoint.next_accepted()) is not None:
                tg.start_soon(accepted, conn)

    async def aclose(self) -> None:
        self._transport._listeners.pop(self._endpoint.address, None)
        self._endpoint.stop_accepting()
        await anyio.lowlevel.checkpoint()


class QUICTransport:
    """The ``quic`` transport.

    Options (``Node(transport_options={...})``, CLI ``--transport-option KEY=VALUE``):

    ``certfile``, ``keyfile``, ``cafile``, ``server_name``
        TLS; see :mod:`pydevts_quic.tls`. None of them: a self-signed certificate, no verification.
    ``idle_timeout``
        Seconds without a packet from the peer after which a connection is dead (default 15;
        keep-alive pings go every third of it).
    ``connect_timeout``
        Seconds for the QUIC/TLS handshake (default 5); on a listener, also how long an accepted
        connection may stay half-open (TLS and the stream preamble) before it is dropped.
    ``max_datagram_size``
        Largest UDP payload sent (default 1350, which fits a 1500-byte MTU with room for tunnels).
    ``max_half_open``
        Handshakes in progress per listener (default 64); over it the oldest of the address
        holding the most is dropped. Each must end within ``connect_timeout``.
    ``retry_above``
        Handshakes in progress from which a new client must first prove its address with a
        Retry round trip (default 8; 0: always). See :mod:`pydevts_quic.admission`.
    """

    name = "quic"

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        connect_timeout: float = 5.0,
        idle_timeout: float = 15.0,
        max_datagram_size: int = 1350,
        certfile: str | None = None,
        keyfile: str | None = None,
        cafile: str | None = None,
        server_name: str | None = None,
        max_half_open: int = 64,
        retry_above: int = 8,
    ) -> None:
        _aioquic.check()  # the installed aioquic still has the internals pydevts-quic uses
        self.max_frame_size = max_frame_size
        self.connect_timeout = float(connect_timeout)
        self.idle_timeout = float(idle_timeout)
        self.max_datagram_size = int(max_datagram_size)
        self.max_half_open = int(max_half_open)
        self.retry_above = int(retry_above)
        if self.max_half_open < 1 or self.retry_above < 0:
            raise ConfigurationError(
                f"quic: max_half_open must be >= 1, retry_above >= 0; got {max_half_open!r}, {retry_above!r}"
            )
        #: Address validation and half-open handshakes of this transport's listeners.
        self.admission_stats = AdmissionStats()
        self.tls = TLSSettings(certfile=certfile, keyfile=keyfile, cafile=cafile, server_name=server_name)
        self._server_config: QuicConfiguration | None = None
        self._listeners: dict[Address, QUICListener] = {}
        self._endpoints: set[Endpoint] = set()

    def _run(self, endpoint: Endpoint) -> None:
        async def run() -> None:
            try:
                await endpoint.run()
            finally:
                self._endpoints.discard(endpoint)

        self._endpoints.add(endpoint)
        spawn_detached(run)

    async def aclose(self) -> None:
        """Wait until the connections closed so far have delivered what they were given.

        A closed QUIC connection keeps sending (for up to LINGER seconds) until
        its peer has acknowledged everything, in a detached task; a program
        that ends right after closing would cut that short, where a TCP
        socket's kernel would carry on. Nodes call this as they stop.
        Connections still open, and listeners, are left as they are.
        """
        with anyio.move_on_after(LINGER + 1.0):
            for endpoint in list(self._endpoints):
                if endpoint.closing and all(c.closed_locally or c.terminated for c in endpoint.connections):
                    await endpoint.done.wait()

    def statistics(self) -> dict[str, int]:
        """Counters of this transport's listeners (a node reports them as ``transport.<name>``)."""
        return dict(vars(self.admission_stats))

    def _common(self) -> dict[str, object]:
        return {
            "alpn_protocols": [ALPN],
            "idle_timeout": self.idle_timeout,
            "max_datagram_size": self.max_datagram_size,
            # Stream limits never bind; connection credit does (granted as frames are read).
            "max_stream_data": 1 << 60,
        }

    def _options(self) -> dict[str, float | int]:
        return {"max_frame_size": self.max_frame_size, "idle_timeout": self.idle_timeout}

    async def listen(self, address: Address) -> QUICListener:
        try:
            infos = await anyio.getaddrinfo(
                address.host or None, address.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )
        except (OSError, ValueError, OverflowError) as exc:
            raise TransportError(f"cannot listen on {address}: {exc}") from exc
        family, _, proto, _, sockaddr = infos[0]
        if self._server_config is None:
            self._server_config = self.tls.server_configuration(**self._common())
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        except OSError as exc:
            raise TransportError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"cannot listen on {address}: UDP address in use") from exc
            raise TransportError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        tune_socket(sock)
        endpoint = Endpoint(
            sock,
            server=self._server_config,
            connection_options=self._options(),
            keepalive=self.idle_timeout / 3,
            admission=Admission(
                max_half_open=self.max_half_open,
                retry_above=self.retry_above,
                handshake_timeout=self.connect_timeout,
                stats=self.admission_stats,
            ),
        )
        listener = QUICListener(endpoint, self)
        self._listeners[endpoint.address] = listener
        self._run(endpoint)
        return listener

    async def open_datagrams(self, address: Address) -> Datagrams:
        """The failure detector's datagrams, on the UDP socket of this transport's listener at ``address``."""
        listener = self._listeners.get(address)
        if listener is None:
            raise TransportError(
                f"quic transport: no listener on {address} to carry datagrams "
                "(the QUIC socket carries the failure detector's probes too)"
            )
        endpoint = listener.endpoint
        if endpoint.datagrams is None:
            endpoint.datagrams = Datagrams(endpoint)
        return endpoint.datagrams

    async def connect(self, address: Address) -> QUICConnection:
        try:
            infos = await anyio.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
        except (OSError, ValueError, OverflowError) as exc:
            raise ConnectError(f"cannot connect to {address}: {exc}") from exc
        family, _, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
        tune_socket(sock)
        config = self.tls.client_configuration(address.host, **self._common())
        quic = QuicConnection(configuration=config)
        endpoint = Endpoint(sock, connection_options=self._options(), keepalive=self.idle_timeout / 3)
        conn = QUICConnection(
            quic,
            endpoint,
            sockaddr,
            max_frame_size=self.max_frame_size,
            idle_timeout=self.idle_timeout,
            is_client=True,
        )
        endpoint.register(conn, [])
        quic.connect(sockaddr, now=anyio.current_time())
        self._run(endpoint)
        endpoint.transmit(conn)
        try:
            with anyio.fail_after(self.connect_timeout):
                await conn.ready.wait()
        except TimeoutError:
            await conn.aclose()
            raise ConnectError(
                f"connecting to {address} over QUIC timed out after {self.connect_timeout:g} s"
            ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.aclose()
            raise
        error = conn.error
        if error is not None:
            await conn.aclose()
            refused = getattr(error, "refused", False)
            raise ConnectError(str(error), refused=refused)
        quic.send_stream_data(STREAM_ID, PREAMBLE)
        endpoint.transmit(conn)
        return conn
