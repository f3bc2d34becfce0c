"""pydevts — the Python Distributed EVenT System.

A cluster of nodes that send and receive named events. Start with
:class:`Node`; see ``docs/architecture.md`` for the layers and the plugin
hooks, and :mod:`pydevts.errors` for the error tree.
"""

from __future__ import annotations

from .client import NodeClient
from .errors import (
    AddressInUseError,
    ConfigurationError,
    ConnectError,
    ConnectionClosedError,
    DeliveryError,
    FrameTooLargeError,
    HandshakeRefusedError,
    JoinError,
    LocalProtocolError,
    NoHandlerError,
    PluginNotFoundError,
    ProtocolError,
    PydevtsError,
    RemoteHandlerError,
    RemoteProtocolError,
    RequestTimeoutError,
    SerializationError,
    TransportError,
    UnknownNodeError,
)
from .handling import Reply
from .hookspecs import hookimpl
from .limits import Limits
from .linkinfo import LinkInfo
from .members import Member, MemberEvent, MemberState
from .node import Node, handler
from .observe import MessageInfo, Plugin
from .plugins import Registry, create_plugin_manager
from .protocols import (
    Address,
    Connection,
    ConnectionInfo,
    ConnectionPlugin,
    Listener,
    Router,
    RouterContext,
    Serializer,
    Transport,
)
from .replicated import ReplicatedDict

__version__ = "0.3.0"

__all__ = [
    "Address",
    "AddressInUseError",
    "ConfigurationError",
    "ConnectError",
    "Connection",
    "ConnectionClosedError",
    "ConnectionInfo",
    "ConnectionPlugin",
    "DeliveryError",
    "FrameTooLargeError",
    "HandshakeRefusedError",
    "JoinError",
    "Listener",
    "Limits",
    "LinkInfo",
    "LocalProtocolError",
    "Member",
    "MemberEvent",
    "MemberState",
    "MessageInfo",
    "NoHandlerError",
    "Node",
    "NodeClient",
    "Plugin",
    "PluginNotFoundError",
    "ProtocolError",
    "PydevtsError",
    "Registry",
    "RemoteHandlerError",
    "RemoteProtocolError",
    "Reply",
    "ReplicatedDict",
    "RequestTimeoutError",
    "Router",
    "RouterContext",
    "SerializationError",
    "Serializer",
    "Transport",
    "TransportError",
    "UnknownNodeError",
    "create_plugin_manager",
    "handler",
    "hookimpl",
]
