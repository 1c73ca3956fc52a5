"""Send a test message from the console: from a sender mailbox the operator chooses, to a
recipient, queued and delivered like any message (the queue, the router, the delivery
engine, Graph), so its delivery can be watched on its message page.

Delivery events are remembered for the last messages, so a message page can still say what
became of a message after it has left the queue.
"""

from __future__ import annotations

import email.utils
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from gateway.addresses import parse_mailbox
from gateway.console.auth import Principal
from gateway.delivery.events import DeliveryEvent
from gateway.queue.base import Queue
from gateway.queue.model import Arrival
from gateway.routing import Router

log = structlog.get_logger("gateway.console")
_REMEMBERED = 2000

Submit = Callable[[str, float, str, int], None]


class TestMailRefused(ValueError):
    """Why the test message cannot be sent (said to the operator)."""


def test_message(sender: str, recipient: str, who: str, now: float) -> bytes:
    """A short plain-text message saying who sent it from where."""
    lines = [
        f"From: <{sender}>",
        f"To: <{recipient}>",
        "Subject: smtp-graph-gateway test message",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: {email.utils.make_msgid(domain='smtp-graph-gateway.invalid')}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"A test message sent by {who} from the smtp-graph-gateway console.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


class TestMail:
    """Queues test messages and remembers how recent deliveries ended."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(
        self,
        queue: Queue,
        router: Callable[[], Router],
        submit: Submit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._router = router
        self._submit = submit
        self._clock = clock
        self._ended: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def send(self, principal: Principal, sender: str, recipient: str, address: str) -> str:
        """Queue one test message; its queue ID. `TestMailRefused` says why not."""
        from_address, to_address = parse_mailbox(sender), parse_mailbox(recipient)
        if from_address is None:
            raise TestMailRefused(f"not a mailbox: {sender!r}")
        if to_address is None:
            raise TestMailRefused(f"not a mailbox: {recipient!r}")
        route = self._router().route(from_address)
        if route is None:
            raise TestMailRefused(
                f"no tenant sends for {from_address}: add its domain to a tenant's domains"
            )
        message = test_message(str(from_address), str(to_address), principal.who, self._clock())
        queue_id = await self._queue.store(
            Arrival(
                mail_from=str(from_address),
                rcpt_tos=(str(to_address),),
                client="console",
                peer=address,
                listener="console",
                user=principal.who,
                mailbox=route.mailbox,
            ),
            message,
        )
        self._submit(queue_id, 0.0, route.mailbox, len(message))
        log.info(
            "console_test_message",
            user=principal.who,
            queue_id=queue_id,
            sender=str(from_address),
            recipient=str(to_address),
            tenant=route.tenant.name,
            client=address,
        )
        return queue_id

    def observe(self, event: DeliveryEvent) -> None:
        """A delivery attempt ended (an engine observer)."""
        self._ended[event.queue_id] = {
            "at": self._clock(),
            "result": event.result,
            "status": event.status,
            "code": event.code,
            "reason": event.reason,
            "tenant": event.tenant,
            "mailbox": event.mailbox,
            "duration_ms": round(event.duration * 1000) if event.duration is not None else None,
        }
        self._ended.move_to_end(event.queue_id)
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)

    def ended(self, queue_id: str) -> dict[str, Any] | None:
        """How the last attempt at a recent message ended, if this gateway made it."""
        return self._ended.get(queue_id)
