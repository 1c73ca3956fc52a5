"""What administrators and metrics ask of the spool: where a message is, a listing, the whole
story of one message, retry/release, delete, and counts — the spool's read side and its
administrative changes, beside store.py's delivery path. Blocking file I/O."""

from __future__ import annotations

import os
import re
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from gateway.errors import CorruptRecord
from gateway.queue.model import (
    QUEUE_ID_PATTERN,
    Entry,
    Exported,
    Listed,
    is_queue_id,
    queued_at,
)
from gateway.queue.model import QUEUE_STATES as STATES
from gateway.spool.files import open_body, read_envelope, read_json

SUFFIX = ".msg"
_MESSAGE_FILE = re.compile(f"({QUEUE_ID_PATTERN}){re.escape(SUFFIX)}")  # ID.msg


class SpoolInventory(ABC):
    """The read side and the administrative changes of a spool directory."""

    # Per state folder: (its mtime in ns, its message files) as last listed (see `_names`).
    listed: dict[str, tuple[int, list[tuple[str, str]]]]

    @abstractmethod
    def dir(self, state: str) -> Path:
        """The directory of a state (or of tmp/, meta/)."""

    @abstractmethod
    def path(self, state: str, queue_id: str) -> Path:
        """Where a message is in a state."""

    @abstractmethod
    def attempts(self, queue_id: str) -> list[dict[str, Any]]:
        """A message's attempt history."""

    @abstractmethod
    def _scan_with_times(self, state: str) -> list[tuple[str, tuple[int, float]]]:
        """(queue ID, (size, mtime)) of the records in a state directory."""

    def _meta(self, queue_id: str) -> Path:
        return self.dir("meta") / f"{queue_id}.json"

    def state_of(self, queue_id: str) -> str | None:
        """Which state a message is in, or None if the spool does not have it (or `queue_id`
        is not a queue ID: administrators type them, and they become file names)."""
        if not is_queue_id(queue_id):
            return None
        for state in STATES:
            if os.path.lexists(self.path(state, queue_id)):
                return state
        return None

    def entries(self, state: str | None = None) -> list[Entry]:
        """Every message (optionally of one state), without reading message bodies."""
        return [
            Entry(queue_id, name, mtime, size)
            for name in ([state] if state else STATES)
            for queue_id, (size, mtime) in self._scan_with_times(name)
        ]

    def ids(self, state: str | None = None) -> list[tuple[str, str]]:
        """(queue ID, state) of every message file, oldest first, from the directories' names
        alone (no stat, nothing opened; what is not a regular `ID.msg` file is left out here
        and quarantined by the scans that read)."""
        found: list[tuple[str, str]] = []
        for name in [state] if state else STATES:
            found.extend(self._names(name))
        found.sort()
        return found

    def _names(self, state: str) -> list[tuple[str, str]]:
        """The message files of one state's folder. A folder that has not changed since a
        listing was made is not read again (100,000 held messages take 0.2 s to list): its
        mtime changes with every file that comes or goes, and a listing is kept only when
        that mtime was over a second old as it was made, so a change in the same clock tick
        cannot hide behind it."""
        folder = self.dir(state)
        stamp = os.stat(folder).st_mtime_ns
        kept = self.listed.get(state)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        match = _MESSAGE_FILE.fullmatch  # one regular expression per name: 100,000 of them
        with os.scandir(folder) as entries:
            names = [
                (named.group(1), state)
                for entry in entries
                if (named := match(entry.name)) and entry.is_file(follow_symlinks=False)
            ]
        if time.time_ns() - stamp > 1_000_000_000:
            self.listed[state] = (stamp, names)
        return names

    def listing(self, state: str | None = None) -> list[Listed]:
        """Every message (of one state) with its envelope, last attempt and hold reason, for
        `queue list`. A record that cannot be read is listed with why."""
        found = []
        for entry in self.entries(state):
            path = self.path(entry.state, entry.queue_id)
            attempts = self.attempts(entry.queue_id)
            reason = str(attempts[-1].get("reason", "")) if attempts else ""
            if entry.state == "hold":
                note = read_json(self.dir("hold") / f"{entry.queue_id}.reason.json")
                if isinstance(note, dict) and note.get("reason"):
                    reason = str(note["reason"])
            try:
                envelope = read_envelope(path, entry.queue_id)
            except (OSError, CorruptRecord) as error:
                if isinstance(error, FileNotFoundError):
                    continue  # it moved on while we looked
                found.append(
                    Listed(entry.queue_id, entry.state, 0, 0.0, "", (), None, 0, str(error))
                )
                continue
            due = entry.next_attempt if entry.state == "queue" else None
            found.append(
                Listed(
                    entry.queue_id,
                    entry.state,
                    envelope.size,
                    envelope.received_at,
                    envelope.mail_from,
                    envelope.rcpt_tos,
                    due,
                    len(attempts),
                    reason,
                    envelope.peer,
                    envelope.user,
                )
            )
        return found

    def export(self, queue_id: str) -> Exported | None:
        """A queued or held message whole, its bytes left in the file (close it)."""
        state = self.state_of(queue_id)
        if state not in ("queue", "hold"):
            return None
        path = self.path(state, queue_id)
        try:
            next_attempt = path.stat().st_mtime
            envelope, body = open_body(path, queue_id)
        except FileNotFoundError:
            return None
        note = read_json(self.dir("hold") / f"{queue_id}.reason.json") if state == "hold" else None
        return Exported(
            envelope,
            body,
            state,
            next_attempt,
            tuple(self.attempts(queue_id)),
            note if isinstance(note, dict) else ({"reason": "held"} if state == "hold" else None),
            close=body.close,
        )

    def show(self, queue_id: str) -> dict[str, Any] | None:
        """Everything known about one message: envelope, state, attempts, hold reason."""
        state = self.state_of(queue_id)
        if state is None:
            return None
        path = self.path(state, queue_id)
        info: dict[str, Any] = {"queue_id": queue_id, "state": state}
        try:
            info["envelope"] = read_envelope(path, queue_id)
            if state == "queue":
                info["next_attempt"] = path.stat().st_mtime
        except (OSError, CorruptRecord) as error:
            info["error"] = str(error)
        info["attempts"] = self.attempts(queue_id)
        if state == "hold":
            note = read_json(self.dir("hold") / f"{queue_id}.reason.json")
            if isinstance(note, dict):
                info["hold"] = note
        return info

    def requeue(self, queue_id: str) -> bool:
        """Make a queued or held message due now (`queue retry` / `queue release`)."""
        state = self.state_of(queue_id)
        if state not in ("queue", "hold"):
            return False
        path = self.path(state, queue_id)
        now = time.time()
        try:
            os.utime(path, (now, now))
            if state == "hold":
                os.replace(path, self.path("queue", queue_id))
                (self.dir("hold") / f"{queue_id}.reason.json").unlink(missing_ok=True)
        except FileNotFoundError:
            return False
        return True

    def delete(self, queue_id: str) -> bool:
        """Remove a queued, held or corrupt message for good (never one being delivered)."""
        for state in ("queue", "hold", "corrupt"):
            try:
                self.path(state, queue_id).unlink()
            except FileNotFoundError:
                continue
            (self.dir("hold") / f"{queue_id}.reason.json").unlink(missing_ok=True)
            self._meta(queue_id).unlink(missing_ok=True)
            return True
        return False

    # -- resource checks ---------------------------------------------------------------------

    def count(self, state: str) -> int:
        """How many messages are in one state."""
        with os.scandir(self.dir(state)) as entries:
            return sum(1 for entry in entries if entry.name.endswith(SUFFIX))

    def census(self) -> dict[str, object]:
        """Messages per state and the age of the oldest one waiting (queue or active)."""
        states: dict[str, int] = {}
        oldest = ""
        for state in STATES:
            count = 0
            with os.scandir(self.dir(state)) as entries:
                for entry in entries:
                    if entry.name.endswith(SUFFIX):
                        count += 1
                        name = entry.name[: -len(SUFFIX)]
                        waiting = state in ("queue", "active") and is_queue_id(name)
                        if waiting and (not oldest or name < oldest):
                            oldest = name
            states[state] = count
        born = queued_at(oldest) if oldest else None
        return {"states": states, "oldest_age": max(0.0, time.time() - born) if born else 0.0}
