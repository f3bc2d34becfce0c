"""The pydevts error tree.

Every exception that leaves the public API is a :class:`PydevtsError`.
Lower-layer exceptions (``OSError``, anyio's, a serializer library's) are
translated where they cross into pydevts and kept as ``__cause__``::

    PydevtsError
    ├── ConfigurationError            bad settings given by the user
    │   └── PluginNotFoundError       a transport/router/serializer name nobody provides
    ├── TransportError                the bytes layer
    │   ├── ConnectError              could not reach an address
    │   ├── AddressInUseError         could not bind: another process holds the port
    │   ├── ConnectionClosedError     the connection is gone (either side)
    │   └── FrameTooLargeError        a frame over the configured maximum (sending)
    ├── ProtocolError                 somebody broke the wire protocol
    │   ├── LocalProtocolError        we were asked to do something invalid
    │   └── RemoteProtocolError       the peer sent something invalid
    │       └── HandshakeRefusedError the handshake failed; ``reason`` says what differs
    ├── JoinError                     could not join or start a cluster
    ├── SerializationError            a payload could not be encoded or decoded
    └── DeliveryError                 an event or request did not get through
        ├── UnknownNodeError          no such member (or no route to it)
        ├── RequestTimeoutError       no reply within the deadline
        ├── NoHandlerError            the remote node has no handler for the event
        └── RemoteHandlerError        the remote handler raised; ``remote_type`` names it
"""

from __future__ import annotations

__all__ = [
    "AddressInUseError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionClosedError",
    "DeliveryError",
    "FrameTooLargeError",
    "HandshakeRefusedError",
    "JoinError",
    "LocalProtocolError",
    "NoHandlerError",
    "PluginNotFoundError",
    "ProtocolError",
    "PydevtsError",
    "RemoteHandlerError",
    "RemoteProtocolError",
    "RequestTimeoutError",
    "SerializationError",
    "TransportError",
    "UnknownNodeError",
]


class PydevtsError(Exception):
    """Root of every error raised by pydevts."""


class ConfigurationError(PydevtsError):
    """The user's settings are invalid or inconsistent."""


class PluginNotFoundError(ConfigurationError):
    """A plugin name was asked for that no installed distribution provides.

    ``available`` lists the working implementations of that kind;
    ``suggestion`` is the closest known name (a likely typo), ``install`` the
    distribution to install (only when pydevts knows which one provides the
    name) and ``broken`` why an installed plugin of that name cannot be used.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        available: list[str],
        *,
        suggestion: str | None = None,
        install: str | None = None,
        broken: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        self.suggestion = suggestion
        self.install = install
        self.broken = broken
        have = f"(installed {kind}s: {', '.join(sorted(available)) or 'none'})"
        pip = f"`pip install {install}`" if install else ""
        if broken:
            text = f"{kind} {name!r} is installed but broken: {broken}"
            text += f" — try `pip install --force-reinstall {install}`" if install else ""
        elif suggestion:
            text = f"{kind} {name!r} is not installed or misspelled — did you mean {suggestion!r}"
            text += f" (not installed: {pip})?" if pip else "?"
        elif pip:
            text = f"{kind} {name!r} is not installed or misspelled — try {pip}"
        else:
            text = f"{kind} {name!r} is not installed or misspelled"
        super().__init__(f"{text} {have}")


class TransportError(PydevtsError):
    """Something failed in the bytes layer."""


class ConnectError(TransportError):
    """An address could not be reached.

    ``refused`` is true when the address answered that nothing listens there
    (TCP: connection refused) — evidence that a node bound there is gone.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        self.refused = refused
        super().__init__(message)


class AddressInUseError(TransportError):
    """A listener could not bind because the address is taken."""


class ConnectionClosedError(TransportError):
    """The connection was closed, by this side or the peer.

    ``eof`` is True when the peer closed it cleanly (its node chose to: a
    leave, a link it retired), as opposed to a reset or a failure.
    """

    def __init__(self, *args: object, eof: bool = False) -> None:
        super().__init__(*args)
        self.eof = eof


class FrameTooLargeError(TransportError):
    """A frame is over the maximum frame size."""

    def __init__(self, size: int, limit: int, members: str = "") -> None:
        self.size = size
        self.limit = limit
        if members:
            super().__init__(f"frame of {size} bytes is over what members {members} take")
        else:
            super().__init__(f"frame of {size} bytes is over the maximum frame size of {limit} bytes")


class ProtocolError(PydevtsError):
    """The pydevts wire protocol was broken."""


class LocalProtocolError(ProtocolError):
    """This side was asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class HandshakeRefusedError(RemoteProtocolError):
    """A handshake was refused; :attr:`reason` says what differs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"handshake refused: {reason}")


class JoinError(PydevtsError):
    """The node could neither join a cluster nor start one."""


class SerializationError(PydevtsError):
    """A payload could not be encoded or decoded by the serializer."""


class DeliveryError(PydevtsError):
    """An event or request could not be delivered."""


class UnknownNodeError(DeliveryError):
    """The destination is not a live member of the cluster (or has no route)."""

    def __init__(self, node_id: str, detail: str = "") -> None:
        self.node_id = node_id
        super().__init__(f"unknown node {node_id!r}" + (f": {detail}" if detail else ""))


class RequestTimeoutError(DeliveryError, TimeoutError):
    """No reply arrived within the request's deadline."""


class NoHandlerError(DeliveryError):
    """The remote node has no handler registered for the event name."""


class RemoteHandlerError(DeliveryError):
    """The remote handler raised an exception while serving the request."""

    def __init__(self, message: str, remote_type: str = "") -> None:
        self.remote_type = remote_type
        super().__init__(message)
