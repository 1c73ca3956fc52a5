"""`check` on this host: what `serve` would trip over before any tenant is asked.

Whether each SMTP listener and the HTTP endpoint can listen on
its address now (a port taken by another process, a port below 1024 without the capability,
an address this host does not have); whether each TLS certificate and key load and match;
and the largest message the gateway will take, which is 3,080,192 bytes whatever
`smtp.max_message_size` says unless a tenant has `large_messages: true`. When the gateway is
already running on this configuration (its control socket answers), its own ports being in
use is expected, not a failure.

Also which tenants `check --mailbox X` should use: only those that route X, so a probe or a
test message never goes through another organisation's app.
"""

from __future__ import annotations

import datetime
import errno
import os
import socket
from pathlib import Path

from cryptography import x509

from gateway.addresses import parse_mailbox
from gateway.checks import TenantReport
from gateway.config import MIME_SUBMISSION_LIMIT, Config, Tenant, TlsMode, format_size
from gateway.control import SOCKET_NAME
from gateway.errors import ConfigError
from gateway.network import bind_issue, try_bind
from gateway.routing import advertised_size, router_for
from gateway.smtp.tls import server_context

HOST_REPORT = "this host"


def check_host(config: Config, *, today: datetime.date | None = None) -> TenantReport:
    """Every local check, as one report (`ok` false when `serve` would fail here)."""
    report = TenantReport(HOST_REPORT)
    today = today or datetime.datetime.now(datetime.UTC).date()
    running = daemon_running(config.spool.directory)
    for index, listener in enumerate(config.smtp.listeners):
        where = f"smtp.listeners[{index}]"
        address = (listener.address, listener.port)
        _bind(report, f"listener {listener.name}", where, address, running=running)
        if listener.tls is not TlsMode.NONE and listener.tls_files is not None:
            try:
                server_context(listener.tls_files, where)
            except ConfigError as error:
                report.add(f"listener {listener.name} TLS", False, str(error.issues[0]))
            else:
                detail = _certificate_detail(listener.tls_files.cert_file, today)
                report.add(f"listener {listener.name} TLS", True, detail)
    if config.http is not None:
        address = (config.http.address, config.http.port)
        _bind(report, "http endpoint", "http.listen", address, running=running)
    _message_size(config, report)
    return report


def daemon_running(spool_directory: Path) -> bool:
    """Whether a gateway serves this spool now (its control socket takes a connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        try:
            client.connect(str(spool_directory / SOCKET_NAME))
        except OSError:
            return False
    return True


def _bind(
    report: TenantReport, check: str, where: str, address: tuple[str, int], *, running: bool
) -> None:
    host, port = address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if port == 0:
        report.add(check, True, f"{shown}: any free port, chosen at start")
        return
    error = try_bind(host, port)
    if error is None:
        report.add(check, True, f"can listen on {shown}")
    elif error.errno == errno.EACCES and port < 1024 and os.geteuid() != 0:
        # `check` run by an administrator's own account: the service may well have the right.
        report.add(
            check,
            False,
            f"{shown}: this account may not listen on a port below 1024; serve needs the "
            "CAP_NET_BIND_SERVICE capability there (the systemd unit grants it) or root",
            warning=True,
        )
    elif running and error.errno == errno.EADDRINUSE:
        report.add(
            check, True, f"{shown} is in use: by the running gateway, whose control socket answers"
        )
    else:
        report.add(check, False, str(bind_issue(error, where, host, port)))


def _certificate_detail(path: Path, today: datetime.date) -> str:
    """`CN=…, expires 2027-06-30 (400 days)` for the first certificate in a PEM file."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return "certificate and key match"
    expires = certificate.not_valid_after_utc.date()
    return (
        f"certificate and key match; {certificate.subject.rfc4514_string() or 'no subject'}, "
        f"expires {expires} ({(expires - today).days} days)"
    )


def _message_size(config: Config, report: TenantReport) -> None:
    """The largest message accepted, and why, when it is less than `smtp.max_message_size`."""
    configured = config.smtp.max_message_size
    largest = advertised_size(config.smtp, config.tenants, config.routing)
    if largest >= configured:
        report.add("message size", True, f"up to {format_size(configured)} (SIZE {configured})")
        return
    detail = f"smtp.max_message_size is {format_size(configured)}, but messages over " + (
        f"{MIME_SUBMISSION_LIMIT:,} bytes ({format_size(MIME_SUBMISSION_LIMIT)}, what one Graph "
        "request carries) are refused with 552 5.3.4: no tenant has large_messages: true "
        "(needs the Mail.ReadWrite application permission)"
        if largest == MIME_SUBMISSION_LIMIT
        else f"{largest:,} bytes are refused with 552 5.3.4: no tenant delivers larger ones"
    )
    report.add("message size", False, detail, warning=True)


def tenants_for_mailbox(config: Config, mailbox: str) -> list[Tenant]:
    """The tenants that deliver mail from `mailbox`, in the order they are tried: the same
    routing rule as delivery (address overrides, domains, the default tenant)."""
    address = parse_mailbox(mailbox)
    if address is None:
        return []
    return [route.tenant for route in router_for(config).routes(address)]
