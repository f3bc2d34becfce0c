"""Changing the keyring of every live member at once (``pydevts keys``, like ``serf keys``).

A client asks one node (system request ``pydevts.keys``); that node applies
the change to its own ring and asks every other live member to do the same
(member-to-member system request ``pydevts.keyring``, over the sealed
links), then answers with each member's result. A member started with a
keyring file writes the file back, so a restart keeps the new ring.

Rotation without losing a member or an event (``docs/security.md``)::

    pydevts keys install NEW   # every member accepts NEW as well as OLD
    pydevts keys use NEW       # every member proves and seals with NEW
    pydevts keys remove OLD    # OLD is no longer accepted

Links keep the session keys their handshake derived, so a rotation never
cuts a link; a ring is only consulted by new handshakes and by datagrams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..wire.keyring import Keyring, decode_key, key_fingerprint
from .fanout import ask_members

if TYPE_CHECKING:
    from .core import Node

__all__ = ["OPS", "apply_local", "apply_everywhere"]

OPS = ("list", "install", "use", "remove")


def _check(payload: Any) -> tuple[str, bytes | None]:
    if not isinstance(payload, dict) or payload.get("op") not in OPS:
        raise ValueError(f"expected {{'op': one of {', '.join(OPS)}, 'key': base64}}, got {payload!r:.80}")
    op = payload["op"]
    if op == "list":
        return op, None
    key = payload.get("key")
    if not isinstance(key, str):
        raise ValueError(f"'{op}' needs a key (base64)")
    return op, decode_key(key)


def apply_local(keyring: Keyring | None, payload: Any) -> dict[str, Any]:
    """Apply one operation to this node's ring; what it holds afterwards (fingerprints)."""
    if keyring is None:
        raise ConfigurationError("this node has no keyring (an open cluster): start it with --keyring PATH")
    op, key = _check(payload)
    changed = False
    if op == "install" and key is not None:
        changed = keyring.install(key)
    elif op == "use" and key is not None:
        changed = key != keyring.primary
        keyring.use(key)
    elif op == "remove" and key is not None:
        changed = keyring.remove(key)
    return {"keys": keyring.fingerprints(), "primary": key_fingerprint(keyring.primary), "changed": changed}


async def apply_everywhere(node: Node, payload: Any) -> dict[str, Any]:
    """Apply to this node, then to every other live member; ``{"members": {id: result or error}}``."""
    _check(payload)
    results: dict[str, Any] = {}
    try:
        results[node.id] = apply_local(node.keyring, payload)
    except (ConfigurationError, ValueError) as exc:
        results[node.id] = {"error": str(exc)}

    results.update(await ask_members(node, "pydevts.keyring", payload))
    return {"members": results}
