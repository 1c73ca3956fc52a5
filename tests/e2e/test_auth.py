"""SMTP AUTH: PLAIN and LOGIN only under TLS (or where cleartext is allowed), printer-style
LOGIN prompts, per-user senders and send-as, the failed-login lockout."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
from pathlib import Path

import pytest
import trustme

from gateway.emulator import Emulator
from gateway.passwords import hash_password
from tests.conftest import Logged
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway
from tests.support.process import SmtpDialogue

PASSWORD = "Printer-Pa55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}, context


def auth_config(tmp_path: Path, emulator: Emulator, tls_files: dict[str, str], **listener):
    smtp = {
        "tls": tls_files,
        "listeners": [
            {
                "name": "lan",
                "address": "127.0.0.1",
                "port": 0,
                "tls": "starttls",
                "auth": "optional",
                **listener,
            },
            {
                "name": "smtps",
                "address": "127.0.0.1",
                "port": 0,
                "tls": "implicit",
                "auth": "required",
            },
        ],
    }
    users = [
        {
            "username": "mfp",
            "password_hash": hash_password(PASSWORD),
            "senders": ["scanner@contoso.com"],
            "send_as": "scans@contoso.com",
        }
    ]
    clients = [{"name": "nobody", "networks": ["192.0.2.0/24"], "senders": ["*"]}]
    return make_config(tmp_path, emulator, smtp=smtp, users=users, clients=clients)


async def test_printer_style_login_over_starttls(tmp_path: Path, emulator: Emulator, tls) -> None:
    files, context = tls
    config = auth_config(tmp_path, emulator, files)
    # 127.0.0.1 is in no client network: only the AUTH user may send.
    async with run_gateway(config) as gateway:
        port = gateway.gateway.listeners.address("lan")[1]
        smtp = await SmtpDialogue.open("127.0.0.1", port)
        ehlo = await smtp.command("EHLO printer")
        assert "AUTH" not in ehlo  # not before TLS
        # Unauthenticated, an unlisted address may send as nobody.
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("550 5.7.1")
        assert (await smtp.command("AUTH LOGIN")).startswith("538 5.7.11")
        await smtp.starttls(context)
        ehlo = await smtp.command("EHLO printer")
        assert "250-AUTH LOGIN PLAIN" in ehlo
        assert (await smtp.command("auth login")) == "334 " + b64("Username:")
        assert (await smtp.command(b64("mfp"))) == "334 " + b64("Password:")
        assert (await smtp.command(b64(PASSWORD))).startswith("235")
        refused = await smtp.command("MAIL FROM:<ceo@contoso.com>")
        assert refused.startswith("550 5.7.1")  # not one of the user's senders
        assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("250")
        assert (await smtp.command("DATA")).startswith("354")
        await smtp.send_raw(MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert (await smtp.reply()).startswith("250 2.0.0 queued as")
        await smtp.command("QUIT")
        await smtp.close()
        await gateway.delivered(1)
    [delivered] = emulator.delivered()
    assert delivered.mailbox == "scans@contoso.com"  # the user's send_as


async def test_implicit_tls_advertises_and_requires_auth(
    tmp_path: Path, emulator: Emulator, tls, logged: Logged
) -> None:
    files, context = tls
    async with run_gateway(auth_config(tmp_path, emulator, files)) as gateway:
        port = gateway.gateway.listeners.address("smtps")[1]

        def session() -> tuple[int, int]:
            with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=10) as client:
                client.ehlo()
                assert client.has_extn("auth")
                before = client.mail("scanner@contoso.com")[0]
                client.rset()
                client.login("mfp", PASSWORD)
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
                return before, 0

        before, _ = await asyncio.to_thread(session)
        await gateway.delivered(1)
    assert before == 530  # AUTH required before MAIL
    [refused] = logged("refused")
    assert (refused["command"], refused["reply"]) == ("MAIL", 530)
    assert "auth: required" in refused["reason"]
    # aiosmtpd's warning about the AUTH-without-STARTTLS setting the gateway chose is not news.
    assert logged("smtp_library_warning") == []


async def test_wrong_passwords_lock_the_address_out(
    tmp_path: Path, emulator: Emulator, tls
) -> None:
    files, context = tls
    async with run_gateway(auth_config(tmp_path, emulator, files)) as gateway:
        port = gateway.gateway.listeners.address("lan")[1]
        smtp = await SmtpDialogue.open("127.0.0.1", port)
        await smtp.command("EHLO app")
        await smtp.starttls(context)
        await smtp.command("EHLO app")
        answers = [await smtp.command("AUTH PLAIN " + b64(f"\0mfp\0wrong{n}")) for n in range(5)]
        assert all(answer.startswith("535 5.7.8") for answer in answers)
        locked = await smtp.command("AUTH PLAIN " + b64(f"\0mfp\0{PASSWORD}"))
        assert locked.startswith("454 4.7.0")
        await smtp.close()


async def test_cleartext_auth_only_where_allowed(tmp_path: Path, emulator: Emulator, tls) -> None:
    files, _context = tls
    config = auth_config(tmp_path, emulator, files, tls="none", allow_cleartext_auth=True)
    async with run_gateway(config) as gateway:
        port = gateway.gateway.listeners.address("lan")[1]

        def session() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.login("mfp", PASSWORD)
                client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)

        await asyncio.to_thread(session)
        await gateway.delivered(1)


async def test_parallel_attempts_cannot_outrun_the_lockout(
    tmp_path: Path, emulator: Emulator, tls
) -> None:
    """19 logins at once used to be all checked (the lockout was tested before any of them
    had failed); each attempt is now counted before its password is, so at most 5 are tried."""
    files, context = tls
    async with run_gateway(auth_config(tmp_path, emulator, files)) as gateway:
        port = gateway.gateway.listeners.address("lan")[1]
        sessions = []
        for _ in range(19):
            smtp = await SmtpDialogue.open("127.0.0.1", port)
            await smtp.command("EHLO app")
            await smtp.starttls(context)
            await smtp.command("EHLO app")
            sessions.append(smtp)
        answers = await asyncio.gather(
            *(
                smtp.command("AUTH PLAIN " + b64(f"\0mfp\0guess{n}"))
                for n, smtp in enumerate(sessions)
            )
        )
        for smtp in sessions:
            await smtp.close()
    checked = [answer for answer in answers if answer.startswith("535 5.7.8")]
    refused = [answer for answer in answers if answer.startswith("454 4.7.0")]
    assert len(checked) == 5 and len(refused) == 14, answers


async def test_passwords_never_reach_the_log(
    tmp_path: Path, emulator: Emulator, tls, logged
) -> None:
    """A password typed into the user name field, and the base64 password a device sends as a
    command after its AUTH was refused (538 before TLS), are not logged in any form."""
    files, context = tls
    secret = "hunter2-secret"
    async with run_gateway(auth_config(tmp_path, emulator, files)) as gateway:
        port = gateway.gateway.listeners.address("lan")[1]
        smtp = await SmtpDialogue.open("127.0.0.1", port)
        await smtp.command("EHLO printer")
        assert (await smtp.command("AUTH LOGIN")).startswith("538 5.7.11")
        await smtp.command(b64("mfp"))  # the device carries on with its dialogue
        await smtp.command(b64(secret))
        await smtp.starttls(context)
        await smtp.command("EHLO printer")
        assert (await smtp.command("AUTH PLAIN " + b64(f"\0{secret}\0{secret}"))).startswith("535")
        await smtp.close()
    lines = logged("smtp_unrecognised_command") + logged("auth_failed")
    assert len(lines) == 3
    text = repr(lines)
    for form in (secret, b64(secret), b64(secret).upper(), b64("mfp")):
        assert form not in text
    [failed] = logged("auth_failed")
    assert failed["user"] is None and failed["user_length"] == len(secret)
