"""Transport addresses: :class:`Address` (``host:port``) and the bounds on its text.

A leaf module (it imports nothing from pydevts), so that the wire format, settings and
the protocols can all use addresses without importing one another.
:mod:`pydevts.protocols` re-exports :class:`Address`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_ADDRESS_CHARS", "MAX_HOST_CHARS", "Address"]


#: Longest host accepted in an address (a DNS name's limit); the whole ``[host]:port`` text
#: is at most :data:`MAX_ADDRESS_CHARS` characters.
MAX_HOST_CHARS = 253
MAX_ADDRESS_CHARS = MAX_HOST_CHARS + 8


class Address(NamedTuple):
    """A transport address: host and port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; raise ``ValueError`` if malformed.

        Addresses come from the network (handshakes, membership gossip), so the
        host is bounded (at most :data:`MAX_HOST_CHARS` characters, DNS's limit),
        printable (no NUL, control or other invisible characters, no spaces: the
        socket layer would raise ``TypeError`` on a NUL) and, if not ASCII, encodable
        as an IDNA host name; the port is 0 to 65535 in ASCII digits.
        """
        if not isinstance(text, str):
            raise ValueError(f"an address must be a string, not {type(text).__name__}")
        if len(text) > MAX_ADDRESS_CHARS:
            raise ValueError(f"address {text[:40]!r}... is longer than {MAX_ADDRESS_CHARS} characters")
        host, sep, port = text.rpartition(":")
        if (
            not sep
            or not host
            or not (port.isascii() and port.isdigit())
            or len(port) > 5
            or int(port) > 65535
        ):
            raise ValueError(f"address {text!r} is not of the form HOST:PORT (port 0 to 65535)")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (0 < len(host) <= MAX_HOST_CHARS and host.isprintable()) or any(c in host for c in " []"):
            raise ValueError(
                f"address {text!r}: the host must be 1 to {MAX_HOST_CHARS} printable characters, no spaces"
            )
        if not host.isascii():
            try:
                host.encode("idna")
            except UnicodeError:
                raise ValueError(f"address {text!r}: the host is not a valid host name") from None
        return cls(host, int(port))
