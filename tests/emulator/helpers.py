"""Clients for the emulator tests: aiohttp over the emulator's CA, tokens, msal, certificates."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.emulator import Emulator

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "s3cr3t~value"
MAILBOX = "scanner@contoso.com"
PUBLIC_CLIENT = "99999999-8888-7777-6666-555555555555"  # a public client: no secret, no cert
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRAPH_MAIL_SEND = "https://graph.microsoft.com/Mail.Send"
SMTP_SEND = "https://outlook.office.com/SMTP.Send"


class Endpoints(Protocol):
    """What a client needs to know about an emulator (in-process or a CLI process)."""

    @property
    def login_endpoint(self) -> str: ...
    @property
    def ca_file(self) -> Path: ...


@asynccontextmanager
async def graph_client(emulator: Endpoints) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session that trusts only the emulator's CA."""
    context = ssl.create_default_context(cafile=emulator.ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


async def get_token(
    http: aiohttp.ClientSession,
    emulator: Endpoints,
    *,
    tenant: str = TENANT,
    client_id: str = CLIENT,
    secret: str = SECRET,
    scope: str = GRAPH_SCOPE,
) -> str:
    """A client-credentials access token straight from the token endpoint."""
    async with http.post(
        f"{emulator.login_endpoint}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    ) as response:
        body = await response.json()
        assert response.status == 200, body
        token: str = body["access_token"]
        return token


async def token_response(
    http: aiohttp.ClientSession, emulator: Emulator, tenant: str, form: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{emulator.login_endpoint}/{tenant}/oauth2/v2.0/token", data=form
    ) as response:
        return response.status, await response.json()


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def mime_body(message: bytes) -> bytes:
    return base64.b64encode(message)


def json_message(**fields: Any) -> dict[str, Any]:
    """A minimal valid Graph message, with `fields` added or replaced."""
    message: dict[str, Any] = {
        "subject": "Scan from the 2nd floor",
        "body": {"contentType": "text", "content": "Your scan is attached."},
        "toRecipients": [{"emailAddress": {"address": "alice@example.com", "name": "Alice"}}],
    }
    message.update(fields)
    return message


def requests_session(emulator: Emulator) -> requests.Session:
    """What a user must give msal: verify against the CA, ignore REQUESTS_CA_BUNDLE & proxies."""
    session = requests.Session()
    session.verify = str(emulator.ca_file)
    session.trust_env = False
    return session


def msal_app(
    emulator: Emulator, session: requests.Session, credential: Any, *, tenant: str = TENANT
) -> Any:
    return msal.ConfidentialClientApplication(
        CLIENT,
        client_credential=credential,
        authority=f"{emulator.login_endpoint}/{tenant}",
        instance_discovery=False,
        http_client=session,
    )


def public_client(
    emulator: Emulator, session: requests.Session, *, tenant: str = TENANT, **kwargs: Any
) -> Any:
    """msal's PublicClientApplication for PUBLIC_CLIENT, as the gateway builds it."""
    return msal.PublicClientApplication(
        kwargs.pop("client_id", PUBLIC_CLIENT),
        authority=f"{emulator.login_endpoint}/{tenant}",
        instance_discovery=False,
        http_client=session,
        **kwargs,
    )


async def sign_in(
    http: aiohttp.ClientSession,
    emulator: Emulator,
    *,
    username: str | None = None,
    scope: str = f"{GRAPH_MAIL_SEND} offline_access openid profile",
    tenant: str = TENANT,
    client_id: str = PUBLIC_CLIENT,
) -> dict[str, Any]:
    """A delegated token response by the device-code flow, approved at once as `username`."""
    base = f"{emulator.login_endpoint}/{tenant}/oauth2/v2.0"
    async with http.post(
        f"{base}/devicecode", data={"client_id": client_id, "scope": scope}
    ) as response:
        flow = await response.json()
        assert response.status == 200, flow
    emulator.approve_device_code(flow["user_code"], username)
    status, body = await token_response(
        http,
        emulator,
        tenant,
        {
            "grant_type": DEVICE_CODE_GRANT,
            "client_id": client_id,
            "device_code": flow["device_code"],
            "client_info": "1",
        },
    )
    assert status == 200, body
    return body


def make_certificate(common_name: str = "gateway-app") -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a self-signed RSA certificate, as an admin makes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def sha1_thumbprint(certificate_pem: bytes) -> str:
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - x5t is SHA-1
