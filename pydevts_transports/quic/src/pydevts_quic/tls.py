"""TLS for the QUIC transport: a self-signed certificate by default, or yours.

QUIC always encrypts (TLS 1.3). Two ways to run a cluster:

* **Nothing to do** (default): every transport makes a fresh self-signed
  certificate when it is created, and clients do not verify certificates.
  Traffic is encrypted, but a node does not prove who it is: anyone who can
  reach the port and knows the cluster name can join, as with TCP.
* **Your own CA**: give every node ``cafile`` (the CA that signed the
  cluster's certificates) plus its own ``certfile``/``keyfile``. A node then
  refuses to connect to a node whose certificate that CA did not sign, or
  whose certificate does not name the host it dialled (or ``server_name``).
  aioquic cannot ask clients for certificates, so it is the node that dials
  that checks the node that answers; every link is checked from one side.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydevts.errors import ConfigurationError

__all__ = ["TLSSettings", "make_self_signed"]


def make_self_signed(common_name: str = "pydevts") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and a certificate for it, signed by itself, valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass(frozen=True)
class TLSSettings:
    """Certificate files; all ``None`` means a self-signed certificate and no verification."""

    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise ConfigurationError("quic transport: keyfile given without certfile")
        if self.cafile is not None and self.certfile is None:
            raise ConfigurationError(
                "quic transport: cafile given without certfile/keyfile — the other nodes verify this "
                "node's certificate against the same CA, so each node needs one signed by it"
            )
        if self.cafile is not None:
            try:
                with open(self.cafile, "rb") as f:
                    x509.load_pem_x509_certificates(f.read())
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"quic transport: cannot load cafile={self.cafile!r}: {exc}"
                ) from exc

    @property
    def verifies(self) -> bool:
        return self.cafile is not None

    def server_configuration(self, **common: Any) -> QuicConfiguration:
        config = QuicConfiguration(is_client=False, **common)
        if self.certfile is not None:
            try:
                config.load_cert_chain(self.certfile, self.keyfile)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"quic transport: cannot load certfile={self.certfile!r} keyfile={self.keyfile!r}: {exc}"
                ) from exc
        else:
            config.certificate, config.private_key = make_self_signed()
        return config

    def client_configuration(self, host: str, **common: Any) -> QuicConfiguration:
        config = QuicConfiguration(is_client=True, **common)
        if self.cafile is None:
            config.verify_mode = ssl.CERT_NONE
            config.server_name = self.server_name
            return config
        config.verify_mode = ssl.CERT_REQUIRED
        config.server_name = self.server_name or host
        try:
            config.load_verify_locations(cafile=self.cafile)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"quic transport: cannot load cafile={self.cafile!r}: {exc}") from exc
        return config
