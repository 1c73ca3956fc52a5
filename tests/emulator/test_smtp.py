"""The SMTP submission listener (like smtp.office365.com:587) driven by smtplib in a thread."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest

from gateway.emulator import Emulator, EmulatorApp, EmulatorUser, Faults
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import (
    CLIENT,
    GRAPH_SCOPE,
    MAILBOX,
    PUBLIC_CLIENT,
    SECRET,
    SMTP_SEND,
    TENANT,
    get_token,
    graph_client,
    sign_in,
)

T = TypeVar("T")
SMTP_APP = "55555555-4444-3333-2222-111111111111"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
ALICE = EmulatorUser("alice@contoso.com", TENANT)
BOB = EmulatorUser("bob@outlook.com", "consumers")
APPS = (
    EmulatorApp(TENANT, PUBLIC_CLIENT),
    EmulatorApp(TENANT, CLIENT, SECRET, roles=("Mail.Send",)),  # Graph only
    EmulatorApp(TENANT, SMTP_APP, SECRET, roles=("SMTP.SendAsApp",)),
)


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator(
        apps=APPS, users=(ALICE, BOB), smtp_port=0, device_code_pending_polls=0
    )


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(function, *args)


def connect(emulator: Emulator, *, tls: bool = True) -> smtplib.SMTP:
    host, port = emulator.smtp_address
    client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=10)
    client.ehlo()
    if tls:
        client.starttls(context=ssl.create_default_context(cafile=emulator.ca_file))
        client.ehlo()
    return client


def xoauth2(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def message(sender: str = "alice@contoso.com") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Alice <{sender}>"
    mail["To"] = "Rita <rita@example.com>"
    mail["Cc"] = "carl@example.com"
    mail["Subject"] = "Scan from the 2nd floor"
    mail.set_content("Your scan is attached.")
    mail.add_attachment(b"%PDF-1.7 scan", maintype="application", subtype="pdf", filename="a.pdf")
    return mail


async def smtp_token(
    emulator: Emulator, username: str = "alice@contoso.com", *, tenant: str = TENANT
) -> str:
    """A delegated access token for Exchange Online with SMTP.Send."""
    async with graph_client(emulator) as http:
        answer = await sign_in(http, emulator, username=username, scope=SMTP_SEND, tenant=tenant)
        token: str = answer["access_token"]
        return token


async def test_delegated_token_sends_and_the_message_is_recorded(emulator: Emulator) -> None:
    token = await smtp_token(emulator)

    def send() -> tuple[Any, ...]:
        with connect(emulator, tls=False) as client:
            before_tls = client.esmtp_features.copy()
            client.starttls(context=ssl.create_default_context(cafile=emulator.ca_file))
            client.ehlo()
            after_tls = client.esmtp_features.copy()
            auth = client.auth(
                "XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token)
            )
            refused = client.sendmail(
                "alice@contoso.com",
                ["rita@example.com", "carl@example.com", "hidden@example.com"],
                message().as_bytes(),
            )
            return before_tls, after_tls, auth, refused

    before_tls, after_tls, auth, refused = await in_thread(send)

    assert "starttls" in before_tls and "auth" not in before_tls
    assert after_tls["auth"].split() == ["XOAUTH2"] and "starttls" not in after_tls
    assert auth == (235, b"2.7.0 Authentication successful")
    assert refused == {}
    [delivered] = emulator.delivered()
    assert delivered.mode == "smtp"
    assert delivered.mailbox == "alice@contoso.com"
    assert delivered.recipients == {
        "to": ["rita@example.com"],
        "cc": ["carl@example.com"],
        "bcc": ["hidden@example.com"],
    }
    assert delivered.envelope is not None
    assert delivered.envelope.mail_from == "alice@contoso.com"
    assert delivered.envelope.rcpt_to == (
        "rita@example.com",
        "carl@example.com",
        "hidden@example.com",
    )
    assert delivered.subject == "Scan from the 2nd floor"
    assert [(a.name, a.content) for a in delivered.attachments] == [("a.pdf", b"%PDF-1.7 scan")]
    assert (delivered.client_id, delivered.tenant_id) == (PUBLIC_CLIENT, TENANT)
    assert b"Your scan is attached." in delivered.mime
    metadata = delivered.metadata()
    assert metadata["envelope"]["rcpt_to"][2] == "hidden@example.com"
    assert (emulator.stats.smtp_auth_successes, emulator.stats.smtp_messages) == (1, 1)


async def test_two_step_xoauth2_and_a_personal_account(emulator: Emulator) -> None:
    token = await smtp_token(emulator, "bob@outlook.com", tenant="consumers")

    def send() -> list[tuple[int, bytes]]:
        with connect(emulator) as client:
            answers = [client.docmd("AUTH", "XOAUTH2")]
            answers.append(client.docmd(b64(xoauth2("Bob@Outlook.com", token))))
            client.sendmail(
                "bob@outlook.com", ["rita@example.com"], message("bob@outlook.com").as_bytes()
            )
            return answers

    assert await in_thread(send) == [(334, b""), (235, b"2.7.0 Authentication successful")]
    assert [m.mailbox for m in emulator.delivered()] == ["bob@outlook.com"]


async def test_app_only_token_for_a_mailbox(emulator: Emulator) -> None:
    async with graph_client(emulator) as http:
        token = await get_token(http, emulator, client_id=SMTP_APP, scope=EXCHANGE_SCOPE)

    def send() -> tuple[int, bytes]:
        with connect(emulator) as client:
            answer = client.docmd("AUTH", "XOAUTH2 " + b64(xoauth2(MAILBOX, token)))
            client.sendmail(MAILBOX, ["rita@example.com"], message(MAILBOX).as_bytes())
            return answer

    assert (await in_thread(send))[0] == 235
    [delivered] = emulator.delivered()
    assert (delivered.mailbox, delivered.client_id) == (MAILBOX, SMTP_APP)
    assert delivered.recipients["to"] == ["rita@example.com"]


async def test_tokens_that_are_refused(emulator: Emulator, start_emulator: StartEmulator) -> None:
    alice = await smtp_token(emulator)
    other = await start_emulator(apps=APPS, users=(ALICE,), device_code_pending_polls=0)
    now = int(time.time())
    async with graph_client(emulator) as http:
        graph_token = (await sign_in(http, emulator))["access_token"]  # Mail.Send for Graph
        graph_app_only = await get_token(http, emulator, client_id=SMTP_APP, scope=GRAPH_SCOPE)
        no_role = await get_token(http, emulator, client_id=CLIENT, scope=EXCHANGE_SCOPE)
        user_read = (await sign_in(http, emulator, scope="https://outlook.office.com/User.Read"))[
            "access_token"
        ]
    async with graph_client(other) as http:
        foreign = await smtp_token(other)  # a token of another emulator run: wrong signature
    expired = emulator.state.issuer.issue(
        {
            "aud": "https://outlook.office.com",
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
            "scp": "SMTP.Send",
            "upn": "alice@contoso.com",
            "tid": TENANT,
            "appid": PUBLIC_CLIENT,
        }
    )
    header, claims, signature = alice.split(".")
    tampered = f"{header}.{claims}.{signature[:-4]}AAAA"
    attempts = {
        "wrong audience (Graph)": xoauth2("alice@contoso.com", graph_token),
        "app-only Graph token": xoauth2(MAILBOX, graph_app_only),
        "app without SMTP.SendAsApp": xoauth2(MAILBOX, no_role),
        "no SMTP.Send in scp": xoauth2("alice@contoso.com", user_read),
        "another user's token": xoauth2("bob@outlook.com", alice),
        "expired": xoauth2("alice@contoso.com", expired),
        "foreign signature": xoauth2("alice@contoso.com", foreign),
        "tampered signature": xoauth2("alice@contoso.com", tampered),
        "not a token": xoauth2("alice@contoso.com", "hello"),
        "no auth=": "user=alice@contoso.com\x01\x01",
    }

    def try_all() -> dict[str, tuple[int, bytes]]:
        with connect(emulator) as client:
            answers = {
                name: client.docmd("AUTH", "XOAUTH2 " + b64(text))
                for name, text in attempts.items()
            }
            answers["not base64"] = client.docmd("AUTH", "XOAUTH2 !!!")
            answers["PLAIN"] = client.docmd("AUTH", "PLAIN " + b64("\0alice\0pw"))
            answers["still not authenticated"] = client.docmd("MAIL", "FROM:<alice@contoso.com>")
            return answers

    answers = await in_thread(try_all)
    for name in attempts:
        code, text = answers[name]
        assert code == 535, name
        assert text.startswith(b"5.7.3 Authentication unsuccessful ["), name
    assert answers["not base64"] == (501, b"5.5.2 Cannot Decode response")
    assert answers["PLAIN"] == (504, b"5.7.4 Unrecognized authentication type")
    code, text = answers["still not authenticated"]
    assert (code, text[:50]) == (530, b"5.7.57 Client not authenticated to send mail. [smt")
    assert emulator.stats.smtp_auth_failures == len(attempts) + 1
    assert emulator.delivered() == []


async def test_auth_needs_starttls_first(emulator: Emulator) -> None:
    token = await smtp_token(emulator)

    def plain() -> list[tuple[int, bytes]]:
        with connect(emulator, tls=False) as client:
            return [
                client.docmd("AUTH", "XOAUTH2 " + b64(xoauth2("alice@contoso.com", token))),
                client.docmd("MAIL", "FROM:<alice@contoso.com>"),
            ]

    assert await in_thread(plain) == [
        (504, b"5.7.4 Unrecognized authentication type"),
        (530, b"5.7.0 Must issue a STARTTLS command first"),
    ]


async def test_mail_from_must_be_the_authenticated_user(emulator: Emulator) -> None:
    token = await smtp_token(emulator)

    def send() -> smtplib.SMTPDataError:
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail(
                    "ceo@contoso.com", ["rita@example.com"], message("ceo@contoso.com").as_bytes()
                )
            client.sendmail("Alice@Contoso.com", ["rita@example.com"], message().as_bytes())
            return refused.value

    refused = await in_thread(send)
    assert refused.smtp_code == 550
    assert refused.smtp_error.startswith(
        b"5.7.60 SMTP; Client does not have permissions to send as this sender ["
    )
    assert len(emulator.delivered()) == 1  # only the second transaction, same session


async def test_injected_replies_at_rcpt_and_after_data(emulator: Emulator) -> None:
    token = await smtp_token(emulator)
    admin = f"{emulator.base_url}/_emulator/faults"
    async with graph_client(emulator) as http:
        async with http.put(admin, json={"smtp_fail_reply": "250 fine"}) as response:
            assert response.status == 400
            assert "4xx or 5xx" in (await response.json())["error"]
        faults = {
            "smtp_fail_count": 1,
            "smtp_fail_at": "rcpt",
            "smtp_fail_reply": "451 4.3.0 Try later",
        }
        async with http.put(admin, json=faults) as response:
            assert (await response.json())["remaining"]["smtp_fail_count"] == 1

    def session() -> list[Any]:
        outcomes: list[Any] = []
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            for _ in range(2):
                try:
                    outcomes.append(
                        client.sendmail(
                            "alice@contoso.com",
                            ["a@example.com", "b@example.com"],
                            message().as_bytes(),
                        )
                    )
                except smtplib.SMTPRecipientsRefused as exc:
                    outcomes.append(exc.recipients)
                    client.rset()
        return outcomes

    first, second = await in_thread(session)
    assert first == {
        "a@example.com": (451, b"4.3.0 Try later"),
        "b@example.com": (451, b"4.3.0 Try later"),
    }
    assert second == {}
    assert len(emulator.delivered()) == 1

    emulator.set_faults(
        Faults(smtp_fail_count=2, smtp_fail_at="data", smtp_fail_reply="554 5.6.0 Corrupt message")
    )

    def data_failures() -> list[Any]:
        outcomes: list[Any] = []
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            for _ in range(3):
                try:
                    outcomes.append(
                        client.sendmail(
                            "alice@contoso.com", ["a@example.com"], message().as_bytes()
                        )
                    )
                except smtplib.SMTPDataError as exc:
                    outcomes.append((exc.smtp_code, exc.smtp_error))
        return outcomes

    assert await in_thread(data_failures) == [
        (554, b"5.6.0 Corrupt message"),
        (554, b"5.6.0 Corrupt message"),
        {},
    ]
    assert len(emulator.delivered()) == 2


async def test_chosen_recipients_are_refused_while_the_others_are_taken(
    emulator: Emulator,
) -> None:
    with pytest.raises(ValueError, match=r"smtp_recipient_replies\['b@example.com'\]"):
        Faults(smtp_recipient_replies={"b@example.com": "250 ok"})
    emulator.set_faults(
        Faults(
            smtp_recipient_replies={
                "B@example.com": "450 4.2.1 Mailbox busy",
                "c@example.com": "550 5.1.1 User unknown",
            }
        )
    )
    token = await smtp_token(emulator)

    def session() -> list[Any]:
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            recipients = ["a@example.com", "b@example.com", "c@example.com"]
            first = client.sendmail("alice@contoso.com", recipients, message().as_bytes())
            again = client.sendmail("alice@contoso.com", recipients, message().as_bytes())
            return [first, again]

    first, again = await in_thread(session)
    assert (
        first
        == again
        == {  # every time they are named
            "b@example.com": (450, b"4.2.1 Mailbox busy"),
            "c@example.com": (550, b"5.1.1 User unknown"),
        }
    )
    assert [mail.envelope.rcpt_to for mail in emulator.delivered() if mail.envelope] == [
        ("a@example.com",),
        ("a@example.com",),
    ]


async def test_injected_reply_at_mail_and_message_size(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(
        apps=APPS,
        users=(ALICE,),
        smtp_port=0,
        device_code_pending_polls=0,
        max_message_size=2000,
        faults=Faults(smtp_fail_count=1, smtp_fail_at="mail", smtp_fail_reply="421 4.3.2 Busy"),
    )
    token = await smtp_token(emulator)

    def session() -> list[Any]:
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            first = client.docmd("MAIL", "FROM:<alice@contoso.com>")
            declared = client.docmd("MAIL", "FROM:<alice@contoso.com> SIZE=5000")
            client.mail("alice@contoso.com")  # no SIZE: found out after the data
            client.rcpt("a@example.com")
            return [first, declared, client.data(b"x" * 3000)]

    assert await in_thread(session) == [
        (421, b"4.3.2 Busy"),
        (552, b"5.3.4 Message size exceeds fixed maximum message size"),
        (552, b"5.3.4 Message size exceeds fixed maximum message size"),
    ]
    assert emulator.delivered() == []


async def test_no_listener_unless_asked(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator()
    with pytest.raises(RuntimeError, match="smtp_port"):
        _ = emulator.smtp_address


async def test_stop_closes_open_sessions(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(smtp_port=0)
    host, port = emulator.smtp_address
    reader, writer = await asyncio.open_connection(host, port)
    greeting = await reader.readline()
    assert greeting.startswith(b"220 smtp.emulator.invalid Microsoft ESMTP MAIL Service ready")
    async with asyncio.timeout(10):
        await emulator.stop()
        assert await reader.read() == b""  # the server hung up
    writer.close()
    await writer.wait_closed()


async def test_commands_pipelined_after_starttls_are_refused(start_emulator: StartEmulator) -> None:
    # RFC 3207 and CVE-2024-34083: plaintext sent behind STARTTLS must not count as encrypted.
    emulator = await start_emulator(smtp_port=0)
    reader, writer = await asyncio.open_connection(*emulator.smtp_address)
    try:
        async with asyncio.timeout(10):
            await reader.readline()
            writer.write(b"EHLO client.test\r\n")
            while not (await reader.readline()).startswith(b"250 "):
                pass
            writer.write(b"STARTTLS\r\nAUTH XOAUTH2 dXNlcj0=\r\n")
            assert (await reader.readline()).startswith(b"554 5.5.1")
            assert await reader.read() == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_client_vanishing_mid_message_leaves_the_listener_working(
    emulator: Emulator,
) -> None:
    token = await smtp_token(emulator)
    host, port = emulator.smtp_address
    context = ssl.create_default_context(cafile=emulator.ca_file)
    reader, writer = await asyncio.open_connection(host, port)
    async with asyncio.timeout(10):
        await reader.readline()
        writer.write(b"EHLO client.test\r\nSTARTTLS\r\n")
        while not (await reader.readline()).startswith(b"220 2.0.0"):
            pass
        await writer.start_tls(context, server_hostname=host)
        sasl = b64(xoauth2("alice@contoso.com", token))
        writer.write(
            f"EHLO client.test\r\nAUTH XOAUTH2 {sasl}\r\nMAIL FROM:<alice@contoso.com>\r\n"
            "RCPT TO:<rita@example.com>\r\nDATA\r\nSubject: half\r\n\r\nhalf a message".encode()
        )
        while not (await reader.readline()).startswith(b"354 "):
            pass
        writer.transport.abort()

    def send() -> dict[str, tuple[int, bytes]]:
        with connect(emulator) as client:
            client.auth("XOAUTH2", lambda challenge=None: xoauth2("alice@contoso.com", token))
            return client.sendmail("alice@contoso.com", ["rita@example.com"], message().as_bytes())

    assert await in_thread(send) == {}
    assert [m.subject for m in emulator.delivered()] == ["Scan from the 2nd floor"]
