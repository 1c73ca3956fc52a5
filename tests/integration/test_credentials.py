"""Certificate credentials: files from `cert create` and PFX, real msal against the emulator."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.certs import CertificateCreationError, CreatedCertificate, create_certificate
from gateway.config.secrets import Secret
from gateway.emulator import Emulator, EmulatorApp, EmulatorSettings, running_emulator
from gateway.entra.credentials import (
    CertificateCredential,
    certificate_summary,
    msal_client_credential,
)
from gateway.errors import ConfigError

TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "cert-app"
KEY_PASSWORD = "k3y-Passw0rd-not-for-logs"
PFX_PASSWORD = "pfx-Passw0rd-not-for-logs"


@pytest.fixture(autouse=True)
def _system_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on the production machine: requests would let these override Session.verify.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Certs:
    plain: CreatedCertificate  # unencrypted key
    locked: CreatedCertificate  # key encrypted with KEY_PASSWORD
    pfx_file: Path  # `locked`'s certificate and key, PKCS#12 with PFX_PASSWORD
    stranger: CreatedCertificate  # never registered with the app


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Made once per module (RSA key generation is the slow part); the tests only read them."""
    directory = tmp_path_factory.mktemp("certs")
    locked = create_certificate(directory, "locked", key_password=KEY_PASSWORD)
    key = serialization.load_pem_private_key(locked.key_file.read_bytes(), KEY_PASSWORD.encode())
    assert isinstance(key, rsa.RSAPrivateKey)
    certificate = x509.load_pem_x509_certificate(locked.cert_file.read_bytes())
    pfx_file = directory / "locked.pfx"
    pfx_file.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"smtp-graph-gateway",
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
        )
    )
    return Certs(
        plain=create_certificate(directory, "plain"),
        locked=locked,
        pfx_file=pfx_file,
        stranger=create_certificate(directory, "stranger", subject="CN=somebody else"),
    )


@pytest.fixture
async def emulator(tmp_path: Path, certs: Certs) -> AsyncIterator[Emulator]:
    registered = certs.plain.cert_file.read_bytes() + certs.locked.cert_file.read_bytes()
    app = EmulatorApp(tenant_id=TENANT_ID, client_id=CLIENT_ID, certificate_pem=registered)
    settings = EmulatorSettings(state_dir=tmp_path / "emu", apps=(app,))
    async with running_emulator(settings) as running:
        yield running


class RecordingSession(requests.Session):
    """Trusts only the emulator's CA and keeps the client assertions msal sends."""

    def __init__(self, ca_file: Path) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = str(ca_file)
        self.assertions: list[str] = []

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "client_assertion" in data:
            assertion = data["client_assertion"]  # bytes or str, by msal version
            self.assertions.append(
                assertion.decode() if isinstance(assertion, bytes) else assertion
            )
        return super().post(url, data=data, json=json, **kwargs)


async def acquire(
    emulator: Emulator, credential: CertificateCredential
) -> tuple[dict[str, Any], dict[str, Any]]:
    """msal's token result and the header of the assertion it signed."""
    session = RecordingSession(emulator.ca_file)

    def run() -> dict[str, Any]:  # the constructor does discovery I/O: keep it off the loop too
        app = msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=msal_client_credential(credential),
            authority=f"{emulator.login_endpoint}/{TENANT_ID}",
            instance_discovery=False,
            http_client=session,
        )
        result: dict[str, Any] = app.acquire_token_for_client(
            scopes=[f"{emulator.base_url}/.default"]
        )
        return result

    try:
        result = await asyncio.to_thread(run)
    finally:
        session.close()
    assert len(session.assertions) == 1
    return result, jwt_header(session.assertions[0])


def jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".", maxsplit=1)[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return header


def thumbprint(value: str) -> str:
    """A JWT x5t / x5t#S256 header value as uppercase hex (msal pads it, JWS does not)."""
    return (
        base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
        .hex()
        .upper()
    )


def pem_credential(
    created: CreatedCertificate, password: str | None = None, *, send_x5c: bool = False
) -> CertificateCredential:
    return CertificateCredential(
        cert_file=created.cert_file,
        key_file=created.key_file,
        pfx_file=None,
        password=Secret(password) if password else None,
        send_x5c=send_x5c,
    )


def load(created: CreatedCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(created.cert_file.read_bytes())


# --- tokens from Entra (the emulator) --------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-key", "encrypted-key"])
async def test_certificate_from_cert_create_gets_a_token(
    emulator: Emulator, certs: Certs, encrypted: bool
) -> None:
    created = certs.locked if encrypted else certs.plain
    credential = pem_credential(created, KEY_PASSWORD if encrypted else None)
    result, header = await acquire(emulator, credential)
    assert result.get("token_type") == "Bearer", result
    assert result["access_token"].count(".") == 2
    # The portable form: RS256, found by the SHA-1 thumbprint alone, no certificate sent along.
    assert header["alg"] == "RS256"
    assert thumbprint(header["x5t"]) == created.sha1_thumbprint
    assert "x5c" not in header
    assert "x5t#S256" not in header


async def test_pfx_with_password_gets_a_token_exactly_like_pem(
    emulator: Emulator, certs: Certs
) -> None:
    pfx = CertificateCredential(
        cert_file=None, key_file=None, pfx_file=certs.pfx_file, password=Secret(PFX_PASSWORD)
    )
    assert msal_client_credential(pfx) == msal_client_credential(
        pem_credential(certs.locked, KEY_PASSWORD)
    )
    result, header = await acquire(emulator, pfx)
    assert "access_token" in result, result
    assert header["alg"] == "RS256"
    assert thumbprint(header["x5t"]) == certs.locked.sha1_thumbprint


async def test_send_x5c_signs_ps256_and_sends_the_certificate(
    emulator: Emulator, certs: Certs
) -> None:
    credential = pem_credential(certs.plain, send_x5c=True)
    assert set(msal_client_credential(credential)) == {"private_key", "public_certificate"}
    result, header = await acquire(emulator, credential)
    assert "access_token" in result, result
    certificate = load(certs.plain)
    assert header["alg"] == "PS256"
    assert thumbprint(header["x5t#S256"]) == certificate.fingerprint(hashes.SHA256()).hex().upper()
    # Only the app's certificate, base64 DER (msal keeps the PEM line breaks in it).
    assert [base64.b64decode(value) for value in header["x5c"]] == [
        certificate.public_bytes(serialization.Encoding.DER)
    ]


async def test_send_x5c_from_pfx_works_too(emulator: Emulator, certs: Certs) -> None:
    pfx = CertificateCredential(
        cert_file=None,
        key_file=None,
        pfx_file=certs.pfx_file,
        password=Secret(PFX_PASSWORD),
        send_x5c=True,
    )
    result, header = await acquire(emulator, pfx)
    assert "access_token" in result, result
    assert header["alg"] == "PS256"
    assert len(header["x5c"]) == 1


@pytest.mark.parametrize("send_x5c", [False, True], ids=["x5t", "x5c"])
async def test_unregistered_certificate_is_refused_with_aadsts700027(
    emulator: Emulator, certs: Certs, send_x5c: bool
) -> None:
    result, _ = await acquire(emulator, pem_credential(certs.stranger, send_x5c=send_x5c))
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert 700027 in result["error_codes"]
    assert "AADSTS700027" in result["error_description"]
    assert "not registered" in result["error_description"]


# --- files that cannot work: ConfigError, never the password ---------------------------------------


def self_signed(
    directory: Path,
    name: str,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    key: rsa.RSAPrivateKey | None = None,
) -> tuple[Path, Path]:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name.from_rfc4514_string(f"CN={name}")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return cert_file, key_file


def config_error(credential: CertificateCredential) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        msal_client_credential(credential, where="tenants[0].certificate")
    error = caught.value
    assert len(error.issues) == 1
    for password in (KEY_PASSWORD, PFX_PASSWORD, "Wrong-Passw0rd"):
        assert password not in str(error)
        assert password not in repr(error.issues)
    return error


def test_wrong_key_password_is_named(certs: Certs) -> None:
    error = config_error(pem_credential(certs.locked, "Wrong-Passw0rd"))
    assert error.issues[0].path == "tenants[0].certificate.key_file"
    assert "wrong password" in str(error)
    assert str(certs.locked.key_file) in str(error)


def test_encrypted_key_without_password_is_named(certs: Certs) -> None:
    error = config_error(pem_credential(certs.locked))
    assert "encrypted and no password is configured" in str(error)


def test_wrong_pfx_password_is_named(certs: Certs) -> None:
    pfx = CertificateCredential(
        cert_file=None, key_file=None, pfx_file=certs.pfx_file, password=Secret("Wrong-Passw0rd")
    )
    error = config_error(pfx)
    assert error.issues[0].path == "tenants[0].certificate.pfx_file"
    assert "wrong password for the PFX file" in str(error)


def test_key_of_another_certificate_is_named(certs: Certs) -> None:
    crossed = CertificateCredential(
        cert_file=certs.plain.cert_file,
        key_file=certs.locked.key_file,
        pfx_file=None,
        password=Secret(KEY_PASSWORD),
    )
    error = config_error(crossed)
    assert "does not match the certificate" in str(error)
    assert certs.plain.sha1_thumbprint in str(error)


def test_chain_with_the_apps_certificate_last_is_explained(tmp_path: Path, certs: Certs) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(certs.stranger.cert_file.read_bytes() + certs.plain.cert_file.read_bytes())
    error = config_error(
        CertificateCredential(
            cert_file=chain, key_file=certs.plain.key_file, pfx_file=None, password=None
        )
    )
    assert "put the app's certificate first" in str(error)


def test_expired_certificate_is_named(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    cert_file, key_file = self_signed(
        tmp_path,
        "old",
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=35),
    )
    error = config_error(
        CertificateCredential(
            cert_file=cert_file, key_file=key_file, pfx_file=None, password=Secret(KEY_PASSWORD)
        )
    )
    assert error.issues[0].path == "tenants[0].certificate.cert_file"
    assert f"expired on {(now - dt.timedelta(days=35)):%Y-%m-%d}" in str(error)
    assert "cert create" in error.issues[0].hint
    # The summary still reads it, so `check` can say how long ago.
    summary = certificate_summary(
        CertificateCredential(cert_file=cert_file, key_file=None, pfx_file=None, password=None)
    )
    assert summary.days_left(now.date()) == -35


@pytest.mark.parametrize("which", ["cert_file", "key_file", "pfx_file"])
def test_missing_file_is_named(tmp_path: Path, certs: Certs, which: str) -> None:
    missing = tmp_path / "nowhere" / "gone.pem"
    files: dict[str, Path | None] = {
        "cert_file": certs.plain.cert_file,
        "key_file": certs.plain.key_file,
        "pfx_file": None,
    }
    if which == "pfx_file":
        files = {"cert_file": None, "key_file": None, "pfx_file": missing}
    else:
        files[which] = missing
    error = config_error(
        CertificateCredential(
            cert_file=files["cert_file"],
            key_file=files["key_file"],
            pfx_file=files["pfx_file"],
            password=None,
        )
    )
    assert error.issues[0].path == f"tenants[0].certificate.{which}"
    assert f"{missing} does not exist" in str(error)


def test_files_swapped_are_explained(certs: Certs) -> None:
    swapped = CertificateCredential(
        cert_file=certs.plain.key_file, key_file=certs.plain.cert_file, pfx_file=None, password=None
    )
    error = config_error(swapped)
    assert "holds no X.509 certificate" in str(error)
    assert "key_file" in error.issues[0].hint


def test_incomplete_or_doubled_configuration(certs: Certs) -> None:
    only_cert = CertificateCredential(
        cert_file=certs.plain.cert_file, key_file=None, pfx_file=None, password=None
    )
    assert "key_file is missing" in str(config_error(only_cert))
    both = CertificateCredential(
        cert_file=certs.plain.cert_file,
        key_file=certs.plain.key_file,
        pfx_file=certs.pfx_file,
        password=None,
    )
    assert "both pfx_file and cert_file/key_file" in str(config_error(both))


# --- summary ---------------------------------------------------------------------------------------


def test_summary_matches_cryptography_and_counts_days(tmp_path: Path) -> None:
    created = create_certificate(tmp_path, "summary", days=30, subject="CN=gateway,O=Contoso")
    certificate = x509.load_der_x509_certificate(created.der_file.read_bytes())
    summary = certificate_summary(
        CertificateCredential(
            cert_file=created.cert_file, key_file=created.key_file, pfx_file=None, password=None
        )
    )
    sha1 = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's thumbprint
    assert summary.sha1_thumbprint == sha1 == created.sha1_thumbprint
    assert summary.sha256_thumbprint == certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert summary.subject == "CN=gateway,O=Contoso" == created.subject
    assert summary.not_after == certificate.not_valid_after_utc == created.not_after
    assert summary.not_after.tzinfo == dt.UTC
    today = dt.datetime.now(dt.UTC).date()
    assert summary.days_left(today) in (30, 31)  # 31 only when run across midnight UTC
    assert summary.days_left(summary.not_after.date()) == 0
    assert summary.days_left(summary.not_after.date() + dt.timedelta(days=1)) == -1


def test_summary_of_pfx_equals_summary_of_pem(certs: Certs) -> None:
    pfx = CertificateCredential(
        cert_file=None, key_file=None, pfx_file=certs.pfx_file, password=Secret(PFX_PASSWORD)
    )
    assert certificate_summary(pfx) == certificate_summary(pem_credential(certs.locked))


# --- cert create -----------------------------------------------------------------------------------


def test_create_certificate_writes_key_0600_and_parsable_certificates(tmp_path: Path) -> None:
    created = create_certificate(tmp_path / "new", "contoso", days=10, key_password=KEY_PASSWORD)
    assert created.key_file == (tmp_path / "new" / "contoso.key").resolve()
    assert stat.S_IMODE(created.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(created.cert_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(created.der_file.stat().st_mode) == 0o644
    key_pem = created.key_file.read_bytes()
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, KEY_PASSWORD.encode())
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    der = x509.load_der_x509_certificate(created.der_file.read_bytes())
    assert der == x509.load_pem_x509_certificate(created.cert_file.read_bytes())
    assert isinstance(der.signature_hash_algorithm, hashes.SHA256)
    assert der.issuer == der.subject
    assert der.not_valid_after_utc - der.not_valid_before_utc >= dt.timedelta(days=10)
    unencrypted = create_certificate(tmp_path / "new", "open")
    assert unencrypted.key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_create_certificate_refuses_to_overwrite_anything(tmp_path: Path) -> None:
    (tmp_path / "contoso.cer").write_bytes(b"an older upload")
    with pytest.raises(CertificateCreationError, match=r"refusing to overwrite .*contoso\.cer"):
        create_certificate(tmp_path, "contoso")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contoso.cer"]  # no key, no pem written
    assert (tmp_path / "contoso.cer").read_bytes() == b"an older upload"
    create_certificate(tmp_path, "fabrikam")
    with pytest.raises(CertificateCreationError, match="refusing to overwrite"):
        create_certificate(tmp_path, "fabrikam")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_create_certificate_takes_only_plain_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(CertificateCreationError, match="plain file name"):
        create_certificate(tmp_path, name)


@pytest.mark.parametrize("encrypted", [False, True])
def test_instructions_name_files_thumbprint_portal_and_yaml(
    tmp_path: Path, encrypted: bool
) -> None:
    created = create_certificate(
        tmp_path, "contoso", key_password=KEY_PASSWORD if encrypted else None
    )
    text = created.instructions()
    assert KEY_PASSWORD not in text
    for expected in (
        str(created.key_file),
        str(created.cert_file),
        str(created.der_file),
        created.sha1_thumbprint,
        "upload contoso.cer (or contoso.pem) under App registrations → your app → "
        "Certificates & secrets → Certificates",
    ):
        assert expected.lower() in text.lower()
    snippet = text[text.index("    certificate:") :].split("\n\n")[0]
    parsed = yaml.safe_load(snippet)["certificate"]
    assert parsed["cert_file"] == str(created.cert_file)
    assert parsed["key_file"] == str(created.key_file)
    assert ("key_password_file" in parsed) is encrypted
