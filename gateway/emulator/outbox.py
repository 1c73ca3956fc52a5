"""The emulator's record of accepted mail: in memory for tests, on disk for people.

Every message Graph would have accepted (a `sendMail` answered 202 or a draft sent) or the SMTP
listener took (250 after DATA) becomes a `DeliveredMessage` and two files in the outbox
directory: `{seq:06d}-{id}.eml`, the message as it would travel (the submitted MIME bytes, or a
rendering of the JSON), and `{seq:06d}-{id}.json` with everything else (mailbox, recipients, app,
attachments' metadata and the JSON message without its base64 contents).

In memory the outbox keeps the last `keep` messages (all when `keep` is None, as tests want);
the files stay for every message. A long-running emulator (`demo`, `smtp-graph-gateway emulator`)
keeps a bounded number, so a scanner pointed at it for a week does not fill its memory.

Modes: "json" and "mime" (sendMail), "draft" (a sent draft), "smtp" (SMTP submission). For
"smtp" the `envelope` holds MAIL FROM and the RCPT TO list exactly as given, and `recipients`
sorts the envelope recipients by the message's headers: those in To go to "to", those in Cc to
"cc", and every other envelope recipient to "bcc" (header addresses that were not envelope
recipients are not delivered, so they are not listed).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from gateway.emulator.messages import DeliveredAttachment

Mode = Literal["mime", "json", "draft", "smtp"]
_WRITTEN = re.compile(r"\d{6,}-[^/]+\.(?:eml|json)")  # the names `Outbox._write` gives


class Envelope(NamedTuple):
    """The SMTP envelope of a message taken by the SMTP listener."""

    mail_from: str
    rcpt_to: tuple[str, ...]


@dataclass(frozen=True)
class DeliveredMessage:
    id: str
    mailbox: str
    mode: Mode
    mime: bytes = field(repr=False)
    recipients: dict[str, list[str]]
    message_json: dict[str, Any] | None = field(repr=False)
    attachments: list[DeliveredAttachment] = field(repr=False)
    client_id: str
    tenant_id: str
    save_to_sent_items: bool
    received_at: dt.datetime
    subject: str | None = None
    seq: int = 0
    envelope: Envelope | None = None  # SMTP submissions only

    @property
    def file_stem(self) -> str:
        return f"{self.seq:06d}-{self.id}"

    def metadata(self) -> dict[str, Any]:
        """Everything but the raw bytes, as JSON-ready data (the outbox's .json file)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "mailbox": self.mailbox,
            "mode": self.mode,
            "subject": self.subject,
            "recipients": self.recipients,
            "client_id": self.client_id,
            "tenant_id": self.tenant_id,
            "save_to_sent_items": self.save_to_sent_items,
            "received_at": self.received_at.isoformat(),
            "size": len(self.mime),
            "eml_file": f"{self.file_stem}.eml",
            "attachments": [
                {
                    "name": a.name,
                    "content_type": a.content_type,
                    "size": len(a.content),
                    "sha256": hashlib.sha256(a.content).hexdigest(),
                    "is_inline": a.is_inline,
                    "content_id": a.content_id,
                }
                for a in self.attachments
            ],
            "message_json": _without_contents(self.message_json),
            "envelope": (
                {"mail_from": self.envelope.mail_from, "rcpt_to": list(self.envelope.rcpt_to)}
                if self.envelope is not None
                else None
            ),
        }


def _without_contents(message: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of the JSON message with each attachment's contentBytes left out."""
    if message is None:
        return None
    slim = copy.deepcopy(message)
    for attachment in slim.get("attachments") or []:
        if isinstance(attachment, dict) and "contentBytes" in attachment:
            attachment["contentBytes"] = None
            attachment["contentBytesOmitted"] = True
    return slim


class Outbox:
    """Delivered messages in delivery order (the last `keep` of them), mirrored to
    `directory` (all of them)."""

    def __init__(self, directory: Path, keep: int | None = None) -> None:
        self.directory = directory
        self._messages: collections.deque[DeliveredMessage] = collections.deque(maxlen=keep)
        self._seq = 0  # numbers handed out (a delivery gets its number before it is written)
        self._done = 0  # deliveries written and kept: what waiters count
        self._arrived = asyncio.Event()  # set at every delivery (waiters clear it)

    async def deliver(self, message: DeliveredMessage) -> DeliveredMessage:
        self._seq += 1
        numbered = replace(message, seq=self._seq)
        await asyncio.to_thread(self._write, numbered)
        self._messages.append(numbered)
        self._done += 1
        self._arrived.set()
        return numbered

    @property
    def count(self) -> int:
        """Messages delivered since the start (or the last `clear`), kept or not."""
        return self._done

    async def wait_for(self, count: int, timeout: float) -> list[DeliveredMessage]:
        """Wait (on the deliveries themselves, not a timer) until `count` messages have been
        delivered in all (written and kept, not merely numbered: deliveries run concurrently);
        the kept messages. TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while self._done < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages()

    def _write(self, message: DeliveredMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{message.file_stem}.eml").write_bytes(message.mime)
        metadata = json.dumps(message.metadata(), indent=2, ensure_ascii=False) + "\n"
        (self.directory / f"{message.file_stem}.json").write_bytes(
            metadata.encode("utf-8", "backslashreplace")
        )

    def messages(self) -> list[DeliveredMessage]:
        return list(self._messages)

    def get(self, message_id: str) -> DeliveredMessage | None:
        return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        """Forget every delivery and remove the files this outbox wrote (also those of
        messages no longer kept in memory)."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if _WRITTEN.fullmatch(path.name):
                    path.unlink(missing_ok=True)
        self._messages.clear()
        self._seq = self._done = 0
