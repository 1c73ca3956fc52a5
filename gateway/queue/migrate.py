"""Moving a queue from one backend to another (`smtp-graph-gateway spool migrate`): every queued
and held message, with its attempt history, its next attempt and its hold reason, under the
queue ID its client was given.

Each message is first kept durably by the new queue (`adopt`: fsynced, or committed), and only
then removed from the old one. A run that is interrupted (killed, a disk or a database gone)
leaves each message in the old queue, in the new one, or in both; run again, it finds those in
both already adopted and only removes them from the old queue. So no message is lost and none
ends up queued twice. Messages being delivered, and corrupt ones, stay where they are and are
reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from gateway.errors import CorruptRecord, SpoolError
from gateway.queue.base import Queue
from gateway.queue.model import Envelope

log = structlog.get_logger("gateway.queue")


@dataclass
class Moved:
    """What a migration did."""

    moved: list[str] = field(default_factory=list)  # adopted by the new queue and removed
    already: list[str] = field(default_factory=list)  # found in both: removed from the old one
    left: dict[str, str] = field(default_factory=dict)  # queue ID -> why it stayed behind

    @property
    def complete(self) -> bool:
        return not self.left


async def migrate(
    source: Queue,
    target: Queue,
    *,
    mailbox_of: Callable[[Envelope], str] = lambda _envelope: "",
) -> Moved:
    """Move every queued and held message from `source` to `target` (both open and taken by
    this process). `mailbox_of` names the mailbox a message will be sent as (a cluster keeps
    its per-mailbox limits by it). `SpoolError` when either queue fails: what moved so far
    stays moved, the rest is still in `source`."""
    result = Moved()
    for entry in await source.entries():
        queue_id = entry.queue_id
        if entry.state not in ("queue", "hold"):
            result.left[queue_id] = (
                "being delivered (run again when its delivery has ended)"
                if entry.state == "active"
                else f"{entry.state}: inspect it with `queue show`, then delete it or keep it"
            )
            continue
        try:
            exported = await source.export(queue_id)
        except CorruptRecord as error:
            result.left[queue_id] = f"cannot be read: {error}"
            continue
        if exported is None:  # it left the queue meanwhile
            continue
        try:
            mailbox = exported.mailbox or mailbox_of(exported.envelope)
            adopted = await target.adopt(replace(exported, mailbox=mailbox))
        finally:
            exported.close()
        if not await source.delete(queue_id):
            raise SpoolError(f"{queue_id} was kept by the new queue but not removed from the old")
        (result.moved if adopted else result.already).append(queue_id)
        log.info(
            "message_migrated",
            queue_id=queue_id,
            state=exported.state,
            already=not adopted,
            source=source.name,
            target=target.name,
        )
    return result
