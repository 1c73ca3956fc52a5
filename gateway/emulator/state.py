"""The state one emulator run shares between its routes.

Settings, the token signing key, the test OIDC issuers and the keys fetched from issuers that
federated credentials trust, the outbox, drafts and upload sessions, delegated sign-ins
(device codes, authorization codes, refresh tokens), the active faults and the statistics, plus
the clock. Route modules receive this object; nothing is global, so two
emulators can run side by side in one process (as tests do).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from gateway.emulator.faults import Faults, FaultState
from gateway.emulator.federation import IssuerKeys
from gateway.emulator.mailstore import MailStore
from gateway.emulator.oidc import OidcIssuers
from gateway.emulator.outbox import Outbox
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.signin import SignInStore
from gateway.emulator.stats import EmulatorStats
from gateway.emulator.tokens import AccessTokenIssuer


class EmulatorState:
    def __init__(
        self, settings: EmulatorSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.base_url = ""  # known once the listener is bound
        self.issuer = AccessTokenIssuer()
        self.oidc = OidcIssuers()
        self.ca_pem = b""  # this run's CA, known once started: trusted when fetching keys
        self._issuer_keys: IssuerKeys | None = None
        self.outbox = Outbox(settings.state_dir / "outbox", keep=settings.keep_messages)
        self.store = MailStore()
        self.signin = SignInStore(settings)
        self.stats = EmulatorStats()
        self.faults = FaultState(settings.faults, now=clock())
        self.log: Any = structlog.get_logger("gateway.emulator")

    @property
    def issuer_keys(self) -> IssuerKeys:
        """Keys of the issuers federated credentials trust (fetched by OIDC discovery)."""
        if self._issuer_keys is None:
            self._issuer_keys = IssuerKeys(self.ca_pem)
        return self._issuer_keys

    async def close(self) -> None:
        """Close the connections made to fetch issuers' keys."""
        if self._issuer_keys is not None:
            await self._issuer_keys.close()
            self._issuer_keys = None

    def set_faults(self, faults: Faults) -> None:
        """Activate `faults` now: countdowns restart and an outage starts from this moment."""
        self.faults = FaultState(faults, now=self.clock())
        self.log.info("emulator.faults_set", **faults.to_json())

    def reset(self) -> None:
        """Back to a fresh run: no deliveries, drafts, pending sign-ins, statistics or faults.

        Refresh tokens stay valid (Entra does not forget them); `signin.revoke` ends them.
        """
        self.outbox.clear()
        self.store.clear()
        self.signin.clear_pending()
        self.stats.clear()
        self.faults = FaultState(Faults(), now=self.clock())
        self.log.info("emulator.reset")

    def external_base(self, request: web.Request) -> str:
        """The origin the client used (so URLs we hand out match what it trusts)."""
        host = request.headers.get("Host")
        return f"https://{host}" if host else self.base_url
