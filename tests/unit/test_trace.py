"""The Received header a relay adds (RFC 5321 4.4), as a reader of the delivered message's
headers sees it, and the session facts kept with the envelope that it is made from."""

from __future__ import annotations

import pytest

from gateway.errors import CorruptRecord
from gateway.mime.trace import received_header
from gateway.queue.model import Envelope, Trace, envelope_json, parse_envelope

WHEN = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 +0000


@pytest.mark.parametrize(
    ("trace", "authenticated", "protocol"),
    [
        (Trace("mfp", esmtp=False, tls=False), False, "SMTP"),
        (Trace("mfp", esmtp=True, tls=False), False, "ESMTP"),
        (Trace("mfp", esmtp=True, tls=True), False, "ESMTPS"),
        (Trace("mfp", esmtp=True, tls=False), True, "ESMTPA"),
        (Trace("mfp", esmtp=True, tls=True), True, "ESMTPSA"),
    ],
)
def test_the_with_keyword_says_how_the_message_came(
    trace: Trace, authenticated: bool, protocol: str
) -> None:
    assert trace.protocol(authenticated) == protocol


def test_one_recipient_is_named() -> None:
    header = received_header(
        helo="printer.local",
        ip="192.168.10.5",
        hostname="relay.contoso.com",
        protocol="ESMTPSA",
        queue_id="0190ABCDEF012A1B2C3",
        recipients=["alice@contoso.com"],
        when=WHEN,
    )

    assert header == (
        b"Received: from printer.local ([192.168.10.5])\r\n"
        b"\tby relay.contoso.com with ESMTPSA id 0190ABCDEF012A1B2C3\r\n"
        b"\tfor <alice@contoso.com>; Fri, 15 Jan 2027 08:00:00 +0000\r\n"
    )


def test_several_recipients_are_not_named_and_ipv6_is_a_literal() -> None:
    header = received_header(
        helo="[IPv6:2001:db8::5]",
        ip="2001:db8::5",
        hostname="relay.contoso.com",
        protocol="ESMTP",
        queue_id="Q",
        recipients=["alice@contoso.com", "bcc@contoso.com"],
        when=WHEN,
    )

    assert header == (
        b"Received: from [IPv6:2001:db8::5] ([IPv6:2001:db8::5])\r\n"
        b"\tby relay.contoso.com with ESMTP id Q; Fri, 15 Jan 2027 08:00:00 +0000\r\n"
    )


@pytest.mark.parametrize(
    "helo",
    ["x\r\nBcc: ceo@contoso.com", "a (fake) b", "caf\u00e9", "a\\b", "", "x" * 2000],
)
def test_a_hostile_helo_cannot_add_a_header_or_a_comment(helo: str) -> None:
    header = received_header(
        helo=helo,
        ip="192.0.2.1",
        hostname="relay",
        protocol="ESMTP",
        queue_id="Q",
        recipients=["a@contoso.com"],
        when=WHEN,
    )

    first = header.split(b"\r\n")[0]
    assert header.count(b"\r\n") == 3 and header.count(b"\r\n\t") == 2
    assert first.startswith(b"Received: from ") and first.endswith(b" ([192.0.2.1])")
    assert first.count(b"(") == 1 and len(first) < 300
    assert header.isascii()


def envelope(trace: Trace | None) -> Envelope:
    return Envelope(
        queue_id="0190ABCDEF012A1B2C3",
        mail_from="s@contoso.com",
        rcpt_tos=("a@contoso.com",),
        received_at=1.0,
        client="c",
        peer="::1",
        listener="lan",
        size=5,
        trace=trace,
    )


@pytest.mark.parametrize("trace", [None, Trace("printer.local", esmtp=True, tls=True)])
def test_the_session_facts_round_trip_through_the_envelope_json(trace: Trace | None) -> None:
    assert parse_envelope(envelope_json(envelope(trace))) == envelope(trace)


@pytest.mark.parametrize(
    "value",
    [b'"x"', b'{"helo": 1, "esmtp": true, "tls": true}', b'{"helo": "x", "tls": true}'],
)
def test_a_wrongly_typed_trace_is_a_corrupt_record(value: bytes) -> None:
    good = envelope_json(envelope(None))
    with pytest.raises(CorruptRecord):
        parse_envelope(good[:-1] + b',"trace":' + value + b"}")
