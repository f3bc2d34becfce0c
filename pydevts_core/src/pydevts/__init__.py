"""pydevts — the Python Distributed EVenT System.

A cluster of nodes that send and receive named events. Start with
:class:`Node`; see ``docs/architecture.md`` for the layers and the plugin
hooks, and :mod:`pydevts.errors` for the error tree.
"""

from __future__ import annotations

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
from .limits import Limits
from .members import Member, MemberEvent, MemberState
from .node.client import NodeClient
from .node.core import Node, handler
from .node.handling import Reply
from .observe.hooks import MessageInfo, Plugin
from .plugins.hookspecs import hookimpl
from .plugins.registry import Registry, create_plugin_manager
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
from .wire.linkinfo import LinkInfo

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
