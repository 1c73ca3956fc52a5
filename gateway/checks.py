"""`smtp-graph-gateway check`: test each tenant's app registration the way delivery will use it.

Per tenant: say which credential it uses and where a client assertion comes from (a federated
token file with its issuer, subject, audience and expiry, or the managed identity endpoint),
get a token (explaining any Entra error), read the application roles it carries (`Mail.Send`
must be there: missing roles mean missing admin consent), and optionally probe a mailbox and
send a real test message. The mailbox probe posts a sendMail with no recipients:
Graph refuses it with `ErrorInvalidRecipients` when the app may act for the mailbox (nothing is
sent) and with `ErrorAccessDenied` when an ApplicationAccessPolicy or RBAC for Applications
scope excludes it — the gateway-side answer to `Test-ApplicationAccessPolicy`.
"""

from __future__ import annotations

import datetime
import email.utils
import socket
from dataclasses import dataclass, field
from typing import Any

from gateway.config import CredentialKind, SpoolSettings, Tenant, Transport, format_size
from gateway.entra.claims import token_claims, token_roles
from gateway.entra.credentials import certificate_summary
from gateway.entra.delegated import provider_for
from gateway.entra.federation import AssertionUnavailable, read_claims, read_token_file
from gateway.entra.managed import endpoint
from gateway.entra.tokens import TokenProvider
from gateway.errors import ConfigError, TokenError, TransportError
from gateway.graph.classify import classify, explain_access_denied
from gateway.graph.client import GraphClient, open_graph_client
from gateway.routing import Route
from gateway.transport import Answer


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


_NO_EXPIRY = "nothing to expire, no expiry warning needed"


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
    if tenant.credential_kind is CredentialKind.MANAGED_IDENTITY:
        return "Mail.Send", (
            "grant the managed identity's service principal the Microsoft Graph application "
            "permission Mail.Send (the portal cannot: New-MgServicePrincipalAppRoleAssignment "
            "in PowerShell, or POST …/servicePrincipals/{id}/appRoleAssignments in Graph)"
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
    if not _check_expiring(tenant, report, today) or not _check_credential(tenant, report):
        return report
    provider = provider_for(tenant, timeout=timeout, proxy=proxy)
    try:
        token = await provider.get()
    except TokenError as error:
        report.add("token", False, f"{error.code + ': ' if error.code else ''}{error.reason}")
        return report
    finally:
        provider.close()
    report.add("token", True, _token_source(tenant, token))
    _federated_line(tenant, provider, report)
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


def _check_expiring(tenant: Tenant, report: TenantReport, today: datetime.date) -> bool:
    """Days left of a client secret (as configured) or a certificate (read from its files);
    False when the certificate cannot be used."""
    if tenant.client_secret_expires is not None:
        days = (tenant.client_secret_expires - today).days
        report.add("client secret expiry", days > 30, f"{days} days left", warning=0 < days <= 30)
    if tenant.certificate is not None:
        try:
            summary = certificate_summary(tenant.certificate)
        except ConfigError as error:
            report.add("certificate", False, str(error.issues[0]))
            return False
        days = summary.days_left(today)
        report.add(
            "certificate",
            days > 30,
            f"thumbprint {summary.sha1_thumbprint}, {days} days left",
            warning=0 < days <= 30,
        )
    return True


def _check_credential(tenant: Tenant, report: TenantReport) -> bool:
    """Say which credential a tenant without a secret uses and where its assertion comes from
    (a federated token file is read and its claims shown); False when it cannot work."""
    kind = tenant.credential_kind
    if kind is CredentialKind.FEDERATED_TOKEN_FILE:
        assert tenant.federated_token_file is not None
        path = tenant.federated_token_file
        try:
            claims = read_claims(read_token_file(path))
        except AssertionUnavailable as error:
            report.add("credential", False, error.reason)
            return False
        assert claims is not None  # read_token_file checked it is a JWT
        now = datetime.datetime.now(datetime.UTC)
        if claims.expires is not None and claims.expires <= now:
            report.add(
                "credential",
                False,
                f"the federated token file {path} holds an expired token ({claims.describe()}): "
                "is it the projected service-account token, which the kubelet renews?",
            )
            return False
        report.add(
            "credential",
            True,
            f"federated token file {path}: {claims.describe()}; re-read for every token "
            f"request, {_NO_EXPIRY}",
        )
        if tenant.federation_audience not in claims.audiences:
            report.add(
                "audience",
                False,
                f"the token is for {claims.audience}, not {tenant.federation_audience}: Entra "
                "ID refuses it (AADSTS700212) unless the federated credential lists that "
                f"audience; set serviceAccountToken.audience: {tenant.federation_audience}",
                warning=True,
            )
    elif kind is CredentialKind.MANAGED_IDENTITY_ASSERTION:
        assert tenant.managed_identity is not None
        report.add(
            "credential",
            True,
            f"{tenant.managed_identity.describe()} managed identity from {endpoint()}, as a "
            f"federated credential of app {tenant.client_id}; {_NO_EXPIRY}",
        )
    elif kind is CredentialKind.MANAGED_IDENTITY:
        assert tenant.managed_identity is not None
        report.add(
            "credential",
            True,
            f"{tenant.managed_identity.describe()} managed identity from {endpoint()}, "
            f"sending as itself (no app registration); {_NO_EXPIRY}",
        )
    return True


def _token_source(tenant: Tenant, token: str) -> str:
    """Where the token came from, with which credential."""
    kind = tenant.credential_kind
    if kind is CredentialKind.DELEGATED:
        return f"from {tenant.authority}, signed in as {tenant.account}"
    if kind is CredentialKind.MANAGED_IDENTITY:
        claims = token_claims(token) or {}
        return (
            f"from the managed identity endpoint: object (principal) ID {claims.get('oid', '?')} "
            f"in tenant {claims.get('tid', '?')}"
        )
    article = "the " if kind is CredentialKind.MANAGED_IDENTITY_ASSERTION else "a "
    return f"from {tenant.authority} with {article}{kind.value}"


def _federated_line(tenant: Tenant, provider: TokenProvider, report: TenantReport) -> None:
    """The federated credential Entra ID matched: the values on the app that made it work."""
    claims = provider.assertion_claims
    if claims is not None:
        report.add(
            "federated credential",
            True,
            f"app {tenant.client_id} trusts issuer {claims.issuer}, subject {claims.subject}, "
            f"audience {claims.audience}",
        )


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
    except TransportError as error:
        report.add(f"mailbox {mailbox}", False, error.reason)
        return
    if answer.code == "ErrorInvalidRecipients":
        report.add(f"mailbox {mailbox}", True, "the app may send as this mailbox")
    else:
        explanation = _explain(answer, token, mailbox)
        report.add(
            f"mailbox {mailbox}", False, f"HTTP {answer.status} {answer.code}: {explanation}"
        )


def _explain(answer: Answer, token: str, mailbox: str) -> str:
    """What a refusal means; for `ErrorAccessDenied`, which of its two causes it is."""
    if answer.status == 403 and answer.code == "ErrorAccessDenied":
        return explain_access_denied(token_roles(token), answer.message, mailbox=mailbox)
    explanation = classify(answer.status, answer.code).explanation
    if explanation and answer.message:
        return f"{explanation} (Graph: {answer.message})"
    return explanation or answer.message


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
    except TransportError as error:
        report.add("test message", False, error.reason)
        return
    outcome = classify(answer.status, answer.code)
    detail = (
        f"sent as {mailbox} to {recipient} (request-id {answer.request_id})"
        if outcome.delivered
        else f"HTTP {answer.status} {answer.code}: {_explain(answer, token, mailbox)}"
    )
    report.add("test message", outcome.delivered, detail)


async def check_queue(spool: SpoolSettings) -> TenantReport | None:
    """A cluster's database: reachable and writable, its schema, the role's permissions, and
    whether `250` means one copy or two (a synchronous standby). None for a file spool."""
    if spool.backend != "postgresql" or spool.postgresql is None:
        return None
    from gateway.pgqueue.connection import connection_string  # noqa: PLC0415 - the driver only when used
    from gateway.pgqueue.inspect import inspect  # noqa: PLC0415 - the driver only when used

    report = TenantReport("queue")
    found = await inspect(spool.postgresql, connection_string(spool.postgresql))
    for finding in found.findings:
        report.add(finding.check, finding.passed, finding.detail, warning=finding.warning)
    return report
