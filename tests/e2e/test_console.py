"""The operator console over HTTP, against a real gateway and the Graph emulator on loopback:
sign-in, sessions and cookies, CSRF, roles, the pages and the JSON API, and the queue actions
(the same `QueueAdmin` as `smtp-graph-gateway queue`)."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from openapi_spec_validator import validate

from gateway.app import Gateway
from gateway.emulator import Emulator, Faults
from gateway.errors import ConfigError
from tests.conftest import Logged
from tests.support.console import TOKENS, Browser, console_section
from tests.support.gateway import Running, make_config, run_gateway

BODY_MARKER = "confidential-body-text-7f3a"
ATTACHMENT = b"%PDF-1.4 scanned page " + b"x" * 1000
MESSAGE = (
    b"From: Scanner <scanner@contoso.com>\r\n"
    b"To: Alice <alice@contoso.com>\r\n"
    b"Subject: Scan from MFP-3F\r\n"
    b"Message-ID: <scan-0001@mfp.contoso.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain\r\n\r\n" + BODY_MARKER.encode() + b"\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="scan-0001.pdf"\r\n\r\n'
    + ATTACHMENT
    + b"\r\n--b1--\r\n"
)
# The console uses the queue interface only: the file spool and a cluster's database alike.
BOTH_BACKENDS = pytest.mark.usefixtures("queue_backend")
PAGES = [
    "/",
    "/queue",
    "/devices",
    "/test-message",
    "/messages/0000000000000000000AA",
    "/messages/0000000000000000000AA/raw",
]
API = [
    "/api/openapi.json",
    "/api/v1/whoami",
    "/api/v1/overview",
    "/api/v1/devices",
    "/api/v1/messages",
    "/api/v1/messages/0000000000000000000AA",
    "/api/v1/messages/0000000000000000000AA/raw",
]


@dataclass
class Console:
    gateway: Running
    base: str

    def browser(self) -> Browser:
        return Browser(self.base)

    async def send(self, sender: str = "scanner@contoso.com", to: str = "alice@contoso.com") -> str:
        """One message through SMTP; its queue ID."""
        host, port = self.gateway.smtp_address

        def transaction() -> str:
            with smtplib.SMTP(host, port, timeout=30) as client:
                client.ehlo()
                client.mail(sender)
                client.rcpt(to)
                code, text = client.data(MESSAGE)
            assert code == 250, text
            return text.split()[-1].decode()

        return await asyncio.to_thread(transaction)


@pytest.fixture
async def console(tmp_path: Path, emulator: Emulator) -> AsyncIterator[Console]:
    """A gateway with the console on; Graph is down, so mail stays queued (retry in 1h)."""
    emulator.set_faults(Faults(outage_seconds=3600))
    config = make_config(
        tmp_path,
        emulator,
        console=console_section(),
        delivery={"retry_initial": "1h", "retry_max": "2h"},
    )
    async with run_gateway(config) as running:
        assert running.gateway.console is not None
        yield Console(running, f"http://127.0.0.1:{running.gateway.console.port}")


async def queued(console: Console) -> str:
    """A message that was tried once and waits in the queue."""
    queue_id = await console.send()
    await console.gateway.next_event(accept=lambda e: e.queue_id == queue_id)
    return queue_id


async def test_nothing_is_served_before_sign_in(console: Console) -> None:
    browser = console.browser()
    try:
        for path in PAGES:
            status, _, response = await browser.get(path)
            assert status == 303, path
            assert response.headers["Location"].startswith("/signin?next=")
        for path in API:
            status, text, response = await browser.get(path)
            assert status == 401, path
            assert "sign in" in json.loads(text)["error"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        posted = ("/queue/confirm", "/queue/act", "/signout", "/test-message")
        public = {"/signin", "/console.css", "/signin/once"}
        # Every route of the console is in one of these lists (a new one must be added).
        assert console.gateway.gateway.console is not None
        routes = {
            resource.canonical.replace("{queue_id}", "0000000000000000000AA")
            for resource in console.gateway.gateway.console.application().router.resources()
        }
        tried = {*PAGES, *API, *posted, "/api/v1/actions", "/api/v1/test-message"}
        assert routes - public == tried
        for path in posted:
            status, _, response = await browser.post(path, {"operation": "delete"})
            assert (status, response.headers["Location"]) == (303, "/signin"), path
        for path in ("/api/v1/actions", "/api/v1/test-message"):
            status, _, _ = await browser.post(path, json={"operation": "delete"})
            assert status == 401, path
        # A bearer token that is not configured opens nothing either.
        status, _, _ = await browser.get(
            "/api/v1/overview", headers={"Authorization": "Bearer not-a-configured-token-at-all"}
        )
        assert status == 401
        status, page, response = await browser.get("/signin")
        assert status == 200 and 'name="password"' in page
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    finally:
        await browser.close()


async def test_session_cookie_flags_and_a_new_id_at_every_sign_in(
    console: Console, logged: Logged
) -> None:
    browser = console.browser()
    try:
        # A session ID planted before sign-in (fixation) is never adopted.
        browser.plant("sgg-session", "planted-by-an-attacker")
        status, page, _ = await browser.get("/signin")
        form = {
            "csrf": page.split('name="csrf" value="')[1].split('"')[0],
            "username": "olga",
            "password": "olga-operator-pass",
            "next": "/queue",
        }
        status, _, response = await browser.post("/signin", form)
        assert (status, response.headers["Location"]) == (303, "/queue")
        [cookie] = [c for c in response.headers.getall("Set-Cookie") if "sgg-session=" in c]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
        assert "secure" not in flags  # plain HTTP on loopback; TLS: see the next test
        first = browser.cookie("sgg-session")
        assert first and first != "planted-by-an-attacker" and len(first) >= 40
        assert (await browser.get("/"))[0] == 200
        # Signing in again gives another ID, and the old one no longer opens anything.
        assert await browser.sign_in("olga") == 303
        second = browser.cookie("sgg-session")
        assert second != first
        old = console.browser()
        old.plant("sgg-session", first)
        assert (await old.get("/"))[0] == 303
        await old.close()
        assert [e["user"] for e in logged("console_signin")] == ["olga", "olga"]
        # Sign-out ends the session on the server, not only in the browser.
        status, _, _ = await browser.post("/signout", {"csrf": browser.csrf})
        assert status == 303
        again = console.browser()
        again.plant("sgg-session", second)
        assert (await again.get("/"))[0] == 303
        await again.close()
        assert logged("console_signout")[0]["user"] == "olga"
    finally:
        await browser.close()


async def test_under_tls_cookies_are_secure_and_host_bound(
    tmp_path: Path, emulator: Emulator
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    config = make_config(
        tmp_path,
        emulator,
        smtp={
            "hostname": "gateway.test",
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
            "tls": {"cert_file": str(cert_file), "key_file": str(key_file)},
        },
        console=console_section(tls=True),
    )
    async with run_gateway(config) as running:
        assert running.gateway.console is not None
        trust = ssl.create_default_context()
        authority.configure_trust(trust)
        browser = Browser(f"https://127.0.0.1:{running.gateway.console.port}")
        try:
            status, page, _ = await browser.get("/signin", ssl=trust)
            form = {
                "csrf": page.split('name="csrf" value="')[1].split('"')[0],
                "username": "vera",
                "password": "vera-viewer-pass",
            }
            status, _, response = await browser.post("/signin", form, ssl=trust)
            assert status == 303
            [cookie] = [c for c in response.headers.getall("Set-Cookie") if "sgg-session=" in c]
            assert cookie.startswith("__Host-sgg-session=")
            flags = [part.strip().lower() for part in cookie.split(";")]
            assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        finally:
            await browser.close()


async def test_wrong_passwords_lock_the_address_out(console: Console, logged: Logged) -> None:
    browser = console.browser()
    try:
        for _ in range(5):
            assert await browser.sign_in("olga", "wrong-password") == 401
        assert await browser.sign_in("nobody", "whatever") == 401
        # Locked: even the right password is refused for now.
        assert await browser.sign_in("olga") == 401
        failures = logged("console_signin_failed")
        assert len(failures) == 7
        assert failures[-1]["reason"].startswith("too many failed sign-ins")
        assert all(entry["client"] == "127.0.0.1" for entry in failures)
        assert not logged("console_signin")
    finally:
        await browser.close()


@BOTH_BACKENDS
async def test_operator_holds_and_releases_with_confirmation(
    console: Console, logged: Logged
) -> None:
    queue_id = await queued(console)
    browser = console.browser()
    try:
        assert await browser.sign_in("olga") == 303
        status, page, _ = await browser.get("/queue?state=queued")
        assert status == 200 and queue_id in page
        # The action form goes to a confirmation page first; nothing changes yet.
        form = {"csrf": browser.csrf, "operation": "hold", "id": queue_id, "back": "/queue"}
        status, page, _ = await browser.post("/queue/confirm", form)
        assert status == 200 and "Yes, hold" in page and queue_id in page
        assert await console.gateway.gateway.queue.state_of(queue_id) == "queue"
        status, _, response = await browser.post("/queue/act", form)
        assert (status, response.headers["Location"]) == (303, "/queue")
        assert await console.gateway.gateway.queue.state_of(queue_id) == "hold"
        _, page, _ = await browser.get("/queue")
        assert "hold: 1 done" in page
        _, page, _ = await browser.get(f"/messages/{queue_id}")
        assert "held by an administrator" in page
        # Holding it again is refused with the queue command's own words.
        await browser.post("/queue/act", form)
        _, page, _ = await browser.get("/queue")
        assert f"{queue_id}: {queue_id} is held, not queued" in page
        release = {**form, "operation": "release"}
        assert (await browser.post("/queue/act", release))[0] == 303
        assert await console.gateway.gateway.queue.state_of(queue_id) in ("queue", "active")
        actions = logged("console_action")
        assert [(a["user"], a["action"], a["done"]) for a in actions] == [
            ("olga", "hold", [queue_id]),
            ("olga", "hold", []),
            ("olga", "release", [queue_id]),
        ]
    finally:
        await browser.close()


async def test_a_viewer_can_read_but_change_nothing(console: Console, logged: Logged) -> None:
    queue_id = await queued(console)
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303
        status, page, _ = await browser.get("/queue")
        assert status == 200 and queue_id in page
        assert 'type="checkbox"' not in page and "/queue/confirm" not in page
        status, page, _ = await browser.get(f"/messages/{queue_id}")
        assert status == 200 and "Scan from MFP-3F" in page and "/raw" not in page
        for operation in ("retry", "hold", "delete"):
            form = {"csrf": browser.csrf, "operation": operation, "id": queue_id}
            assert (await browser.post("/queue/confirm", form))[0] == 403
            assert (await browser.post("/queue/act", form))[0] == 403
            status, _, _ = await browser.post(
                "/api/v1/actions",
                json={"operation": operation, "ids": [queue_id]},
                headers={"X-CSRF-Token": browser.csrf},
            )
            assert status == 403
        assert (await browser.get(f"/messages/{queue_id}/raw"))[0] == 403
        assert (await browser.get(f"/api/v1/messages/{queue_id}/raw"))[0] == 403
        # A viewer's token is refused the same way.
        status, _, _ = await browser.post(
            "/api/v1/actions",
            json={"operation": "delete", "ids": [queue_id]},
            headers={"Authorization": f"Bearer {TOKENS['nagios']}"},
        )
        assert status == 403
        assert await console.gateway.gateway.queue.state_of(queue_id) == "queue"
        assert not logged("console_action") and not logged("console_download")
        assert {e["user"] for e in logged("console_refused")} == {"vera", "token:nagios"}
    finally:
        await browser.close()


async def test_changes_without_the_csrf_token_are_refused(console: Console, logged: Logged) -> None:
    queue_id = await queued(console)
    browser = console.browser()
    try:
        assert await browser.sign_in("olga") == 303
        form = {"operation": "delete", "id": queue_id}
        assert (await browser.post("/queue/act", form))[0] == 403
        assert (await browser.post("/queue/act", {**form, "csrf": "forged"}))[0] == 403
        assert (await browser.post("/signout", {}))[0] == 403
        body = {"operation": "delete", "ids": [queue_id]}
        status, text, _ = await browser.post("/api/v1/actions", json=body)
        assert status == 403 and "X-CSRF-Token" in json.loads(text)["error"]
        assert await console.gateway.gateway.queue.state_of(queue_id) == "queue"
        assert len(logged("console_csrf_refused")) == 4
        # With the token it works (the session's, from whoami, for scripts on a session).
        _, text, _ = await browser.get("/api/v1/whoami")
        token = json.loads(text)["csrf_token"]
        status, text, _ = await browser.post(
            "/api/v1/actions", json=body, headers={"X-CSRF-Token": token}
        )
        assert status == 200 and json.loads(text)["done"] == [queue_id]
        assert await console.gateway.gateway.queue.state_of(queue_id) is None
    finally:
        await browser.close()


@BOTH_BACKENDS
async def test_message_page_shows_headers_attachments_attempts_never_the_body(
    console: Console, logged: Logged
) -> None:
    queue_id = await queued(console)
    browser = console.browser()
    try:
        assert await browser.sign_in("olga") == 303
        status, page, _ = await browser.get(f"/messages/{queue_id}")
        assert status == 200
        for shown in (
            "scanner@contoso.com",
            "alice@contoso.com",
            "Scan from MFP-3F",
            "&lt;scan-0001@mfp.contoso.com&gt;",
            "scan-0001.pdf",
            "application/pdf",
            f"{len(ATTACHMENT)} B",  # the attachment's size
            "deferred",
            "contoso",
        ):
            assert shown in page, shown
        _, text, _ = await browser.get(f"/api/v1/messages/{queue_id}")
        detail = json.loads(text)
        [attempt] = detail["attempts"]
        assert attempt["result"] == "deferred"
        assert detail["summary"]["attachments"] == [
            {"name": "scan-0001.pdf", "type": "application/pdf", "size": len(ATTACHMENT)}
        ]
        # No page and no API answer carries the body.
        for path in ("/", "/queue", f"/messages/{queue_id}"):
            assert BODY_MARKER not in (await browser.get(path))[1], path
        for path in ("/api/v1/overview", "/api/v1/messages", f"/api/v1/messages/{queue_id}"):
            assert BODY_MARKER not in (await browser.get(path))[1], path
        # Only the explicit download does, for an operator, and it is logged.
        status, raw, response = await browser.get(f"/messages/{queue_id}/raw")
        assert status == 200 and BODY_MARKER in raw
        assert response.headers["Content-Disposition"] == f'attachment; filename="{queue_id}.eml"'
        assert response.headers["Content-Type"] == "message/rfc822"
        assert int(response.headers["Content-Length"]) == len(MESSAGE)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        [download] = logged("console_download")
        assert (download["user"], download["queue_id"]) == ("olga", queue_id)
    finally:
        await browser.close()


async def test_held_message_shows_the_reason_and_the_graph_answer(
    console: Console, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(mailbox_errors={"denied@contoso.com": "ErrorSendAsDenied"}))
    queue_id = await console.send(sender="denied@contoso.com")
    event = await console.gateway.next_event(accept=lambda e: e.queue_id == queue_id)
    assert event.result == "held"
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303
        _, page, _ = await browser.get(f"/messages/{queue_id}")
        assert 'id="hold-reason"' in page and "Send As" in page
        assert "ErrorSendAsDenied" in page and "403" in page
        _, page, _ = await browser.get("/")
        assert "ErrorSendAsDenied" in page  # the tenant's last Graph error
    finally:
        await browser.close()


@BOTH_BACKENDS
async def test_queue_filters_and_paging(console: Console) -> None:
    first = await queued(console)
    second = await console.send(sender="printer@sales.contoso.com", to="bob@contoso.com")
    await console.gateway.next_event(accept=lambda e: e.queue_id == second)
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303

        async def listed(query: str) -> list[str]:
            status, text, _ = await browser.get(f"/api/v1/messages?{query}")
            assert status == 200, text
            return [m["queue_id"] for m in json.loads(text)["messages"]]

        assert await listed("") == [second, first]  # newest first
        assert await listed("sender=printer@") == [second]
        assert await listed("recipient=alice") == [first]
        assert await listed("tenant=contoso") == [second, first]
        assert await listed("tenant=fabrikam") == []
        assert await listed("device=127.0.0.1") == [second, first]  # the client address
        assert await listed("device=10.9.9.9") == []
        assert await listed("device=127.0.0.1&sender=printer") == [second]
        assert await listed("state=held") == []
        assert await listed("state=queued&newer_than=1h") == [second, first]
        assert await listed("older_than=1h") == []
        assert await listed("per_page=1") == [second]
        assert await listed("per_page=1&page=2") == [first]
        status, text, _ = await browser.get("/api/v1/messages?older_than=soon")
        assert status == 400 and json.loads(text)["error"].startswith("older_than:")
        status, page, _ = await browser.get("/queue?sender=printer%40&per_page=1")
        assert status == 200 and second in page and first not in page
        assert "1 message, page 1 of 1" in page
        status, page, _ = await browser.get("/queue?state=lost")
        assert status == 400 and "no state" in page
    finally:
        await browser.close()


@BOTH_BACKENDS
async def test_overview_counts_and_readiness(console: Console) -> None:
    await queued(console)
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303
        status, page, _ = await browser.get("/")
        assert status == 200 and 'id="count-queued"><b>1</b>' in page
        assert '<meta http-equiv="refresh" content="10; url=/?auto=1">' in page
        assert 'id="chart-hour"' in page and 'id="chart-day"' in page
        assert "deferred 1" in page  # the one attempt so far, drawn in both charts
        _, text, _ = await browser.get("/api/v1/overview")
        overview = json.loads(text)
        assert overview["queue"]["states"]["queued"] == 1
        assert overview["queue"]["oldest_age"] >= 0
        [tenant] = overview["tenants"]
        assert tenant["name"] == "contoso" and tenant["credential"] == "client secret"
        assert tenant["last_error"]["status"] == 503
        assert overview["checks"]["listeners"] is True
    finally:
        await browser.close()


async def test_bearer_tokens_for_scripts(console: Console, logged: Logged) -> None:
    queue_id = await queued(console)
    browser = console.browser()
    operator = {"Authorization": f"Bearer {TOKENS['ops-script']}"}
    try:
        status, text, _ = await browser.get("/api/v1/whoami", headers=operator)
        assert (status, json.loads(text)) == (200, {"name": "ops-script", "role": "operator"})
        # No cookie, so no CSRF token is needed, and no page opens with a token.
        status, text, _ = await browser.post(
            "/api/v1/actions", json={"operation": "hold", "ids": [queue_id]}, headers=operator
        )
        assert (status, json.loads(text)["done"]) == (200, [queue_id])
        assert (await browser.get("/queue", headers=operator))[0] == 303
        status, text, _ = await browser.post(
            "/api/v1/actions", json={"operation": "purge", "ids": [queue_id]}, headers=operator
        )
        assert status == 400 and "no operation" in json.loads(text)["error"]
        status, raw, _ = await browser.get(f"/api/v1/messages/{queue_id}/raw", headers=operator)
        assert status == 200 and raw.encode() == MESSAGE
        assert logged("console_action")[0]["user"] == "token:ops-script"
        assert logged("console_download")[0]["user"] == "token:ops-script"
    finally:
        await browser.close()


async def test_openapi_document_is_valid_and_describes_every_route(console: Console) -> None:
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303
        status, text, _ = await browser.get("/api/openapi.json")
        assert status == 200
        document = json.loads(text)
        validate(document)
        routes = {
            resource.canonical
            for app in [console.gateway.gateway.console.application()]  # type: ignore[union-attr]
            for resource in app.router.resources()
            if resource.canonical.startswith("/api/v1/")
        }
        assert routes == set(document["paths"])
    finally:
        await browser.close()


async def test_send_a_test_message_and_watch_it_delivered(
    console: Console, emulator: Emulator, logged: Logged
) -> None:
    emulator.set_faults(Faults())  # Graph answers again
    browser = console.browser()
    try:
        assert await browser.sign_in("vera") == 303
        assert (await browser.get("/test-message"))[0] == 403
        form = {"csrf": browser.csrf, "sender": "scanner@contoso.com", "recipient": "a@b.example"}
        assert (await browser.post("/test-message", form))[0] == 403
        assert await browser.sign_in("olga") == 303
        status, page, _ = await browser.get("/test-message")
        assert status == 200 and 'id="test-sender"' in page
        refused = {**form, "csrf": browser.csrf, "sender": "scanner@nowhere.example"}
        status, page, _ = await browser.post("/test-message", refused)
        assert status == 400 and "no tenant sends for scanner@nowhere.example" in page
        status, _, response = await browser.post("/test-message", {**form, "csrf": browser.csrf})
        assert status == 303
        location = response.headers["Location"]
        queue_id = location.rsplit("/", 1)[1]
        event = await console.gateway.next_event(accept=lambda e: e.queue_id == queue_id)
        assert event.result == "delivered"
        status, page, _ = await browser.get(location)
        assert status == 200 and 'id="delivered"' in page and "contoso" in page
        [line] = logged("console_test_message")
        assert (line["user"], line["sender"], line["tenant"]) == (
            "olga",
            "scanner@contoso.com",
            "contoso",
        )
        # The API does the same for scripts.
        status, text, _ = await browser.post(
            "/api/v1/test-message",
            json={"sender": "scanner@contoso.com", "recipient": "a@b.example"},
            headers={"Authorization": f"Bearer {TOKENS['ops-script']}"},
        )
        assert status == 200 and json.loads(text)["queue_id"]
    finally:
        await browser.close()


async def test_a_console_address_in_use_stops_the_start_naming_console_listen(
    tmp_path: Path, emulator: Emulator
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(
            tmp_path, emulator, console=console_section(listen=f"127.0.0.1:{port}")
        )
        gateway = Gateway(config)
        with pytest.raises(ConfigError) as caught:
            await gateway.startup()
        issue = str(caught.value.issues[0])
        assert issue.startswith(f"console.listen: cannot listen on 127.0.0.1:{port}")
        assert gateway.listeners is None or not gateway.listeners.bound


async def test_a_one_time_sign_in_link_works_once(console: Console, logged: Logged) -> None:
    assert console.gateway.gateway.console is not None
    link = console.gateway.gateway.console.one_time_link("admin", "operator")
    path = link.removeprefix(console.base)
    assert path.startswith("/signin/once?token=")
    browser, other = console.browser(), console.browser()
    try:
        status, _, response = await browser.get(path)
        assert (status, response.headers["Location"]) == (303, "/")
        status, page, _ = await browser.get("/")
        assert status == 200 and "admin (operator)" in page
        status, page, _ = await other.get(path)  # spent
        assert status == 401 and "used already" in page
        assert (await other.get("/"))[0] == 303
        assert (await other.get("/signin/once?token=guess"))[0] == 401
        assert [e["via"] for e in logged("console_signin")] == ["one-time link"]
    finally:
        await browser.close()
        await other.close()
