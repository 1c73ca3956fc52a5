"""The seam between delivery and the services that take mail: neutral answers, one error.

A `Transport` sends one message on one route and returns a `Submission`: the service's last
`Answer` (an HTTP status or an SMTP reply, in the same words), the `Verdict` on it (delivered,
permanent, a set-up problem, or temporary) and, for an SMTP server that took the message for
some recipients only, the `Refusal`s of the others. When no answer decides the message it
raises `TransportError`. Graph (`gateway.graph`) and SMTP OAuth (`gateway.smtp_oauth`)
implement it; each classifies its own answers. The delivery engine knows only this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gateway.errors import TransportError
from gateway.mime.buffer import Buffer
from gateway.routing import Route

__all__ = ["Answer", "Refusal", "Submission", "Transport", "TransportError", "Verdict"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the service said to the request that decided the message."""

    status: int  # HTTP status or SMTP reply code; 0 when the transport itself stopped
    code: str = ""  # Graph's error.code, or "SMTP 550"
    message: str = ""  # the service's own text (at most 500 characters)
    request_id: str = ""
    retry_after: float | None = None  # seconds the service asked us to wait
    duration: float = 0.0  # seconds the request (or the whole submission) took


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an answer means for the message."""

    delivered: bool = False
    permanent: bool = False  # hold it (and notify the sender)
    # A set-up problem (the app's permissions, a token the service refuses): retried slowly,
    # held without a notification when the queue lifetime ends; another route may work.
    configuration: bool = False
    explanation: str = ""  # for an administrator: what happened and what to change


class Refusal(NamedTuple):
    """One recipient an SMTP server refused while it took the message for the others."""

    recipient: str
    code: int  # 4xx: try this recipient again later; 5xx: it failed
    text: str

    @property
    def reply(self) -> str:
        """The server's reply, as it said it."""
        return f"{self.code} {self.text}".strip()

    @property
    def temporary(self) -> bool:
        """True for a 4xx refusal."""
        return 400 <= self.code < 500


@dataclass(frozen=True, slots=True)
class Submission:
    """How one submission ended."""

    answer: Answer
    verdict: Verdict
    form: str  # how it went: "mime", "json", "large" (Graph) or "smtp"
    refused: tuple[Refusal, ...] = ()


class Transport(Protocol):
    """Sends messages for the delivery engine."""

    async def send(
        self, route: Route, message: Buffer, recipients: Sequence[str], *, trace: bytes = b""
    ) -> Submission:
        """Deliver `message` (in memory, or read from the queue as needed) to `recipients`
        through `route`; `TransportError` when no answer decides it. `trace` (a Received
        field) goes before the header section wherever the message goes as MIME."""
        ...
