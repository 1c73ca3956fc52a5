"""The message corpus end to end: every scan-to-email and application message in
tests/data/corpus goes smtplib → gateway → Graph emulator, once through a gateway in MIME mode
and once through one in JSON mode, and arrives as its YAML says.

Per message and mode: each envelope recipient gets it exactly once and no other address does
(a header To/Cc outside the envelope must not receive it); the subject and the body (type and
text) are right; every attachment arrives byte for byte with its name, media type and
inline/Content-ID, and nothing else is attached; signed mail is sent as MIME in every mode and
its S/MIME signature still verifies.

Conversion rules the JSON expectations follow: the body is the HTML alternative when there is
one, else the text; a part with a Content-ID that is not `Content-Disposition: attachment` is an
inline attachment (`isInline`, `contentId` without <>); every other non-body part is a plain
attachment; an attached message is a `message/rfc822` attachment named `*.eml` holding the
message's own bytes; a text/calendar part is a `text/calendar` attachment; filenames are
decoded from RFC 2231 and RFC 2047.

In MIME mode the emulator lists attachments the way a mail client shows them (parts with a
filename, non-text parts with a Content-ID, attached messages), so there: inline is judged by
the Content-ID (its `is_inline` means `Content-Disposition: inline`); an unnamed text part (a
calendar alternative) is no attachment, so it is looked up in the delivered MIME instead; and
the emulator re-serialises an attached message, so its bytes are compared in the delivered MIME.

Regenerate the corpus with tests/data/corpus/make_corpus.py.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, load_config
from gateway.emulator import Emulator
from gateway.emulator.messages import DeliveredAttachment
from gateway.emulator.outbox import DeliveredMessage
from tests.support.corpus import (
    CorpusMessage,
    ExpectedAttachment,
    load_corpus,
    raw_leaves,
    smime_verify,
)
from tests.support.gateway import Running, config_document, run_gateway, write_config

CORPUS = load_corpus()
MAX_MESSAGE = 2_500_000
MAX_CORPUS = 3_000_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# -- the corpus itself ------------------------------------------------------------------------


def test_corpus_files_agree_with_their_expectations() -> None:
    """Each YAML matches its .eml (checked without the gateway), so a failure below is about
    delivery, not about a wrong expectation."""
    assert len(CORPUS) >= 20
    assert sum(len(m.raw) for m in CORPUS) < MAX_CORPUS
    assert len({m.subject for m in CORPUS}) == len(CORPUS)
    for message in CORPUS:
        where = message.name
        assert len(message.raw) < MAX_MESSAGE, where
        assert message.sender.endswith("@contoso.com"), where
        assert message.recipients, where
        assert message.body_type in ("text", "html"), where
        parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
        assert str(parsed["Subject"]) == message.subject, where
        leaves = raw_leaves(message.raw)
        for expected in message.attachments:
            assert (expected.name is None) or (expected.name_suffix is None), where
            assert expected.inline == (expected.content_id is not None), where
            assert any(
                sha256(leaf.content) == expected.sha256
                and len(leaf.content) == expected.size
                and leaf.content_type == expected.content_type
                and (expected.name is None or leaf.filename == expected.name)
                for leaf in leaves
            ), f"{where}: no part holds {expected}"
        if message.signed:
            assert smime_verify(message.raw) is None, where


# -- end to end -------------------------------------------------------------------------------


def corpus_config(tmp_path: Path, emulator: Emulator, mode: str) -> Config:
    document = config_document(tmp_path, emulator)
    document["tenants"][0]["mode"] = mode
    # No retries during the test: a deferral is reported as a failure at once, and a late retry
    # cannot land among the next message's deliveries. No pacing either: nine scans come from
    # scanner@contoso.com, and Exchange's 30 a minute would add 2 s between them.
    document["delivery"].update(retry_initial="1h", retry_max="1h", mailbox_rate=0)
    return load_config(write_config(tmp_path, document))


async def submit(gateway: Running, message: CorpusMessage) -> tuple[str, str]:
    """Send over SMTP: (queue ID, "") when the gateway took it, else ("", what it answered)."""

    def dialogue(client: smtplib.SMTP) -> tuple[str, str]:
        try:
            client.ehlo("corpus.test")
            answers = [("MAIL FROM", client.mail(message.sender))]
            answers += [(f"RCPT TO {r}", client.rcpt(r)) for r in message.recipients]
            refused = [
                f"{step}: {code} {text.decode()}" for step, (code, text) in answers if code != 250
            ]
            if refused:
                return "", "; ".join(refused)
            code, text = client.data(message.raw)
        except smtplib.SMTPException as error:
            return "", f"SMTP error: {error}"
        if code != 250:
            return "", f"DATA: {code} {text.decode()}"
        return text.decode().split()[-1], ""

    result: tuple[str, str] = await gateway.session(dialogue)
    return result


async def send_one(
    gateway: Running, emulator: Emulator, message: CorpusMessage
) -> tuple[list[DeliveredMessage], str]:
    """Send one message and wait for its outcome: (what the emulator received, problem)."""
    before = len(emulator.delivered())
    queue_id, problem = await submit(gateway, message)
    if problem:
        return [], f"not accepted: {problem}"
    try:
        event = await gateway.next_event(timeout=15.0, accept=lambda e: e.queue_id == queue_id)
    except TimeoutError:
        return emulator.delivered()[before:], "no delivery outcome within 15 s"
    delivered = emulator.delivered()[before:]
    if event.result != "delivered":
        return delivered, f"{event.result}: {event.status} {event.code} {event.reason}"
    return delivered, ""


def recipient_problems(message: CorpusMessage, delivered: DeliveredMessage) -> list[str]:
    got = sorted(a.lower() for field in ("to", "cc", "bcc") for a in delivered.recipients[field])
    want = sorted(r.lower() for r in message.recipients)
    if got == want:
        return []
    extra = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    twice = sorted({a for a in got if got.count(a) > 1})
    details = [f"not in the envelope but addressed: {extra}"] if extra else []
    details += [f"missing: {missing}"] if missing else []
    details += [f"addressed more than once: {twice}"] if twice else []
    return [f"recipients {delivered.recipients} — " + "; ".join(details)]


def body_of(delivered: DeliveredMessage) -> tuple[str | None, str]:
    """(body type, decoded text) as Graph got it: the JSON body, or the MIME body part."""
    if delivered.mode != "mime":
        body: dict[str, Any] = (delivered.message_json or {}).get("body") or {}
        return str(body.get("contentType", "text")).lower(), str(body.get("content") or "")
    parsed = email.message_from_bytes(delivered.mime, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("html", "plain"))
    if part is None:
        return None, ""
    return ("html" if part.get_content_subtype() == "html" else "text"), part.get_content()


def body_problems(message: CorpusMessage, delivered: DeliveredMessage) -> list[str]:
    kind, text = body_of(delivered)
    problems = []
    if kind != message.body_type and not (kind is None and not message.contains):
        problems.append(f"body is {kind}, expected {message.body_type}")
    missing = [snippet for snippet in message.contains if snippet not in text]
    if missing:
        problems.append(f"body lacks {missing}; it reads {text[:300]!r}")
    return problems


def attachment_differences(
    expected: ExpectedAttachment, got: DeliveredAttachment, delivered: DeliveredMessage
) -> list[str]:
    mime = delivered.mode == "mime"
    differences = []
    if media_type(got.content_type) != expected.content_type:
        differences.append(f"content type {got.content_type!r}")
    if mime and expected.content_type == "message/rfc822":
        attached = [
            leaf.content
            for leaf in raw_leaves(delivered.mime)
            if leaf.content_type == "message/rfc822"
        ]
        if expected.sha256 not in map(sha256, attached):
            differences.append("the attached message's bytes changed")
    elif sha256(got.content) != expected.sha256:
        differences.append(f"content differs ({len(got.content)} bytes, expected {expected.size})")
    if expected.name is not None and got.name != expected.name:
        differences.append(f"name {got.name!r}")
    # Without a filename in the MIME, the emulator shows no name (Exchange would make one up).
    suffix = expected.name_suffix
    unnamed_in_mime = mime and got.name == ""
    if suffix is not None and not got.name.endswith(suffix) and not unnamed_in_mime:
        differences.append(f"name {got.name!r}")
    if not mime and got.is_inline != expected.inline:
        differences.append(f"isInline {got.is_inline}")
    if got.content_id != expected.content_id:
        differences.append(f"content id {got.content_id!r}")
    return differences


def attachment_problems(message: CorpusMessage, delivered: DeliveredMessage) -> list[str]:
    mime = delivered.mode == "mime"
    remaining = list(delivered.attachments)
    problems = []
    for expected in message.attachments:
        if mime and expected.name is None and expected.content_type.startswith("text/"):
            # Not an attachment in a mail client's eyes (a calendar alternative): is it intact?
            if not any(
                leaf.content_type == expected.content_type
                and sha256(leaf.content) == expected.sha256
                for leaf in raw_leaves(delivered.mime)
            ):
                problems.append(f"{expected}: not in the delivered MIME")
            continue
        exact = [a for a in remaining if not attachment_differences(expected, a, delivered)]
        if exact:
            remaining.remove(exact[0])
            continue
        close = [
            a
            for a in remaining
            if sha256(a.content) == expected.sha256
            or (a.name and a.name == expected.name)
            or media_type(a.content_type) == expected.content_type
        ]
        if close:
            remaining.remove(close[0])
            differences = attachment_differences(expected, close[0], delivered)
            problems.append(f"{expected}: " + ", ".join(differences))
        else:
            problems.append(f"{expected}: missing")
    problems += [
        f"unexpected attachment {a.name!r} ({a.content_type}, {len(a.content)} bytes, "
        f"inline={a.is_inline}, content id {a.content_id!r})"
        for a in remaining
    ]
    return problems


def delivery_problems(
    message: CorpusMessage, mode: str, deliveries: list[DeliveredMessage]
) -> list[str]:
    if len(deliveries) != 1:
        return [f"Graph received it {len(deliveries)} times"]
    [delivered] = deliveries
    problems = []
    expected_mode = "mime" if message.signed else mode
    if delivered.mode != expected_mode:
        problems.append(f"sent as {delivered.mode}, expected {expected_mode}")
    problems += recipient_problems(message, delivered)
    if delivered.subject != message.subject:
        problems.append(f"subject {delivered.subject!r}, expected {message.subject!r}")
    problems += body_problems(message, delivered)
    problems += attachment_problems(message, delivered)
    if message.signed and delivered.mode == "mime":
        failure = smime_verify(delivered.mime)
        if failure:
            problems.append(f"S/MIME signature no longer verifies: {failure}")
    return problems


@pytest.mark.parametrize("mode", ["mime", "json"])
async def test_every_corpus_message_arrives_as_expected(
    mode: str, tmp_path: Path, emulator: Emulator
) -> None:
    deliveries: dict[str, tuple[list[DeliveredMessage], str]] = {}
    async with run_gateway(corpus_config(tmp_path, emulator, mode)) as gateway:
        for message in CORPUS:  # one at a time: each delivery is known to be this message's
            deliveries[message.name] = await send_one(gateway, emulator, message)

    failures = []
    for message in CORPUS:
        delivered, problem = deliveries[message.name]
        problems = [problem] if problem else []
        problems += delivery_problems(message, mode, delivered) if delivered or not problem else []
        failures += [f"{message.name} [{mode}]: {p}" for p in problems]
    failed = len({f.split(" ", 1)[0] for f in failures})
    assert not failures, (
        f"{failed} of {len(CORPUS)} corpus messages wrong in {mode} mode:\n" + "\n".join(failures)
    )
