"""Certificates for the emulator's HTTPS listener.

At every start the emulator makes a throw-away certificate authority and a server certificate
signed by it, so clients can trust exactly this run (by pointing `ca_file` at the CA PEM) without
disabling TLS verification. Everything is EC P-256: fast to generate and accepted by every TLS
stack the gateway uses. Also: certificate thumbprints, used to match client-assertion headers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


@dataclass(frozen=True)
class ServerPKI:
    """PEM material for one emulator run: the CA to trust, and the server's certificate and key."""

    ca_cert_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes = b""

    def __repr__(self) -> str:  # keep the private key out of logs and tracebacks
        return "ServerPKI(<ca>, <server certificate>, <key>)"


def subject_names(host: str) -> tuple[str, ...]:
    """The names the server certificate covers: loopback always, plus `host` if it is specific."""
    names = list(DEFAULT_NAMES)
    bare = host.strip("[]")
    if bare not in _WILDCARD_HOSTS and bare.lower() not in names:
        names.append(bare.lower())
    return tuple(names)


def generate_pki(names: tuple[str, ...] = DEFAULT_NAMES, *, days: int = 365) -> ServerPKI:
    """Make a new CA and a server certificate for `names` (DNS names or IP addresses)."""
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(hours=1)
    not_after = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtp-graph-gateway emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "smtp-graph-gateway emulator CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "localhost")])
        )
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServerPKI(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _general_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (it may hold a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def server_ssl_context(pki: ServerPKI, directory: Path) -> ssl.SSLContext:
    """A TLS ≥1.2 server context for `pki`; the key is written (mode 0600) into `directory`."""
    cert_file = directory / "server.pem"
    key_file = directory / "server-key.pem"
    write_private(cert_file, pki.server_cert_pem + pki.ca_cert_pem)
    write_private(key_file, pki.server_key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM blob (an app may register several keys)."""
    return x509.load_pem_x509_certificates(pem)


def thumbprints(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """The (SHA-1, SHA-256) fingerprints of the DER certificate: what `x5t`/`x5t#S256` carry."""
    sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is defined as SHA-1
    return sha1, certificate.fingerprint(hashes.SHA256())
