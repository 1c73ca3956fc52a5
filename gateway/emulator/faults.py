"""Fault injection: make the emulated Graph slow, throttled, unavailable, or refuse some mailboxes.

`Faults` is the frozen description (from YAML/JSON, CLI flags or `PUT /_emulator/faults`);
`FaultState` is one activation of it, holding the countdowns, the outage deadline and a seeded
random generator so a run with the same seed and the same request order injects the same faults.
Every injected answer uses the status, `error.code` and message the real service uses for it,
because the gateway classifies Graph answers by code.

`header_refusals` answers the next N JSON sendMail requests that carry internetMessageHeaders
with 400 InvalidInternetMessageHeader, as Graph does for headers it will not take.

For the SMTP listener: `smtp_fail_count` transactions in a row are answered `smtp_fail_reply`
(a 4xx or 5xx SMTP reply line) at `smtp_fail_at`: "mail" (MAIL FROM), "rcpt" (every RCPT TO of
the transaction) or "data" (after the final dot, instead of taking the message).
`smtp_recipient_replies` refuses single recipients at RCPT TO, every time they are named, with
their own reply line (as Exchange does for a full or unknown mailbox) while the others are taken.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# code -> (HTTP status, Graph's message, applies to every request (True) or only to sends (False))
MAILBOX_ERRORS: Mapping[str, tuple[int, str, bool]] = {
    # ApplicationAccessPolicy / RBAC for Applications scope excludes the mailbox.
    "ErrorAccessDenied": (403, "Access to OData is disabled.", True),
    # No Exchange Online mailbox/licence, soft-deleted, or hosted on-premises.
    "MailboxNotEnabledForRESTAPI": (
        404,
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        True,
    ),
    "ErrorSendAsDenied": (
        403,
        "The user account which was used to submit this request does not have the right to send "
        "mail on behalf of the specified sending account., Cannot submit message.",
        False,
    ),
    "ErrorInvalidRecipients": (
        400,
        "At least one recipient is not valid., Recipient is not resolved. All recipients must be "
        "resolved before a message can be submitted.",
        False,
    ),
    "ErrorMessageSizeExceeded": (400, "The message exceeds the maximum supported size.", False),
}

THROTTLE_CODE = "ApplicationThrottled"
THROTTLE_MESSAGE = "Application is over its MailboxConcurrency limit."
UNAVAILABLE_CODE = "ServiceUnavailable"
UNAVAILABLE_MESSAGE = "The service is temporarily unavailable. Please retry later."
SMTP_STAGES = ("mail", "rcpt", "data")
DEFAULT_SMTP_FAIL_REPLY = "451 4.3.0 Temporary server error. Please try again later."
_SMTP_REPLY = re.compile(r"[45][0-9][0-9]( [^\r\n]*)?")


@dataclass(frozen=True)
class Faults:
    """What to break. Rates are probabilities per Graph request; counts apply to the next N."""

    latency_ms: int = 0
    throttle_rate: float = 0.0
    throttle_count: int = 0
    throttle_retry_after: int = 1
    unavailable_rate: float = 0.0
    unavailable_count: int = 0
    unavailable_retry_after: int | None = None
    outage_seconds: float = 0.0
    mailbox_errors: Mapping[str, str] = field(default_factory=dict)
    upload_fail_chunks: int = 0
    header_refusals: int = 0  # the next N JSON messages with internetMessageHeaders: 400
    concurrency_limit: int = 0  # > 0: answer 429 above this many in-flight requests per mailbox
    smtp_fail_count: int = 0  # SMTP listener: the next N transactions fail …
    smtp_fail_at: str = "data"  # … at "mail", "rcpt" or "data" …
    smtp_fail_reply: str = DEFAULT_SMTP_FAIL_REPLY  # … with this reply line
    smtp_recipient_replies: Mapping[str, str] = field(default_factory=dict)  # address -> reply
    seed: int = 0

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid faults: " + "; ".join(problems))
        for name in ("mailbox_errors", "smtp_recipient_replies"):
            mapping: Mapping[str, str] = getattr(self, name)
            lowered = {address.strip().lower(): value for address, value in mapping.items()}
            object.__setattr__(self, name, lowered)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Faults:
        """Build from parsed YAML/JSON; unknown keys and wrong types are errors."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _coerce(name, value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["mailbox_errors"] = dict(self.mailbox_errors)
        result["smtp_recipient_replies"] = dict(self.smtp_recipient_replies)
        return result

    def replace(self, **changes: Any) -> Faults:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, value: Any) -> Any:
    if name in ("mailbox_errors", "smtp_recipient_replies"):
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            what = "error codes" if name == "mailbox_errors" else "SMTP reply lines"
            raise TypeError(f"{name} must map mailbox addresses to {what}")
        return dict(value)
    if name in ("throttle_rate", "unavailable_rate", "outage_seconds"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number")
        return float(value)
    if name == "unavailable_retry_after" and value is None:
        return None
    if name in ("smtp_fail_at", "smtp_fail_reply"):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer")
    return value


def _problems(faults: Faults) -> list[str]:
    problems = []
    for name in ("throttle_rate", "unavailable_rate"):
        rate = getattr(faults, name)
        if not 0.0 <= rate <= 1.0:
            problems.append(f"{name} must be between 0 and 1, not {rate}")
    for name in (
        "latency_ms",
        "throttle_count",
        "throttle_retry_after",
        "unavailable_count",
        "upload_fail_chunks",
        "header_refusals",
        "concurrency_limit",
        "smtp_fail_count",
    ):
        if getattr(faults, name) < 0:
            problems.append(f"{name} must not be negative")
    if faults.smtp_fail_at not in SMTP_STAGES:
        problems.append(f"smtp_fail_at must be one of {', '.join(SMTP_STAGES)}")
    if not _SMTP_REPLY.fullmatch(faults.smtp_fail_reply):
        problems.append(
            f"smtp_fail_reply must be a 4xx or 5xx reply line such as "
            f"'{DEFAULT_SMTP_FAIL_REPLY}', not {faults.smtp_fail_reply!r}"
        )
    for address, reply in faults.smtp_recipient_replies.items():
        if not _SMTP_REPLY.fullmatch(reply):
            problems.append(
                f"smtp_recipient_replies[{address!r}] must be a 4xx or 5xx reply line such as "
                f"'550 5.1.1 User unknown', not {reply!r}"
            )
    if faults.outage_seconds < 0:
        problems.append("outage_seconds must not be negative")
    if faults.unavailable_retry_after is not None and faults.unavailable_retry_after < 0:
        problems.append("unavailable_retry_after must not be negative")
    for address, code in faults.mailbox_errors.items():
        if code not in MAILBOX_ERRORS:
            problems.append(
                f"mailbox_errors[{address!r}]: unknown code {code!r} "
                f"(one of {', '.join(MAILBOX_ERRORS)})"
            )
    return problems


class InjectedError(NamedTuple):
    """An answer to give instead of doing the work."""

    status: int
    code: str
    message: str
    retry_after: int | None = None


class FaultState:
    """One activation of `Faults`: countdowns, outage deadline and the seeded generator."""

    def __init__(self, faults: Faults, *, now: float) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)  # noqa: S311 - reproducible, not secret
        self._throttle_left = faults.throttle_count
        self._unavailable_left = faults.unavailable_count
        self._upload_failures_left = faults.upload_fail_chunks
        self._header_refusals_left = faults.header_refusals
        self._smtp_failures_left = faults.smtp_fail_count
        self._outage_until = now + faults.outage_seconds

    def request_fault(self, *, now: float, in_flight: int) -> InjectedError | None:
        """Decide whether this Graph request fails; `in_flight` counts it for its mailbox."""
        f = self.faults
        unavailable = InjectedError(
            503, UNAVAILABLE_CODE, UNAVAILABLE_MESSAGE, f.unavailable_retry_after
        )
        throttled = InjectedError(429, THROTTLE_CODE, THROTTLE_MESSAGE, f.throttle_retry_after)
        if now < self._outage_until:
            return unavailable
        if self._unavailable_left > 0:
            self._unavailable_left -= 1
            return unavailable
        if self._throttle_left > 0:
            self._throttle_left -= 1
            return throttled
        if f.concurrency_limit and in_flight > f.concurrency_limit:
            return throttled
        if f.unavailable_rate and self._random.random() < f.unavailable_rate:
            return unavailable
        if f.throttle_rate and self._random.random() < f.throttle_rate:
            return throttled
        return None

    def take_upload_failure(self) -> bool:
        """True if this upload PUT must fail (and consume one of `upload_fail_chunks`)."""
        if self._upload_failures_left > 0:
            self._upload_failures_left -= 1
            return True
        return False

    def take_header_refusal(self) -> bool:
        """True if this JSON message's custom headers must be refused (consumes one)."""
        if self._header_refusals_left > 0:
            self._header_refusals_left -= 1
            return True
        return False

    def take_smtp_failure(self, stage: str) -> str | None:
        """The reply for an SMTP transaction reaching `stage`, if it must fail (consumes one)."""
        if stage == self.faults.smtp_fail_at and self._smtp_failures_left > 0:
            self._smtp_failures_left -= 1
            return self.faults.smtp_fail_reply
        return None

    def smtp_recipient_reply(self, address: str) -> str | None:
        """The refusal for this recipient at RCPT TO, if one is configured."""
        return self.faults.smtp_recipient_replies.get(address.strip().lower())

    def mailbox_error(self, mailbox: str | None, *, sending: bool) -> InjectedError | None:
        """The configured refusal for `mailbox`, if it applies to this kind of request."""
        if mailbox is None:
            return None
        code = self.faults.mailbox_errors.get(mailbox.lower())
        if code is None:
            return None
        status, message, every_request = MAILBOX_ERRORS[code]
        if every_request or sending:
            return InjectedError(status, code, message)
        return None

    def to_json(self, *, now: float) -> dict[str, Any]:
        return {
            "faults": self.faults.to_json(),
            "remaining": {
                "throttle_count": self._throttle_left,
                "unavailable_count": self._unavailable_left,
                "upload_fail_chunks": self._upload_failures_left,
                "header_refusals": self._header_refusals_left,
                "smtp_fail_count": self._smtp_failures_left,
                "outage_seconds": max(0.0, self._outage_until - now),
            },
        }
