"""Connection slots cannot be held by a few hosts: an idle deadline NOOP cannot extend, command
limits per connection, a short deadline to log in, and slots kept for configured clients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.emulator import Emulator
from gateway.passwords import hash_password
from tests.conftest import Logged
from tests.e2e.test_auth import PASSWORD, b64
from tests.e2e.test_pipeline import MESSAGE
from tests.support.gateway import make_config, run_gateway
from tests.support.process import SmtpDialogue

PRINTERS = [{"name": "printers", "networks": ["127.0.0.1"], "senders": ["scanner@contoso.com"]}]


async def closed(smtp: SmtpDialogue, timeout: float = 10) -> str:
    """The last reply before the server closed the connection (waits for the close)."""
    last = "<closed>"
    async with asyncio.timeout(timeout):
        while True:
            reply = await smtp.reply(timeout)
            if reply == "<closed>":
                return last
            last = reply


async def test_noop_cannot_keep_an_idle_connection_open(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    """200 sockets kept alive with NOOP used to hold every slot for command_timeout (5 min)."""
    config = make_config(
        tmp_path,
        emulator,
        clients=PRINTERS,
        smtp={
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
            "idle_timeout": "1s",
            "max_junk_commands": 1000,
        },
    )
    async with run_gateway(config) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO device")
        started = time.monotonic()
        answers = []
        while time.monotonic() - started < 3:
            answer = await smtp.command("NOOP")
            answers.append(answer)
            if not answer.startswith("250"):
                break
            await asyncio.sleep(0.1)
        await smtp.close()
    assert answers[-1].startswith("421 4.4.2"), answers[-3:]
    assert 0.9 < time.monotonic() - started < 2.5
    [line] = [line for line in logged("refused") if line["command"] == "idle"]
    assert "smtp.idle_timeout" in line["reason"]


async def test_mail_and_rset_cycles_do_not_extend_the_deadline(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = make_config(
        tmp_path,
        emulator,
        clients=PRINTERS,
        smtp={
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
            "idle_timeout": "1s",
        },
    )
    async with run_gateway(config) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO device")
        started = time.monotonic()
        answer = ""
        while time.monotonic() - started < 4:
            answer = await smtp.command("MAIL FROM:<scanner@contoso.com>")
            if not answer.startswith("250"):
                break
            await asyncio.sleep(0.3)
            answer = await smtp.command("RSET")
            if not answer.startswith("250"):
                break
        last = answer if answer.startswith("421") else await closed(smtp)
        await smtp.close()
    assert "421 4.4.2" in last
    assert time.monotonic() - started < 2.5


async def test_a_transaction_under_way_is_never_cut_and_a_message_renews_the_deadline(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = make_config(
        tmp_path,
        emulator,
        clients=PRINTERS,
        smtp={
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
            "idle_timeout": "1s",
        },
    )
    async with run_gateway(config) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO scanner")
        for _ in range(2):  # each message gives a new second; the slow ones are not cut
            assert (await smtp.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
            await asyncio.sleep(0.7)
            assert (await smtp.command("RCPT TO:<alice@contoso.com>")).startswith("250")
            await asyncio.sleep(0.7)  # 1.4 s into the transaction: past the deadline
            assert (await smtp.command("DATA")).startswith("354")
            await smtp.send_raw(MESSAGE + b".\r\n")
            assert (await smtp.reply()).startswith("250 2.0.0")
        assert (await smtp.command("QUIT")).startswith("221")
        await smtp.close()
        await gateway.delivered(2)


async def test_junk_commands_are_limited_per_connection(tmp_path: Path, emulator: Emulator) -> None:
    async with run_gateway(make_config(tmp_path, emulator, clients=PRINTERS)) as gateway:
        smtp = await SmtpDialogue.open(*gateway.smtp_address)
        await smtp.command("EHLO device")
        answers = [await smtp.command("NOOP") for _ in range(21)]
        await smtp.close()
    assert all(answer.startswith("250") for answer in answers[:20])
    assert answers[20].startswith("421 4.7.0 NOOP sent too many times")


def auth_listener_config(tmp_path: Path, emulator: Emulator, **smtp: object):
    """An AUTH listener; 127.0.0.2 is a configured client, 127.0.0.1 may only log in."""
    users = [
        {
            "username": "mfp",
            "password_hash": hash_password(PASSWORD),
            "senders": ["scanner@contoso.com"],
        }
    ]
    clients = [{"name": "printers", "networks": ["127.0.0.2"], "senders": ["scanner@contoso.com"]}]
    listeners = [
        {
            "name": "lan",
            "address": "127.0.0.1",
            "port": 0,
            "auth": "optional",
            "allow_cleartext_auth": True,
        }
    ]
    return make_config(
        tmp_path, emulator, clients=clients, users=users, smtp={"listeners": listeners, **smtp}
    )


async def test_hosts_outside_clients_cannot_take_the_reserved_slots(
    tmp_path: Path, emulator: Emulator, logged: Logged
) -> None:
    config = auth_listener_config(
        tmp_path, emulator, max_connections=10, reserved_connections=4, max_connections_per_ip=10
    )
    async with run_gateway(config) as gateway:
        host, port = gateway.smtp_address
        strangers = [await SmtpDialogue.open(host, port) for _ in range(6)]
        reader, writer = await asyncio.open_connection(host, port)
        seventh = (await reader.readline()).decode()
        writer.close()
        # The configured printers still get in, up to the total.
        printers = [await SmtpDialogue.open(host, port, source="127.0.0.2") for _ in range(4)]
        await printers[0].command("EHLO printer")
        mail = await printers[0].command("MAIL FROM:<scanner@contoso.com>")
        for smtp in strangers + printers:
            await smtp.close()
    assert mail.startswith("250"), mail
    assert seventh.startswith("421 4.7.0"), seventh
    assert any("reserved_connections" in line["reason"] for line in logged("connection_refused"))


async def test_hosts_that_must_log_in_have_a_short_deadline(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = auth_listener_config(tmp_path, emulator, login_timeout="1s", idle_timeout="30s")
    async with run_gateway(config) as gateway:
        host, port = gateway.smtp_address
        lingering = await SmtpDialogue.open(host, port)
        await lingering.command("EHLO stranger")
        started = time.monotonic()
        assert "421 4.4.2" in await closed(lingering)
        assert time.monotonic() - started < 2.5
        await lingering.close()
        # One that logs in gets the usual idle period and can send.
        device = await SmtpDialogue.open(host, port)
        await device.command("EHLO mfp")
        assert (await device.command("AUTH PLAIN " + b64(f"\0mfp\0{PASSWORD}"))).startswith("235")
        await asyncio.sleep(1.3)
        assert (await device.command("MAIL FROM:<scanner@contoso.com>")).startswith("250")
        await device.close()
