"""`smtp-graph-gateway cert create`: a self-signed certificate for an Entra ID app registration,
or with `--server-name` for the SMTP listeners' TLS.

Entra ID accepts any certificate as an app credential — self-signed is the usual choice — as long
as it is RSA (msal signs the client assertion with RS256 or PS256). This writes three files:

- `NAME.key`: the private key, PEM PKCS#8, encrypted when a password is given, mode 0600;
- `NAME.pem`: the certificate, PEM, for the gateway's `cert_file` (mode 0644);
- `NAME.cer`: the same certificate, DER, to upload to the app registration (mode 0644).

With server names (`--server-name relay.contoso.com --server-name 192.168.10.5`) the
certificate is one a TLS server presents instead: the names as subjectAltName entries, the
`serverAuth` usage, an unencrypted key (the listener cannot ask for a password). It suits
devices that do not verify certificates, or that can be told to trust this one; a certificate
from an internal CA or ACME is better where devices verify.

Existing files are never overwritten: each is created with O_CREAT|O_EXCL, and if any of them is
already there nothing is written at all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.errors import GatewayError

KEY_SIZE = 2048
DEFAULT_SUBJECT = "CN=smtp-graph-gateway"
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a little clock skew between here and Entra
_PLAIN_YAML = re.compile(r"[A-Za-z0-9_./~+-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class CertificateCreationError(GatewayError):
    """The certificate cannot be created (bad argument, existing files, unwritable directory)."""


@dataclass(frozen=True)
class CreatedCertificate:
    """The files written by `create_certificate`, and what to tell the operator."""

    key_file: Path
    cert_file: Path  # PEM
    der_file: Path  # DER (.cer), for upload to Entra
    subject: str
    sha1_thumbprint: str  # uppercase hex, as the Entra portal shows it
    not_after: dt.datetime  # aware, UTC
    key_encrypted: bool
    server_names: tuple[str, ...] = ()  # a listener's certificate: the names it is valid for

    def instructions(self) -> str:
        """What `cert create` prints: the files, the thumbprint, where to upload, the YAML."""
        if self.server_names:
            return self._listener_instructions()
        protection = (
            "encrypted with your password" if self.key_encrypted else "not encrypted"
        ) + ", mode 0600: keep it on this machine"
        lines = [
            f"Created a self-signed certificate for Entra ID ({self.subject}, RSA {KEY_SIZE}, "
            f"SHA-256), valid until {self.not_after:%Y-%m-%d %H:%M} UTC.",
            "",
            f"  private key   {self.key_file}  ({protection})",
            f"  certificate   {self.cert_file}",
            f"  for upload    {self.der_file}  (DER)",
            f"  thumbprint    {self.sha1_thumbprint}",
            "",
            f"Upload {self.der_file.name} (or {self.cert_file.name}) under App registrations → "
            "your app → Certificates & secrets → Certificates,",
            "and check that the portal shows the thumbprint above.",
            "",
            "Then give the tenant's entry in the configuration this certificate (instead of "
            "client_secret):",
            "",
            "    certificate:",
            f"      cert_file: {_yaml_path(self.cert_file)}",
            f"      key_file: {_yaml_path(self.key_file)}",
        ]
        if self.key_encrypted:
            password_file = self.key_file.with_name(self.key_file.name + "-password")
            lines += [
                f"      key_password_file: {_yaml_path(password_file)}",
                "",
                f"and put the key's password in {password_file} (mode 0600), or name it "
                "through systemd's LoadCredential=.",
            ]
        return "\n".join(lines) + "\n"

    def _listener_instructions(self) -> str:
        lines = [
            f"Created a self-signed TLS server certificate for the SMTP listeners ({self.subject}, "
            f"valid for {', '.join(self.server_names)}), valid until "
            f"{self.not_after:%Y-%m-%d %H:%M} UTC.",
            "",
            f"  private key   {self.key_file}  (not encrypted, mode 0600: keep it on this machine)",
            f"  certificate   {self.cert_file}  (give it to devices that verify the server)",
            f"  SHA-1         {self.sha1_thumbprint}",
            "",
            "Then name it in the configuration:",
            "",
            "    smtp:",
            "      tls:",
            f"        cert_file: {_yaml_path(self.cert_file)}",
            f"        key_file: {_yaml_path(self.key_file)}",
        ]
        return "\n".join(lines) + "\n"


def create_certificate(
    directory: Path,
    name: str,
    *,
    days: int = 730,
    key_password: str | None = None,
    subject: str = DEFAULT_SUBJECT,
    server_names: tuple[str, ...] = (),
) -> CreatedCertificate:
    """Make an RSA 2048 key and a self-signed SHA-256 certificate valid for `days` days: an
    app credential, or with `server_names` a TLS server certificate for those names.

    Writes `{name}.key`, `{name}.pem` and `{name}.cer` in `directory` (created if missing);
    raises CertificateCreationError if any of them exists or the arguments are unusable.
    """
    if not _NAME.fullmatch(name):
        raise CertificateCreationError(
            f"certificate name {name!r} is not a plain file name (letters, digits, '.', '_', '-'; "
            "no slashes)"
        )
    if days < 1:
        raise CertificateCreationError(f"days must be at least 1 (got {days})")
    if key_password is not None and not key_password:
        raise CertificateCreationError("the key password is empty; omit it for an unencrypted key")
    alternative_names = _alternative_names(server_names, key_password)
    if server_names and subject == DEFAULT_SUBJECT:
        subject = f"CN={server_names[0]}"
    x509_name = _subject(subject)

    directory = directory.resolve()
    key_file, cert_file, der_file = (directory / f"{name}{ext}" for ext in (".key", ".pem", ".cer"))
    existing = [str(path) for path in (key_file, cert_file, der_file) if path.exists()]
    if existing:
        raise CertificateCreationError(
            f"refusing to overwrite {', '.join(existing)}: choose another name or move the old "
            "files away first (a certificate still registered in Entra needs its key)"
        )

    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    certificate = _self_signed(key, x509_name, days, alternative_names)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(key_password.encode("utf-8"))
        if key_password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )

    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CertificateCreationError(f"cannot create {directory}: {exc.strerror}") from None
    written: list[Path] = []
    try:
        for path, data, mode in (
            (key_file, key_pem, 0o600),
            (cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644),
            (der_file, certificate.public_bytes(serialization.Encoding.DER), 0o644),
        ):
            _write_new(path, data, mode)
            written.append(path)
    except OSError as exc:
        for path in written:  # all three or none
            path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise CertificateCreationError(
                f"refusing to overwrite {exc.filename}: it appeared while writing"
            ) from None
        raise CertificateCreationError(
            f"cannot write {exc.filename or directory}: {exc.strerror}"
        ) from None

    return CreatedCertificate(
        key_file=key_file,
        cert_file=cert_file,
        der_file=der_file,
        subject=certificate.subject.rfc4514_string(),
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra ID names a certificate by its SHA-1 thumbprint
        not_after=certificate.not_valid_after_utc,
        key_encrypted=key_password is not None,
        server_names=server_names,
    )


def _subject(subject: str) -> x509.Name:
    try:
        x509_name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        raise CertificateCreationError(
            f"subject {subject!r} is not an RFC 4514 name such as 'CN=smtp-graph-gateway'"
        ) from None
    if not x509_name.rdns:
        raise CertificateCreationError("the subject is empty; use e.g. 'CN=smtp-graph-gateway'")
    return x509_name


def _alternative_names(names: tuple[str, ...], key_password: str | None) -> list[x509.GeneralName]:
    """subjectAltName entries of a listener's certificate: an IP address as such, anything else
    as a DNS name."""
    if names and key_password is not None:
        raise CertificateCreationError(
            "a listener's key cannot be encrypted (the gateway reads it at start without a "
            "password): leave out --password-file, and keep the key mode 0600"
        )
    found: list[x509.GeneralName] = []
    for name in names:
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", name):
            raise CertificateCreationError(f"server name {name!r} is not a host name or address")
        found.append(x509.DNSName(name.lower()))
    return found


def _self_signed(
    key: rsa.RSAPrivateKey, name: x509.Name, days: int, server: list[x509.GeneralName]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    public_key = key.public_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=bool(server),  # TLS servers with RSA key exchange
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(server), critical=False)
    return builder.sign(key, hashes.SHA256())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never replacing a file), write `data`, set `mode` exactly, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away from the 0644 files
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _yaml_path(path: Path) -> str:
    text = str(path)
    if _PLAIN_YAML.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
