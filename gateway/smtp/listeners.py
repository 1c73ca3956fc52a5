"""Bind every configured SMTP listener on the running event loop, and close them for a drain."""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from dataclasses import dataclass

import structlog

from gateway.config import Listener, SmtpSettings, TlsMode
from gateway.errors import ConfigError, ConfigIssue
from gateway.network import bind_issue
from gateway.smtp.handler import Handler
from gateway.smtp.registry import SessionRegistry
from gateway.smtp.session import GatewaySMTP, SessionLimits
from gateway.smtp.tls import server_context

log = structlog.get_logger("gateway.smtp")


@dataclass(frozen=True, slots=True)
class Bound:
    """A listener and the address it actually got (port 0 becomes a real port)."""

    listener: Listener
    host: str
    port: int


class Listeners:
    """The SMTP servers of one gateway."""

    def __init__(
        self, settings: SmtpSettings, handler: Handler, size_limit: int, *, size_reason: str = ""
    ) -> None:
        self._settings = settings
        self._size_limit = size_limit  # SIZE: what the most capable route delivers
        self._size_reason = size_reason  # why no route delivers more
        self._handler = handler
        self.registry = SessionRegistry()
        self._servers: list[asyncio.Server] = []
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.bound: list[Bound] = []
        self._fqdn = "localhost"  # this host's name, looked up once at start (see _smtp)

    async def start(self) -> None:
        """Bind every listener. When any cannot be bound (the port is taken, a port below 1024
        without the capability, a TLS pair that does not match), the others are closed and one
        `ConfigError` names each failing `smtp.listeners[i]`, its address, cause and remedy."""
        # aiosmtpd would call getfqdn() for every connection when no hostname is configured: a
        # DNS lookup on the event loop each time. The name is looked up once, here.
        self._fqdn = await asyncio.to_thread(socket.getfqdn)
        if self._size_limit < self._settings.max_message_size:
            log.warning(
                "message_size_capped",
                configured=self._settings.max_message_size,
                advertised=self._size_limit,
                reason=f"no tenant delivers larger messages: {self._size_reason}"
                if self._size_reason
                else "no tenant delivers larger messages",
            )
        issues: list[ConfigIssue] = []
        try:
            for index, listener in enumerate(self._settings.listeners):
                issues += await self._bind(index, listener)
        except BaseException:
            self.close()
            raise
        if issues:  # every listener that cannot be bound, at once: one error, exit status 78
            self.close()
            raise ConfigError(issues)

    async def _bind(self, index: int, listener: Listener) -> list[ConfigIssue]:
        """Bind one listener; the problems that stop it (none when it listens)."""
        where = f"smtp.listeners[{index}]"
        context = None
        if listener.tls is not TlsMode.NONE:
            assert listener.tls_files is not None
            try:
                context = server_context(listener.tls_files, where)
            except ConfigError as error:
                return list(error.issues)
            self._contexts[listener.name] = context
        try:
            server = await asyncio.get_running_loop().create_server(
                lambda: self._protocol(listener, context),
                host=listener.address,
                port=listener.port,
                ssl=context if listener.tls is TlsMode.IMPLICIT else None,
                reuse_address=True,
            )
        except OSError as error:
            return [bind_issue(error, where, listener.address, listener.port)]
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        self.bound.append(Bound(listener, host, port))
        if listener.tls_files and listener.tls_files.min_version in ("tlsv1", "tlsv1.1"):
            log.warning(
                "old_tls_allowed",
                listener=listener.name,
                min_version=listener.tls_files.min_version,
                reason="opted in for old devices; TLS before 1.2 is weak",
            )
        log.info(
            "listening", listener=listener.name, address=host, port=port, tls=listener.tls.value
        )
        return []

    def _protocol(self, listener: Listener, context: ssl.SSLContext | None) -> GatewaySMTP:
        starttls = context if listener.tls is TlsMode.STARTTLS else None
        if listener.auth != "required" or not _auth_tls_hidden(listener):
            return self._smtp(listener, starttls)
        with warnings.catch_warnings():
            # aiosmtpd warns when AUTH is required without *its* TLS requirement; on implicit-TLS
            # listeners the whole connection is TLS, which it cannot see.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return self._smtp(listener, starttls)

    def _smtp(self, listener: Listener, starttls: ssl.SSLContext | None) -> GatewaySMTP:
        settings = self._settings
        return GatewaySMTP(
            self._handler,
            registry=self.registry,
            limits=SessionLimits(
                max_connections=settings.max_connections,
                per_ip=settings.max_connections_per_ip,
                reserved=settings.reserved_connections,
                idle=settings.idle_timeout,
                login=settings.login_timeout,
                messages=settings.max_messages_per_connection,
                junk=settings.max_junk_commands,
                recipients=settings.max_recipients,
            ),
            proxy_networks=listener.proxy_networks,
            listener=listener.name,
            hostname=self._settings.hostname or self._fqdn,
            ident="smtp-graph-gateway",
            data_size_limit=self._size_limit,
            tls_context=starttls,
            require_starttls=listener.require_tls and starttls is not None,
            timeout=self._settings.command_timeout,
            # AUTH needs TLS unless the listener allows cleartext. aiosmtpd cannot see implicit
            # TLS (aio-libs/aiosmtpd#281), so implicit listeners need no further TLS for it.
            auth_require_tls=not _auth_tls_hidden(listener),
            auth_required=listener.auth == "required",
            auth_exclude_mechanism=["PLAIN", "LOGIN"] if listener.auth == "off" else None,
        )

    def reload(self, settings: SmtpSettings, size_limit: int) -> list[str]:
        """Take new SMTP settings without closing a socket; what still needs a restart.

        Certificates are loaded into the existing TLS contexts, so new handshakes (STARTTLS and
        implicit) use them at once while established sessions carry on. Limits, hostname and
        timeouts apply to new connections. Adding, removing or moving listeners needs a restart.
        """

        def shape(listeners: tuple[Listener, ...]) -> list[tuple[str, str, int, TlsMode]]:
            return [(item.name, item.address, item.port, item.tls) for item in listeners]

        if shape(settings.listeners) != shape(self._settings.listeners):
            return ["smtp.listeners (addresses, ports or TLS modes) changed"]
        fresh = {}
        for index, listener in enumerate(settings.listeners):
            if listener.tls_files is not None:
                # Build first: an unusable certificate raises ConfigError and changes nothing.
                fresh[listener.name] = server_context(
                    listener.tls_files, f"smtp.listeners[{index}]"
                )
        for listener in settings.listeners:
            if listener.tls_files is not None and listener.name in self._contexts:
                context = self._contexts[listener.name]
                context.minimum_version = fresh[listener.name].minimum_version
                context.load_cert_chain(
                    str(listener.tls_files.cert_file), str(listener.tls_files.key_file)
                )
        self._settings = settings
        self._size_limit = size_limit
        return []

    def address(self, name: str) -> tuple[str, int]:
        """(host, port) a named listener is bound to."""
        for bound in self.bound:
            if bound.listener.name == name:
                return bound.host, bound.port
        raise KeyError(name)

    def close(self) -> None:
        """Stop accepting connections (open sessions continue)."""
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def drain(self, timeout: float) -> bool:
        """Close idle sessions, let transactions finish; abort what is left after `timeout`."""
        self.close()
        self.registry.begin_drain()
        finished = await self.registry.wait_empty(timeout)
        if not finished:
            log.warning("smtp_drain_timeout", open_sessions=len(self.registry), timeout=timeout)
            self.registry.abort_all()
        return finished


def _auth_tls_hidden(listener: Listener) -> bool:
    """AUTH without aiosmtpd's own TLS requirement: implicit TLS (aio-libs/aiosmtpd#281: it
    cannot see that the whole connection is TLS) or cleartext AUTH allowed by configuration."""
    return listener.tls is TlsMode.IMPLICIT or listener.allow_cleartext_auth
