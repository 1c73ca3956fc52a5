"""`smtp-graph-gateway check`: test each tenant's app registration the way delivery will use it.

Per tenant: get a token (explaining any Entra error), read the application roles it carries
(`Mail.Send` must be there: missing roles mean missing admin consent), and optionally probe a
mailbox and send a real test message. The mailbox probe posts a sendMail with no recipients:
Graph refuses it with `ErrorInvalidRecipients` when the app may act for the mailbox (nothing is
sent) and with `ErrorAccessDenied` when an ApplicationAccessPolicy or RBAC for Applications
scope excludes it — the gateway-side answer to `Test-ApplicationAccessPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Tenant, Transport, format_size
from gateway.delivery.classify import classify
from gateway.errors import ConfigError, TokenError
from gateway.graph.client import GraphClient, GraphTransportError, open_graph_client
from gateway.graph.credentials import certificate_summary
from gateway.graph.delegated import provider_for
from gateway.routing import Route


@dataclass
class TenantReport:
    """What `check` found for one tenant; `ok` is false when anything failed."""

    tenant: str
    ok: bool = True
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (check, result, detail)

    def add(self, check: str, passed: bool, detail: str = "", *, warning: bool = False) -> None:
        """Record one check (a warning does not fail the tenant)."""
        self.lines.append((check, "ok" if passed else ("WARN" if warning else "FAILED"), detail))
        self.ok = self.ok and (passed or warning)

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return {
            "tenant": self.tenant,
            "ok": self.ok,
            "checks": [{"check": c, "result": r, "detail": d} for c, r, d in self.lines],
        }


def token_roles(token: str) -> list[str] | None:
    """The permissions an access token carries: its `roles` (application permissions) and the
    names in its `scp` (delegated ones); None when the token cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return []
    roles = claims.get("roles", [])
    found = [str(role) for role in roles] if isinstance(roles, list) else []
    return found + str(claims.get("scp", "")).split()


def _needed_permission(tenant: Tenant) -> tuple[str, str]:
    """(permission the token must carry, what to do when it does not)."""
    if tenant.transport is Transport.SMTP_OAUTH:
        if tenant.delegated:
            return "SMTP.Send", (
                "add the delegated permission SMTP.Send (Office 365 Exchange Online) and run "
                f"`smtp-graph-gateway login {tenant.name}` again"
            )
        return "SMTP.SendAsApp", (
            "add the application permission SMTP.SendAsApp (Office 365 Exchange Online), grant "
            "admin consent, and register the app's service principal in Exchange "
            "(New-ServicePrincipal, Add-MailboxPermission)"
        )
    if tenant.delegated:
        return "Mail.Send", (
            f"add the delegated permission Mail.Send and run `smtp-graph-gateway login "
            f"{tenant.name}` again"
        )
    return "Mail.Send", (
        "add the Microsoft Graph application permission Mail.Send and grant admin consent"
    )


def _test_message(sender: str, recipient: str) -> bytes:
    host = socket.getfqdn()
    return (
        f"From: smtp-graph-gateway check <{sender}>\r\nTo: <{recipient}>\r\n"
        f"Subject: smtp-graph-gateway test from {host}\r\n"
        f"Date: {email.utils.formatdate(localtime=False)}\r\n"
        f"Message-ID: {email.utils.make_msgid('check')}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This message was sent by `smtp-graph-gateway check --send-test`.\r\n"
    ).encode()


async def check_tenant(
    tenant: Tenant,
    *,
    timeout: float,
    proxy: str = "",
    mailbox: str = "",
    send_test: str = "",
    today: datetime.date | None = None,
) -> TenantReport:
    """Run every check for one tenant."""
    report = TenantReport(tenant.name)
    today = today or datetime.datetime.now(datetime.UTC).date()
    if tenant.client_secret_expires is not None:
        days = (tenant.client_secret_expires - today).days
        report.add("client secret expiry", days > 30, f"{days} days left", warning=0 < days <= 30)
    if tenant.certificate is not None:
        try:
            summary = certificate_summary(tenant.certificate)
        except ConfigError as error:
            report.add("certificate", False, str(error.issues[0]))
            return report
        days = summary.days_left(today)
        report.add(
            "certificate",
            days > 30,
            f"thumbprint {summary.sha1_thumbprint}, {days} days left",
            warning=0 < days <= 30,
        )
    provider = provider_for(tenant, timeout=timeout, proxy=proxy)
    try:
        token = await provider.get()
    except TokenError as error:
        report.add("token", False, f"{error.code + ': ' if error.code else ''}{error.reason}")
        return report
    finally:
        provider.close()
    who = f", signed in as {tenant.account}" if tenant.delegated else ""
    report.add("token", True, f"from {tenant.authority}{who}")
    roles = token_roles(token)
    permission, remedy = _needed_permission(tenant)
    kind = "delegated" if tenant.delegated else "application"
    if roles is None:
        report.add("permissions", True, "token is opaque; roles not checked", warning=True)
    elif permission in roles:
        report.add("permissions", True, f"{permission} ({kind}) granted")
    else:
        report.add("permissions", False, f"{permission} is not in the token: {remedy}")
    if tenant.transport is Transport.SMTP_OAUTH:
        host, port = tenant.smtp_endpoint
        report.add("transport", True, f"SMTP with XOAUTH2 to {host}:{port}")
        return report
    _check_size(tenant, roles, report)
    if not (mailbox or send_test):
        return report
    async with open_graph_client(timeout=timeout, proxy=proxy) as graph:
        if mailbox:
            await _probe(graph, tenant, token, mailbox, report)
        if send_test:
            await _send_test(
                graph,
                tenant,
                token,
                report,
                mailbox=mailbox or tenant.account or tenant.send_as,
                recipient=send_test,
            )
    return report


def _check_size(tenant: Tenant, roles: list[str] | None, report: TenantReport) -> None:
    """The largest message this tenant's mail may be, why, and whether the large-message
    path has the permission it needs."""
    route = Route(tenant, "", mode=tenant.mode)
    detail = f"up to {format_size(route.size_limit)}: {route.size_reason()}"
    if route.large and roles is not None and "Mail.ReadWrite" not in roles:
        report.add(
            "message size",
            False,
            f"{detail}; but Mail.ReadWrite is not in the token's roles, so large messages would "
            "wait in the queue: add the Microsoft Graph application permission Mail.ReadWrite "
            "and grant admin consent, or set large_messages: false",
        )
        return
    report.add("message size", True, detail)


async def _probe(
    graph: GraphClient, tenant: Tenant, token: str, mailbox: str, report: TenantReport
) -> None:
    probe = {
        "message": {"subject": "smtp-graph-gateway access probe", "toRecipients": []},
        "saveToSentItems": False,
    }
    try:
        answer = await graph.send_json(
            graph_endpoint=tenant.graph_endpoint,
            mailbox="" if tenant.delegated else mailbox,  # delegated: /me
            payload=probe,
            token=token,
            ca_file=tenant.ca_file,
        )
    except GraphTransportError as error:
        report.add(f"mailbox {mailbox}", False, error.reason)
        return
    if answer.code == "ErrorInvalidRecipients":
        report.add(f"mailbox {mailbox}", True, "the app may send as this mailbox")
    else:
        explanation = classify(answer.status, answer.code).explanation or answer.message
        report.add(
            f"mailbox {mailbox}", False, f"HTTP {answer.status} {answer.code}: {explanation}"
        )


async def _send_test(
    graph: GraphClient,
    tenant: Tenant,
    token: str,
    report: TenantReport,
    *,
    mailbox: str,
    recipient: str,
) -> None:
    if not mailbox:
        report.add("test message", False, "no mailbox to send as: give --mailbox")
        return
    try:
        answer = await graph.send_mime(
            graph_endpoint=tenant.graph_endpoint,
            mailbox="" if tenant.delegated else mailbox,  # delegated: /me
            message=_test_message(mailbox, recipient),
            token=token,
            ca_file=tenant.ca_file,
        )
    except GraphTransportError as error:
        report.add("test message", False, error.reason)
        return
    outcome = classify(answer.status, answer.code)
    detail = (
        f"sent as {mailbox} to {recipient} (request-id {answer.request_id})"
        if outcome.delivered
        else f"HTTP {answer.status} {answer.code}: {outcome.explanation}"
    )
    report.add("test message", outcome.delivered, detail)
