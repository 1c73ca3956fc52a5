"""Certificate credentials for an Entra ID app: load, check and hand them to msal.

An app registration can prove itself with a certificate instead of a client secret: msal signs a
short JWT (the client assertion) with the private key, and Entra checks it against the
certificate uploaded under App registrations → Certificates & secrets → Certificates. This module
reads the files the configuration names — a PEM certificate and key, or a PKCS#12 (PFX) holding
both — checks them the way Entra would (the key matches the certificate, RSA, within its validity),
and builds the `client_credential` dict for `msal.ConfidentialClientApplication`. A PFX is decrypted
here, so msal sees the same PEM-based dict whichever form the files came in.

What msal 1.39 does with each dict (`ClientApplication._build_client`):

- `{"private_key", "thumbprint"}`: RS256 signature, header `x5t` = SHA-1 thumbprint, no `x5c`.
  The only PEM form without `x5c`; Entra finds the key by the registered certificate's thumbprint.
- `{"private_key", "public_certificate"}` (no thumbprint): PS256, header `x5t#S256` = SHA-256
  thumbprint and `x5c` = the certificate (msal sends only the leaf). For subject name + issuer auth.
- A thumbprint *and* a certificate would give RS256/`x5t` plus `x5c`; a `private_key_pfx_path`
  makes msal read the file itself on every app build. Neither is used.

Nothing here logs, and no message built here contains a password.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.config.model import CertificateCredential
from gateway.config.secrets import Secret
from gateway.errors import ConfigError, ConfigIssue

MAX_FILE_SIZE = 1024 * 1024  # certificates and keys are a few KiB; anything bigger is a mistake
_PORTAL = "App registrations → your app → Certificates & secrets → Certificates"
_RENEW_HINT = (
    f"create a new certificate (smtp-graph-gateway cert create), upload it under {_PORTAL} "
    "and point the configuration at it"
)


@dataclass(frozen=True)
class CertificateSummary:
    """What an operator compares with the Entra portal, and how long the certificate lasts."""

    subject: str  # RFC 4514, e.g. "CN=smtp-graph-gateway"
    not_after: dt.datetime  # aware, UTC
    sha1_thumbprint: str  # uppercase hex, as the portal's "Thumbprint" column shows it
    sha256_thumbprint: str  # uppercase hex

    def days_left(self, today: dt.date) -> int:
        """Whole days from `today` to the expiry date: 0 on the last day, negative once expired."""
        return (self.not_after.date() - today).days


@dataclass(frozen=True)
class _Loaded:
    key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...]  # the app's certificate first


def msal_client_credential(
    credential: CertificateCredential, *, where: str = "certificate"
) -> dict[str, Any]:
    """The `client_credential` for msal, after checking the files; ConfigError if unusable.

    `where` is the YAML path of the credential, used in error messages.
    """
    loaded = _load(credential, where)
    leaf = loaded.chain[0]
    private_key = loaded.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    if credential.send_x5c:
        # No thumbprint: msal computes the SHA-256 one, signs PS256 and sends x5c.
        return {
            "private_key": private_key,
            "public_certificate": leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        }
    return {"private_key": private_key, "thumbprint": _hex(leaf, hashes.SHA1())}  # noqa: S303 - Entra ID names a certificate by its SHA-1 thumbprint


def certificate_summary(
    credential: CertificateCredential, *, where: str = "certificate"
) -> CertificateSummary:
    """Subject, expiry and thumbprints of the app's certificate (the key is not needed for PEM)."""
    if credential.pfx_file is not None:
        leaf = _load(credential, where, check_validity=False).chain[0]
    elif credential.cert_file is not None:
        leaf = _read_certificates(credential.cert_file, f"{where}.cert_file")[0]
    else:
        raise _error(where, "no certificate configured", "set cert_file and key_file, or pfx_file")
    return CertificateSummary(
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        sha1_thumbprint=_hex(leaf, hashes.SHA1()),  # noqa: S303 - Entra's thumbprint is SHA-1
        sha256_thumbprint=_hex(leaf, hashes.SHA256()),
    )


def _load(credential: CertificateCredential, where: str, *, check_validity: bool = True) -> _Loaded:
    pem_given = credential.cert_file is not None or credential.key_file is not None
    if credential.pfx_file is not None and pem_given:
        raise _error(
            where,
            "both pfx_file and cert_file/key_file are set",
            "use either a PFX file or a PEM certificate and key, not both",
        )
    if credential.pfx_file is not None:
        loaded = _load_pfx(credential.pfx_file, credential.password, f"{where}.pfx_file")
    elif credential.cert_file is not None and credential.key_file is not None:
        chain = _read_certificates(credential.cert_file, f"{where}.cert_file")
        key = _read_key(credential.key_file, credential.password, f"{where}.key_file")
        loaded = _Loaded(key, chain)
    else:
        missing = "key_file" if credential.cert_file is not None else "cert_file"
        if not pem_given:
            raise _error(
                where, "no certificate configured", "set cert_file and key_file, or pfx_file"
            )
        raise _error(
            f"{where}.{missing}",
            f"{missing} is missing",
            "a certificate credential needs both cert_file and key_file (or one pfx_file)",
        )
    _check_pair(loaded, credential, where)
    if check_validity:
        _check_validity(loaded.chain[0], credential, where)
    return loaded


def _read(path: Path, hint_path: str, what: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise _error(hint_path, f"{what} {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise _error(hint_path, f"{what} {path} is a directory", "name the file") from None
    except PermissionError:
        raise _error(
            hint_path,
            f"{what} {path} cannot be read: permission denied",
            "the gateway's user must be able to read it (keys: mode 0600, owned by that user)",
        ) from None
    except OSError as exc:
        raise _error(hint_path, f"{what} {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise _error(hint_path, f"{what} {path} is larger than 1 MiB", "is it the right file?")
    return data


def _read_certificates(path: Path, hint_path: str) -> tuple[x509.Certificate, ...]:
    data = _read(path, hint_path, "certificate file")
    try:
        if b"-----BEGIN" in data:
            chain = tuple(x509.load_pem_x509_certificates(data))
        else:  # a DER .cer, as the portal's own download is
            chain = (x509.load_der_x509_certificate(data),)
    except ValueError:
        hint = "a private key file? set it as key_file" if b"PRIVATE KEY" in data else ""
        raise _error(
            hint_path,
            f"{path} holds no X.509 certificate (expected PEM '-----BEGIN CERTIFICATE-----' "
            "or DER)",
            hint or "give the certificate (.pem or .cer) uploaded to the app registration",
        ) from None
    return chain


def _read_key(path: Path, password: Secret | None, hint_path: str) -> rsa.RSAPrivateKey:
    data = _read(path, hint_path, "private key file")
    secret = _password_bytes(password)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b",ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, secret if encrypted else None)
    except TypeError:  # encrypted without a password given
        raise _error(
            hint_path,
            f"the private key {path} is encrypted and no password is configured",
            "set the key's password (key_password_file)",
        ) from None
    except ValueError:
        if encrypted and secret is not None:
            raise _error(
                hint_path,
                f"wrong password for the private key {path}: it cannot be decrypted",
                "check the key password (key_password_file) belongs to this key",
            ) from None
        hint = (
            "this is a certificate; the private key is the other file (NAME.key)"
            if b"CERTIFICATE" in data
            else "expected PEM '-----BEGIN PRIVATE KEY-----' (PKCS#8) or "
            "'-----BEGIN RSA PRIVATE KEY-----'"
        )
        raise _error(hint_path, f"{path} holds no usable PEM private key", hint) from None
    return _rsa(key, hint_path, str(path))


def _load_pfx(path: Path, password: Secret | None, hint_path: str) -> _Loaded:
    data = _read(path, hint_path, "PFX file")
    if data.lstrip().startswith(b"-----BEGIN"):
        raise _error(
            hint_path,
            f"{path} is a PEM file, not PKCS#12 (PFX)",
            "use cert_file and key_file for PEM files",
        )
    try:
        key, certificate, extra = pkcs12.load_key_and_certificates(data, _password_bytes(password))
    except ValueError as exc:
        if "password" not in str(exc).lower():
            raise _error(
                hint_path, f"{path} is not a PKCS#12 (PFX) file", "export the certificate again"
            ) from None
        message = (
            f"wrong password for the PFX file {path}: it cannot be decrypted"
            if password
            else f"the PFX file {path} is encrypted and no password is configured"
        )
        raise _error(hint_path, message, "set the PFX password (key_password_file)") from None
    if key is None:
        raise _error(
            hint_path,
            f"the PFX file {path} holds no private key",
            "export it again including the private key",
        )
    if certificate is None:
        raise _error(hint_path, f"the PFX file {path} holds no certificate", "export it again")
    return _Loaded(_rsa(key, hint_path, str(path)), (certificate, *extra))


def _rsa(key: object, hint_path: str, source: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _error(
            hint_path,
            f"the private key in {source} is not an RSA key",
            "Entra ID app certificates use RSA keys (smtp-graph-gateway cert create makes one)",
        )
    return key


def _check_pair(loaded: _Loaded, credential: CertificateCredential, where: str) -> None:
    def spki(certificate: x509.Certificate) -> bytes:
        return certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    own = loaded.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if spki(loaded.chain[0]) == own:
        return
    source = credential.pfx_file or credential.key_file
    hint_path = f"{where}.pfx_file" if credential.pfx_file else f"{where}.key_file"
    if any(spki(other) == own for other in loaded.chain[1:]):
        hint = "the key belongs to a later certificate in the file: put the app's certificate first"
    else:
        hint = "key_file and cert_file must be the two halves of the same certificate"
    raise _error(
        hint_path,
        f"the private key in {source} does not match the certificate "
        f"{loaded.chain[0].subject.rfc4514_string()} "
        f"(thumbprint {_hex(loaded.chain[0], hashes.SHA1())})",  # noqa: S303 - Entra ID names a certificate by its SHA-1 thumbprint
        hint,
    )


def _check_validity(
    certificate: x509.Certificate, credential: CertificateCredential, where: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    hint_path = f"{where}.pfx_file" if credential.pfx_file else f"{where}.cert_file"
    thumbprint = _hex(certificate, hashes.SHA1())  # noqa: S303 - Entra ID names a certificate by its SHA-1 thumbprint
    if certificate.not_valid_after_utc <= now:
        raise _error(
            hint_path,
            f"the certificate {thumbprint} expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; Entra ID refuses it",
            _RENEW_HINT,
        )
    if certificate.not_valid_before_utc > now + dt.timedelta(minutes=5):
        raise _error(
            hint_path,
            f"the certificate {thumbprint} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock, or use a certificate that is valid now",
        )


def _password_bytes(password: Secret | None) -> bytes | None:
    return password.reveal().encode("utf-8") if password else None


def _hex(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    return certificate.fingerprint(algorithm).hex().upper()


def _error(path: str, message: str, hint: str = "") -> ConfigError:
    return ConfigError([ConfigIssue(path, message, hint)])
