"""The cluster keyring: shared secret keys that authenticate and encrypt a cluster.

A keyring holds one or more 32-byte keys. The first is the *primary*: a node
proves itself and seals its datagrams with it. Every key of the ring is
accepted from others, so a key can be rotated while the cluster runs (install
the new key everywhere, make it primary everywhere, then remove the old one;
see ``docs/security.md``).

A keyring file holds one key per line, base64 (``pydevts keygen`` prints a
new one); blank lines and lines starting with ``#`` are ignored. A node
started from a file writes the file back when its ring changes (atomically:
a temporary file renamed over it, mode 0600).

This module needs nothing beyond the standard library; sealing and opening
(``pydevts.wire.secure``) need ``cryptography`` (``pip install
'pydevts-core[keyring]'``, which the ``pydevts`` distribution includes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigurationError

__all__ = [
    "KEY_SIZE",
    "MAX_KEYS",
    "Keyring",
    "check_open_mode",
    "generate_key",
    "warn_open_mode",
    "key_fingerprint",
]

log = logging.getLogger("pydevts.node")

KEY_SIZE = 32
MAX_KEYS = 16  # a ring is tried key by key on every datagram and handshake: keep it short


def generate_key() -> str:
    """A new random key, base64 (what ``pydevts keygen`` prints)."""
    return base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()


def decode_key(text: str, where: str = "key") -> bytes:
    """A base64 key -> its 32 bytes; ConfigurationError saying what is wrong (never the key itself)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{where} is not base64 (make one with `pydevts keygen`)") from None
    if len(key) != KEY_SIZE:
        raise ConfigurationError(f"{where} is {len(key)} bytes; a key is {KEY_SIZE} bytes (`pydevts keygen`)")
    return key


def key_fingerprint(key: bytes) -> str:
    """A short public name for a key (for listings and logs): never enough to recover it."""
    return hashlib.sha256(b"pydevts key fingerprint\x00" + key).hexdigest()[:16]


class Keyring:
    """An ordered set of keys; ``keys[0]`` is the primary. Optionally backed by a file."""

    def __init__(self, keys: Iterable[bytes | str], *, path: str | os.PathLike[str] | None = None) -> None:
        ring: list[bytes] = []
        for i, key in enumerate(keys):
            raw = decode_key(key, f"key {i + 1}") if isinstance(key, str) else bytes(key)
            if len(raw) != KEY_SIZE:
                raise ConfigurationError(f"key {i + 1} is {len(raw)} bytes; a key is {KEY_SIZE} bytes")
            if raw not in ring:
                ring.append(raw)
        if not ring:
            raise ConfigurationError("a keyring needs at least one key (make one with `pydevts keygen`)")
        if len(ring) > MAX_KEYS:
            raise ConfigurationError(f"a keyring holds at most {MAX_KEYS} keys, not {len(ring)}")
        self._keys = ring
        self.path = Path(path) if path is not None else None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring file; ConfigurationError naming the file and the line that is wrong."""
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read keyring {str(file)!r}: {exc.strerror or exc}") from None
        keys = [
            decode_key(line, f"{file}, line {n}")
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not keys:
            raise ConfigurationError(f"keyring {str(file)!r} holds no key (make one with `pydevts keygen`)")
        return cls(keys, path=file)

    @classmethod
    def coerce(cls, value: Keyring | str | os.PathLike[str] | Sequence[bytes | str] | None) -> Keyring | None:
        """What ``Node(keyring=...)`` takes: a Keyring, a file path, or a list of keys."""
        if value is None or isinstance(value, Keyring):
            return value
        if isinstance(value, str | os.PathLike):
            return cls.from_file(value)
        return cls(value)

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    def fingerprints(self) -> list[str]:
        return [key_fingerprint(k) for k in self._keys]

    # ------------------------------------------------------------ rotation

    def install(self, key: bytes) -> bool:
        """Add ``key`` (not primary); False if it was there already."""
        if key in self._keys:
            return False
        if len(self._keys) >= MAX_KEYS:
            raise ConfigurationError(f"the keyring is full ({MAX_KEYS} keys): remove one first")
        self._keys.append(key)
        self._save()
        return True

    def use(self, key: bytes) -> None:
        """Make an installed ``key`` the primary."""
        if key not in self._keys:
            raise ConfigurationError(f"key {key_fingerprint(key)} is not installed: install it first")
        self._keys.remove(key)
        self._keys.insert(0, key)
        self._save()

    def remove(self, key: bytes) -> bool:
        """Remove ``key``; the primary cannot be removed. False if it was not there."""
        if key not in self._keys:
            return False
        if key == self._keys[0]:
            raise ConfigurationError(f"key {key_fingerprint(key)} is the primary key: `use` another first")
        self._keys.remove(key)
        self._save()
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        text = "".join(base64.b64encode(k).decode() + "\n" for k in self._keys)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:  # never print the keys themselves
        return f"Keyring({len(self._keys)} keys, primary {key_fingerprint(self.primary)})"


def check_open_mode(keyring: Keyring | None, serializer: object) -> None:
    """Before a node starts: refuse a serializer that needs authenticated peers in an open cluster."""
    if keyring is None and getattr(serializer, "requires_keyring", False):
        name = getattr(serializer, "name", "?")
        raise ConfigurationError(
            f"serializer {name!r} runs code chosen by whoever sends the bytes, so it needs a cluster "
            "keyring (authenticated peers only): make a key with `pydevts keygen`, put it in a file "
            "and pass keyring=PATH (CLI: --keyring PATH) to every node"
        )


def warn_open_mode(node_id: str, keyring: Keyring | None) -> None:
    """Once a node is in its cluster: say so when anyone could join it."""
    if keyring is not None:
        return
    log.warning(
        "node %s is in an OPEN cluster (no keyring): anyone who can reach its ports can join, "
        "read every event and inject events; use --keyring PATH (Node(keyring=...)) beyond one "
        "trusted host (docs/security.md)",
        node_id,
    )
