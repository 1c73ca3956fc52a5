"""Routing: failover order, overrides, default tenant, send-as precedence, From rewrite (pure)."""

from __future__ import annotations

from email import message_from_bytes, policy

from gateway.addresses import parse_mailbox
from gateway.config import RoutingSettings, Secret, Tenant
from gateway.mime.sender import rewrite_from
from gateway.routing import Router


def tenant(
    name: str, *domains: str, priority: int = 0, send_as: str = "", keep_from: bool = False
) -> Tenant:
    return Tenant(
        name=name,
        tenant_id=name,
        client_id=name,
        client_secret=Secret("s"),
        domains=domains,
        priority=priority,
        send_as=send_as,
        keep_from=keep_from,
    )


def address(text: str):
    parsed = parse_mailbox(text)
    assert parsed is not None
    return parsed


def test_failover_routes_are_tried_by_priority() -> None:
    router = Router(
        (
            tenant("backup", "contoso.com", priority=20),
            tenant("primary", "contoso.com", priority=10),
        )
    )
    assert [r.tenant.name for r in router.routes(address("a@contoso.com"))] == ["primary", "backup"]


def test_overrides_then_domains_then_default() -> None:
    routing = RoutingSettings(default_tenant="catchall", addresses=(("ceo@fabrikam.com", "exec"),))
    router = Router(
        (
            tenant("exec", "exec.example"),
            tenant("fabrikam", "fabrikam.com"),
            tenant("catchall", "catchall.example"),
        ),
        routing,
    )
    assert router.route(address("CEO@Fabrikam.com")).tenant.name == "exec"
    assert router.route(address("staff@fabrikam.com")).tenant.name == "fabrikam"
    assert router.route(address("x@elsewhere.org")).tenant.name == "catchall"
    assert Router((tenant("fabrikam", "fabrikam.com"),)).route(address("x@elsewhere.org")) is None


def test_send_as_precedence_and_from_rewrite_flag() -> None:
    routing = RoutingSettings(send_as=(("scan.contoso.com", "scans@contoso.com"),))
    router = Router(
        (tenant("contoso", "contoso.com", "*.contoso.com", send_as="shared@contoso.com"),), routing
    )
    plain = router.route(address("alice@contoso.com"))
    assert (plain.mailbox, plain.rewrite_from) == ("shared@contoso.com", True)
    by_domain = router.route(address("mfp@scan.contoso.com"))
    assert by_domain.mailbox == "scans@contoso.com"
    by_client = router.route(address("mfp@scan.contoso.com"), "printer@contoso.com")
    assert by_client.mailbox == "printer@contoso.com"
    itself = Router((tenant("c", "contoso.com"),)).route(address("bob@contoso.com"))
    assert (itself.mailbox, itself.rewrite_from) == ("bob@contoso.com", False)
    keep = Router((tenant("c", "contoso.com", send_as="s@contoso.com", keep_from=True),))
    assert keep.route(address("bob@contoso.com")).rewrite_from is False


def test_from_rewrite_keeps_display_name_and_moves_address_to_reply_to() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg_Scanner?= <scan@printer.local>\r\n"
        b"To: a@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"
    )
    rewritten = rewrite_from(raw, "scanner@contoso.com")
    parsed = message_from_bytes(rewritten, policy=policy.default)
    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Jörg Scanner", "scanner@contoso.com")
    assert parsed["Reply-To"].addresses[0].addr_spec == "scan@printer.local"
    assert rewritten.endswith(b"To: a@contoso.com\r\nSubject: x\r\n\r\nbody\r\n")
    assert len(parsed.get_all("From")) == 1
    kept = rewrite_from(b"From: a@b.org\nReply-To: r@b.org\n\nx\n", "s@contoso.com")
    assert kept.count(b"Reply-To:") == 1 and b"r@b.org" in kept
