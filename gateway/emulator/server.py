"""The `Emulator`: Entra ID and Graph mail on one HTTPS listener inside the caller's event loop.

    async with running_emulator(EmulatorSettings(state_dir=tmp)) as emu:
        authority = f"{emu.login_endpoint}/{tenant_id}"   # for msal, with emu.ca_file trusted
        graph = emu.graph_endpoint                         # https://127.0.0.1:PORT/v1.0
        ... emu.delivered(), emu.stats, emu.set_faults(Faults(throttle_count=2))

With `smtp_port` set it also runs an SMTP submission listener like smtp.office365.com:587
(smtp.py; `emu.smtp_address` is its (host, port)). Delegated sign-in is steered with
`approve_device_code`, `decline_device_code`, `expire_device_code`, `device_codes` and ended
with `revoke_sign_ins` (the same as the `/_emulator/` admin endpoints). For credentials without
a secret: `managed_identity_environment()` (the variables that point msal at the managed
identity endpoint here), `oidc_issuer(name)` and `mint_service_account_token(...)` (a test
Kubernetes issuer and its tokens, for apps' federated credentials).

`start()` makes a fresh CA and server certificate, writes the CA PEM to `state_dir/ca.pem` (and
to `ca_out`), binds (port 0 picks a free port) and serves until `stop()`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

from aiohttp import web

from gateway.emulator.admin import AdminRoutes
from gateway.emulator.delegated import DelegatedRoutes
from gateway.emulator.faults import Faults
from gateway.emulator.graph import GraphRoutes, graph_middleware
from gateway.emulator.identities import TOKEN_EXCHANGE
from gateway.emulator.login import LoginRoutes
from gateway.emulator.managed import APP_SERVICE_PATH, ManagedIdentityRoutes
from gateway.emulator.oidc import OidcRoutes
from gateway.emulator.outbox import DeliveredMessage
from gateway.emulator.pki import generate_pki, server_ssl_context, subject_names
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.signin import DeviceFlow
from gateway.emulator.smtp import SmtpListener
from gateway.emulator.state import EmulatorState
from gateway.emulator.stats import EmulatorStats
from gateway.emulator.uploads import UploadRoutes

SHUTDOWN_TIMEOUT = 2.0  # seconds to let in-flight requests finish on stop()


class Emulator:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.state = EmulatorState(settings)
        self._runner: web.AppRunner | None = None
        self._smtp: SmtpListener | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        settings = self.settings
        names = subject_names(settings.host)
        if settings.smtp_host is not None:
            names += tuple(n for n in subject_names(settings.smtp_host) if n not in names)
        pki = generate_pki(names)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(pki.ca_cert_pem)
        if settings.ca_out is not None:
            settings.ca_out.parent.mkdir(parents=True, exist_ok=True)
            settings.ca_out.write_bytes(pki.ca_cert_pem)
        ssl_context = server_ssl_context(pki, settings.state_dir)
        self.state.ca_pem = pki.ca_cert_pem

        app = web.Application(middlewares=[graph_middleware(self.state)])
        login = LoginRoutes(self.state)
        for routes in (
            login,
            DelegatedRoutes(self.state, login),
            GraphRoutes(self.state),
            UploadRoutes(self.state),
            AdminRoutes(self.state),
            ManagedIdentityRoutes(self.state),
            OidcRoutes(self.state),
        ):
            routes.register(app.router)
        runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, settings.host.strip("[]"), settings.port, ssl_context=ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = int(runner.addresses[0][1])
        self.state.base_url = f"https://{_url_host(settings.host)}:{port}"
        if settings.smtp_port is not None:
            smtp = SmtpListener(self.state, ssl_context)
            smtp_host = (settings.smtp_host or settings.host).strip("[]")
            try:
                await smtp.start(smtp_host, settings.smtp_port)
            except BaseException:
                await smtp.stop()
                self._runner = None
                await runner.cleanup()
                raise
            self._smtp = smtp
        self.state.log.info(
            "emulator.started",
            base_url=self.base_url,
            ca_file=str(self.ca_file),
            outbox=str(self.outbox_dir),
            open_mode=settings.open_mode,
            smtp=self._smtp.address if self._smtp else None,
        )

    async def stop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            await smtp.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self.state.log.info("emulator.stopped", base_url=self.base_url)
        await self.state.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- where things are ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self.state.base_url:
            raise RuntimeError("the emulator is not started")
        return self.state.base_url

    @property
    def login_endpoint(self) -> str:
        """The authority host: msal's authority is f"{login_endpoint}/{tenant_id}"."""
        return self.base_url

    @property
    def graph_endpoint(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def ca_file(self) -> Path:
        return self.settings.state_dir / "ca.pem"

    @property
    def outbox_dir(self) -> Path:
        return self.state.outbox.directory

    @property
    def smtp_address(self) -> tuple[str, int]:
        """(host, port) of the SMTP listener (STARTTLS with `ca_file`'s CA, AUTH XOAUTH2)."""
        if self._smtp is None or self._smtp.address is None:
            raise RuntimeError("the SMTP listener is not running (set EmulatorSettings.smtp_port)")
        host, port = self._smtp.address
        return _url_host(host).strip("[]"), port

    # -- what happened, and what should go wrong -------------------------------------------

    def delivered(self) -> list[DeliveredMessage]:
        return self.state.outbox.messages()

    async def wait_delivered(self, count: int, timeout: float = 30.0) -> list[DeliveredMessage]:
        """Wait until `count` messages have been delivered in all (TimeoutError after
        `timeout` seconds); the delivered messages."""
        return await self.state.outbox.wait_for(count, timeout)

    @property
    def stats(self) -> EmulatorStats:
        return self.state.stats

    @property
    def faults(self) -> Faults:
        return self.state.faults.faults

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    def reset(self) -> None:
        self.state.reset()

    # -- credentials without a secret ------------------------------------------------------

    @property
    def identity_header(self) -> str:
        """What the App Service managed identity endpoint wants in X-IDENTITY-HEADER."""
        return self.settings.identity_header

    def managed_identity_environment(self, kind: str = "app-service") -> dict[str, str]:
        """The environment that points msal's managed identity support here: `app-service`
        (IDENTITY_ENDPOINT + IDENTITY_HEADER) or `imds` (AZURE_POD_IDENTITY_AUTHORITY_HOST,
        the Azure VM protocol). Variables of the other kind must be unset: msal prefers
        App Service when both are there."""
        if kind == "app-service":
            return {
                "IDENTITY_ENDPOINT": f"{self.base_url}{APP_SERVICE_PATH}",
                "IDENTITY_HEADER": self.identity_header,
            }
        if kind == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.base_url}
        raise ValueError(f"unknown managed identity endpoint kind {kind!r}: app-service or imds")

    def oidc_issuer(self, name: str = "k8s") -> str:
        """The URL of a test OIDC issuer (a Kubernetes cluster's service-account issuer)."""
        return self.state.oidc.url(self.base_url, name)

    def mint_service_account_token(
        self,
        subject: str,
        *,
        issuer: str = "k8s",
        audience: str = TOKEN_EXCHANGE,
        lifetime: int = 3600,
        iss: str | None = None,
    ) -> str:
        """A token of test issuer `issuer`, like a projected service-account token (`iss`
        overrides the issuer claim: a token whose signature then does not verify)."""
        return self.state.oidc.mint(
            self.base_url,
            issuer,
            subject=subject,
            audience=audience,
            lifetime=lifetime,
            now=self.state.clock(),
            iss=iss,
        )

    # -- delegated sign-in -----------------------------------------------------------------

    def device_codes(self) -> list[DeviceFlow]:
        """Every device code issued (and not yet pruned), oldest first."""
        return list(self.state.signin.device_flows.values())

    def approve_device_code(self, user_code: str, username: str | None = None) -> DeviceFlow:
        """Sign in on a device code's behalf, as `username` (default: the tenant's first user).

        KeyError: unknown code; ValueError: no longer pending; signin.SignInRefused: that user
        cannot sign in through the flow's tenant.
        """
        return self.state.signin.approve(user_code, username, now=self.state.clock())

    def decline_device_code(self, user_code: str) -> DeviceFlow:
        """The next poll answers `authorization_declined`."""
        return self.state.signin.decline(user_code, now=self.state.clock())

    def expire_device_code(self, user_code: str) -> DeviceFlow:
        """The next poll answers `expired_token`."""
        return self.state.signin.expire(user_code)

    def revoke_sign_ins(self, username: str, client_id: str | None = None) -> int:
        """Revoke the user's refresh tokens (for one client id, or all); returns how many.

        Redeeming one then fails with invalid_grant AADSTS50173; a new sign-in works again.
        """
        return self.state.signin.revoke(username, client_id, now=self.state.clock())


@asynccontextmanager
async def running_emulator(settings: EmulatorSettings) -> AsyncIterator[Emulator]:
    emulator = Emulator(settings)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def _url_host(host: str) -> str:
    """The host to put in URLs: wildcard binds are reached over loopback; IPv6 in brackets."""
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]"
    except ValueError:
        pass
    return bare
