"""The ``/metrics`` endpoint: prometheus_client's WSGI app on a threading HTTP server of our own.

Why not ``prometheus_client.start_http_server``: its server checks for a
shutdown request every 0.5 s, and ``shutdown()`` waits for that check, so
stopping a node would block the node's event loop for up to half a second
(``on_stop`` is synchronous). This server polls every :data:`POLL_INTERVAL`
(50 ms): a node's stop waits at most that long, and when it returns the port
is free again. It also skips the reverse DNS look-up ``HTTPServer`` does when
binding, and logs no request lines. Everything it serves comes from
``prometheus_client.make_wsgi_app`` (content negotiation, OpenMetrics, gzip,
``?name[]=`` filters).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["POLL_INTERVAL", "MetricsServer"]

#: How often the server thread checks whether it should stop (seconds).
POLL_INTERVAL = 0.05


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold the process

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no socket.getfqdn()
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a scrape every few seconds is not news."""


class MetricsServer:
    """Serves ``registry`` over HTTP on ``host:port`` (0: a free port) from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, name: str = "") -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        self._server = make_server(
            host, port, make_wsgi_app(registry), server_class=server_class, handler_class=_QuietHandler
        )
        #: The port bound (the one asked for, or the one the system chose for 0).
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"pydevts-prometheus {name}:{self.port}".strip(),
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port (waits up to :data:`POLL_INTERVAL` for the thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
