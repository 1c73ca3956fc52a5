"""Envelope address parsing, tenant routing and the sender policy (pure core)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway import replies
from gateway.addresses import parse_mailbox, sender_matches
from gateway.config import Client, Secret, Tenant
from gateway.errors import PolicyError
from gateway.policy import check_recipient, check_sender, client_for
from gateway.routing import Router


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice@Contoso.COM", "alice@contoso.com"),
        ("<bob@example.org>", "bob@example.org"),
        ('"john smith"@example.org', '"john smith"@example.org'),
        ("scan+tag@sub.example.org", "scan+tag@sub.example.org"),
    ],
)
def test_valid_mailboxes(text: str, expected: str) -> None:
    address = parse_mailbox(text)
    assert address is not None
    assert str(address) == expected


@pytest.mark.parametrize(
    "text",
    [
        "alice@example.org)<bob@example.org>",  # CVE-2023-27043 shape
        "alice@example.org\r\nRCPT TO:<x@y.z>",
        "alice\x00@example.org",
        "alice@example.org bob@example.org",
        "Alice <alice@example.org>",
        "@relay.example:alice@example.org",
        "alice",
        "alice@",
        "a@b@c.org",
        "alice@-bad-.org",
        "x" * 250 + "@example.org",
    ],
)
def test_malformed_mailboxes_are_rejected(text: str) -> None:
    assert parse_mailbox(text) is None


def test_sender_patterns() -> None:
    address = parse_mailbox("Scanner@Contoso.com")
    assert address is not None
    assert sender_matches(address, ("*",))
    assert sender_matches(address, ("*@contoso.com",))
    assert sender_matches(address, ("scanner@contoso.com",))
    assert not sender_matches(address, ("*@fabrikam.com", "other@contoso.com"))
    assert not sender_matches(address, ("*@sub.contoso.com",))


def tenant(name: str, *domains: str) -> Tenant:
    return Tenant(
        name=name, tenant_id="t", client_id="c", client_secret=Secret("s"), domains=domains
    )


ROUTER = Router(
    (
        tenant("contoso", "contoso.com", "*.contoso.com"),
        tenant("eu", "*.eu.contoso.com"),
        tenant("fabrikam", "fabrikam.com"),
    )
)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("contoso.com", "contoso"),
        ("CONTOSO.com", "contoso"),
        ("mail.contoso.com", "contoso"),
        ("x.eu.contoso.com", "eu"),
        ("fabrikam.com", "fabrikam"),
        ("sub.fabrikam.com", None),
        ("notcontoso.com", None),
    ],
)
def test_routing_prefers_exact_then_longest_wildcard(domain: str, expected: str | None) -> None:
    found = ROUTER.tenant_for(domain)
    assert (found.name if found else None) == expected


PRINTERS = Client("printers", (ipaddress.ip_network("192.168.10.0/24"),), ("scanner@contoso.com",))
ERP = Client("erp", (ipaddress.ip_network("192.168.10.50/32"),), ("*@contoso.com",))
V6 = Client("v6", (ipaddress.ip_network("fd00::/8"),), ("*",))


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.168.10.7", "printers"),
        ("192.168.10.50", "erp"),
        ("::ffff:192.168.10.7", "printers"),
        ("fd00::1", "v6"),
        ("10.0.0.1", None),
        ("not-an-ip", None),
    ],
)
def test_client_is_most_specific_network(ip: str, expected: str | None) -> None:
    client = client_for(ip, (PRINTERS, ERP, V6))
    assert (client.name if client else None) == expected


def test_sender_policy_replies() -> None:
    address, route = check_sender("scanner@contoso.com", PRINTERS, ROUTER)
    assert route.tenant.name == "contoso"
    assert route.mailbox == str(address) == "scanner@contoso.com"
    cases = [
        ("ceo@contoso.com", PRINTERS, replies.SENDER_NOT_ALLOWED),
        ("x@unknown.org", V6, replies.NO_TENANT_FOR_SENDER),
        ("", V6, replies.NULL_SENDER_NOT_ALLOWED),
        ("alice@example.org)<bob@contoso.com>", V6, replies.BAD_SENDER_SYNTAX),
    ]
    for text, client, reply in cases:
        with pytest.raises(PolicyError) as caught:
            check_sender(text, client, ROUTER)
        assert caught.value.reply == reply, text
        assert caught.value.reason


def test_recipient_limit_answers_452() -> None:
    assert str(check_recipient("a@b.org", 499, 500)) == "a@b.org"
    with pytest.raises(PolicyError) as caught:
        check_recipient("a@b.org", 500, 500)
    assert str(caught.value.reply) == "452 4.5.3 Too many recipients"
