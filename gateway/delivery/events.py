"""What delivery tells its observers (metrics, the console, tests): one typed event per ending
of an attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.transport import Answer


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """The result of one attempt."""

    queue_id: str
    result: str  # "delivered" | "deferred" | "held"
    status: int | None = None  # the service's status (HTTP, or the SMTP reply code)
    code: str = ""  # its error code (Graph's error.code, "SMTP 550")
    reason: str = ""
    mailbox: str = ""
    tenant: str = ""
    duration: float | None = None  # seconds the request took, when one was answered

    @classmethod
    def of(
        cls,
        queue_id: str,
        result: str,
        answer: Answer | None = None,
        *,
        reason: str = "",
        mailbox: str = "",
        tenant: str = "",
    ) -> DeliveryEvent:
        """The event for an attempt that ended with `answer` (None: no answer decided it)."""
        if answer is None:
            return cls(queue_id, result, reason=reason, mailbox=mailbox, tenant=tenant)
        return cls(
            queue_id,
            result,
            answer.status if answer.status else None,
            answer.code,
            reason,
            mailbox,
            tenant,
            answer.duration if answer.status else None,
        )


Observer = Callable[[DeliveryEvent], None]
