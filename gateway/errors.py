"""The one exception root and its branches.

Every error the gateway raises on purpose derives from `GatewayError`, so callers can catch by
category (configuration, SMTP policy, spool, delivery) without knowing module internals. A
`PolicyError` carries the SMTP reply to send; no exception text ever goes on the SMTP wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.replies import Reply


class GatewayError(Exception):
    """Root of every error the gateway raises deliberately."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the configuration, located by its YAML path."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} — {self.hint}" if self.hint else text


class ConfigError(GatewayError):
    """The configuration is invalid; `issues` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        count = len(self.issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{count} configuration error{'s' if count != 1 else ''}:\n{lines}")


class PolicyError(GatewayError):
    """An SMTP command is refused: `reply` is what the client is told, `reason` what is logged."""

    def __init__(self, reply: Reply, reason: str) -> None:
        self.reply = reply
        self.reason = reason
        super().__init__(reason)


class SpoolError(GatewayError):
    """The spool cannot store or read a message (disk full, permissions, corruption)."""


class DeliveryError(GatewayError):
    """A delivery attempt failed. `permanent` decides between retrying and holding."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.permanent = permanent
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(reason)


class TokenError(DeliveryError):
    """No access token could be obtained for a tenant. Always deferred, never bounced."""

    def __init__(self, reason: str, *, code: str = "") -> None:
        super().__init__(reason, permanent=False, code=code)
