"""The one exception root and its branches.

Every error the gateway raises on purpose derives from `GatewayError`, so callers can catch by
category (configuration, SMTP policy, spool, transport, queue administration) without knowing
module internals. A
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
    """The queue cannot store or read a message (disk full, permissions, corruption)."""


class QueueUnavailable(SpoolError):
    """The queue's store cannot be reached (a database down or cut off): nothing was stored;
    the client is told to try again (451, or 421 at connect)."""


class QueueRefused(SpoolError):
    """The queue's store was reached but refused a step (a database statement failed): the
    step failed and is tried again; nothing already queued is harmed."""


class CorruptRecord(SpoolError):
    """A queued message that is not a complete, consistent record: never delivered."""


class TransportError(GatewayError):
    """A delivery attempt got no answer that decides the message.

    `sent`: the connection failed after the message went out, so the service may have taken it
    (a retry may duplicate it). `credentials`: the transport could not sign in (no token, a
    token the service refused): a set-up problem, retried slowly and never bounced, and
    another route may work. `code` is the service's or Entra ID's code (AADSTS…), when known.
    """

    def __init__(
        self, reason: str, *, sent: bool = False, credentials: bool = False, code: str = ""
    ) -> None:
        self.reason = reason
        self.sent = sent
        self.credentials = credentials
        self.code = code
        super().__init__(reason)


class TokenError(TransportError):
    """No access token could be obtained for a tenant. Always deferred, never bounced."""

    def __init__(self, reason: str, *, code: str = "") -> None:
        super().__init__(reason, credentials=True, code=code)


class AdminError(GatewayError):
    """A queue operation that cannot be done, with the reason for the administrator."""
