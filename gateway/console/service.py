"""What the console knows and does, as JSON-able data: the one place the pages and the JSON
API get it from.

Reading goes through the queue interface (`Queue`: the file spool or the cluster's database
alike) and the gateway's health facts (`Status`); changes go through `QueueAdmin`, the same
operations and checks as `smtp-graph-gateway queue …`, with the delivery engine told at once.
Every change and every download is an audit line naming who did it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from gateway.addresses import parse_mailbox
from gateway.console.auth import Principal
from gateway.console.filters import Filter, select
from gateway.console.index import EnvelopeIndex
from gateway.console.summary import summarize
from gateway.errors import AdminError, CorruptRecord, SpoolError
from gateway.observability.activity import Activity
from gateway.observability.devices import DeviceRegistry
from gateway.observability.status import Status
from gateway.queue.admin import QueueAdmin
from gateway.queue.base import Queue
from gateway.queue.model import STATE_WORDS, Exported, Listed, is_queue_id, queued_at
from gateway.routing import Router

log = structlog.get_logger("gateway.console")

OPERATIONS = ("retry", "hold", "release", "delete")
MAX_BULK = 1000
_MAX_SUMMARY_BYTES = 32 * 1024 * 1024  # headers and attachment sizes: read at most this much
_CHUNK = 1024 * 1024


class NotFound(LookupError):
    """No such message (any more)."""


class Forbidden(PermissionError):
    """The principal's role does not allow this."""


class ConsoleService:
    """Overview, listing, one message, raw download, actions."""

    def __init__(
        self,
        queue: Queue,
        admin: QueueAdmin,
        status: Status,
        router: Callable[[], Router],
        *,
        clock: Callable[[], float] = time.time,
        devices: DeviceRegistry | None = None,
        activity: Activity | None = None,
        ended: Callable[[str], dict[str, Any] | None] = lambda _queue_id: None,
    ) -> None:
        self._ended = ended
        self._devices = devices
        self._activity = activity or Activity()
        self._index = EnvelopeIndex(queue)
        self._queue = queue
        self._admin = admin
        self._status = status
        self._router = router
        self._clock = clock

    # -- reading -------------------------------------------------------------------------------

    async def overview(self) -> dict[str, Any]:
        """Ready or not (and why), per tenant health, queue counts and the oldest's age."""
        checks = self._status.readiness()
        problems = self._status.problems()
        try:
            census = await self._queue.census()
        except (SpoolError, OSError) as error:
            census = {"error": str(error)}
        states = census.get("states") if isinstance(census.get("states"), dict) else {}
        assert isinstance(states, dict)
        today = datetime.datetime.now(datetime.UTC).date()
        return {
            "ready": all(checks.values()),
            "checks": checks,
            "problems": {name: why for name, why in problems.items() if not checks.get(name)},
            "queue": {
                "backend": self._queue.name,
                "states": {STATE_WORDS.get(k, k): v for k, v in states.items()},
                "oldest_age": census.get("oldest_age", 0.0),
                "error": census.get("error"),
            },
            "tenants": self._status.tenant_health(today),
            "silent_devices": self._devices.silent_count() if self._devices else 0,
            "activity": self._activity.charts(),
        }

    def devices(self) -> dict[str, Any]:
        """Every device that sent or was refused, the silent ones first."""
        listed = self._devices.listing() if self._devices is not None else []
        return {"devices": listed, "silent": sum(1 for device in listed if device["silent"])}

    def tenant_of(self, mail_from: str) -> str:
        """The tenant that routes a sender ("" when none does)."""
        address = parse_mailbox(mail_from)
        if address is None:
            return ""
        tenants = self._router().tenants_for(address)
        return tenants[0].name if tenants else ""

    async def messages(self, where: Filter) -> dict[str, Any]:
        """One page of the queue, filtered, newest first, with the total that matched.

        The queue's IDs are time-ordered: they give the order and each message's age without
        reading anything. Only a filter by sender, recipient, device or tenant needs envelopes
        (from `EnvelopeIndex`, which reads each one once); the page's rows are read fresh."""
        now = self._clock()
        ids = await self._queue.ids(where.state)
        known = None
        if where.sender or where.recipient or where.tenant or where.device:
            known = await self._index.envelopes(ids)
        # A deep queue is 100,000 IDs to sift: off the event loop, which serves SMTP too.
        found = await asyncio.to_thread(select, ids, where, now, known, self.tenant_of)
        start = (where.page - 1) * where.per_page
        rows = []
        for queue_id in found[start : start + where.per_page]:
            item = await self._listed(queue_id)
            if item is not None:
                rows.append(self._row(item, now, self.tenant_of(item.mail_from)))
        return {
            "total": len(found),
            "page": where.page,
            "per_page": where.per_page,
            "messages": rows,
        }

    async def _listed(self, queue_id: str) -> Listed | None:
        """One message as `listing` would give it, from `show` (None: it has left)."""
        info = await self._queue.show(queue_id)
        if info is None:
            return None
        attempts = info.get("attempts") or []
        reason = str(attempts[-1].get("reason", "")) if attempts else ""
        hold = info.get("hold")
        if isinstance(hold, dict) and hold.get("reason"):
            reason = str(hold["reason"])
        envelope = info.get("envelope")
        if envelope is None:
            born = queued_at(queue_id) or 0.0
            error = str(info.get("error", "unreadable"))
            return Listed(queue_id, info["state"], 0, born, "", (), None, 0, error)
        return Listed(
            queue_id=queue_id,
            state=info["state"],
            size=envelope.size,
            received_at=envelope.received_at,
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            next_attempt=info.get("next_attempt") if info["state"] == "queue" else None,
            attempts=len(attempts),
            reason=reason,
            peer=envelope.peer,
            user=envelope.user,
        )

    def _row(self, item: Listed, now: float, tenant: str) -> dict[str, Any]:
        row = dataclasses.asdict(item)
        row["rcpt_tos"] = list(item.rcpt_tos)
        row["state"] = STATE_WORDS.get(item.state, item.state)
        row["age"] = max(0.0, now - item.received_at)
        row["tenant"] = tenant
        return row

    async def message(self, queue_id: str) -> dict[str, Any]:
        """Envelope, state, attempts, hold reason, main headers and attachments (no body)."""
        last = self._ended(queue_id)
        if last is not None and last["result"] == "delivered":
            # Delivered by this gateway a moment ago (its file may still be on its way out).
            return {
                "queue_id": queue_id,
                "state": "delivered",
                "envelope": None,
                "attempts": [],
                "hold": None,
                "last_attempt": last,
                "summary": None,
            }
        info = await self._queue.show(queue_id) if is_queue_id(queue_id) else None
        if info is None:
            raise NotFound(queue_id)
        envelope = info.get("envelope")
        result: dict[str, Any] = {
            "queue_id": queue_id,
            "state": STATE_WORDS.get(info["state"], info["state"]),
            "envelope": None,
            "attempts": info.get("attempts", []),
            "hold": info.get("hold"),
            "next_attempt": info.get("next_attempt"),
            "leased_by": info.get("leased_by"),
            "error": info.get("error"),
            "summary": None,
        }
        if envelope is not None:
            result["envelope"] = {
                **dataclasses.asdict(envelope),
                "rcpt_tos": list(envelope.rcpt_tos),
            }
            result["tenant"] = self.tenant_of(envelope.mail_from)
        head = await self._head(queue_id)
        if head is not None:
            raw, whole = head
            summary = await asyncio.to_thread(summarize, raw)
            summary["partial"] = not whole  # attachments past the first part read are not listed
            if envelope is not None:
                summary["size"] = envelope.size
            result["summary"] = summary
        return result

    async def _export(self, queue_id: str) -> Exported | None:
        """The queued or held message whole (None when it is not queued or held)."""
        if not is_queue_id(queue_id):
            return None
        try:
            return await self._queue.export(queue_id)
        except CorruptRecord:
            return None

    async def _head(self, queue_id: str) -> tuple[bytes, bool] | None:
        """The message's first bytes (at most `_MAX_SUMMARY_BYTES`) and whether that is all."""
        exported = await self._export(queue_id)
        if exported is None:
            return None
        try:
            body = exported.message
            end = min(_MAX_SUMMARY_BYTES, len(body))
            return await asyncio.to_thread(body.__getitem__, slice(0, end)), end == len(body)
        finally:
            exported.close()

    async def raw(
        self, principal: Principal, queue_id: str, address: str
    ) -> tuple[int, AsyncIterator[bytes]]:
        """The raw message for an operator to download, as its size and its bytes in pieces
        (a 150 MB scan is never whole in memory); the download is logged."""
        if not principal.may_act:
            raise Forbidden("only operators may download messages")
        exported = await self._export(queue_id)
        if exported is None:
            raise NotFound(queue_id)
        size = len(exported.message)
        log.info(
            "console_download", user=principal.who, queue_id=queue_id, size=size, client=address
        )

        async def pieces() -> AsyncIterator[bytes]:
            try:
                for start in range(0, size, _CHUNK):
                    end = min(size, start + _CHUNK)
                    yield await asyncio.to_thread(exported.message.__getitem__, slice(start, end))
            finally:
                exported.close()

        return size, pieces()

    # -- acting --------------------------------------------------------------------------------

    async def act(
        self, principal: Principal, operation: str, queue_ids: list[str], address: str
    ) -> dict[str, Any]:
        """Run one queue operation on each message; what was done and what was refused."""
        if not principal.may_act:
            log.warning(
                "console_refused",
                user=principal.who,
                action=operation,
                reason="viewer role",
                client=address,
            )
            raise Forbidden("your role (viewer) may look but not change the queue")
        if operation not in OPERATIONS:
            raise ValueError(f"no operation {operation!r}: use {', '.join(OPERATIONS)}")
        if not queue_ids or len(queue_ids) > MAX_BULK:
            raise ValueError(f"name from 1 to {MAX_BULK} messages")
        done: list[str] = []
        refused: dict[str, str] = {}
        for queue_id in dict.fromkeys(queue_ids):
            if not is_queue_id(queue_id):
                refused[queue_id] = "not a queue ID"
                continue
            try:
                await self._admin.run(operation, queue_id)
            except AdminError as error:
                refused[queue_id] = str(error)
            else:
                done.append(queue_id)
        log.info(
            "console_action",
            user=principal.who,
            action=operation,
            done=done,
            refused=refused or None,
            client=address,
        )
        return {"operation": operation, "done": done, "refused": refused}
