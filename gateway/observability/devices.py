"""Which devices send mail, and which went quiet: one record per client address and AUTH user.

The SMTP side reports every accepted message and every refusal, delivery every failed
attempt (matched to the device by queue ID). A record keeps the client rule's name, first and
last seen, messages accepted per day (two weeks), the last refusal and its reason, and the
last delivery failure. A device that sent on at least `REGULAR_DAYS` of the last seven days
and has accepted nothing for `silent_after` is flagged silent (the console shows it, and
`smtp_graph_gateway_devices_silent` counts them, so an alert can fire).

Kept across restarts in a JSON file (written atomically, at most every `SAVE_DELAY` seconds
after a change, and at shutdown). The clock is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from gateway.delivery.events import DeliveryEvent

log = structlog.get_logger("gateway")

DAYS_KEPT = 14
REGULAR_DAYS = 3  # sending days in the last week that make a device "regular"
SAVE_DELAY = 30.0
_MAX_DEVICES = 10_000
_MAX_TRACKED_MESSAGES = 100_000


class DeviceRecorder(Protocol):
    """What the SMTP side tells about devices (a `DeviceRegistry`, or nothing)."""

    def accepted(self, address: str, user: str, client: str, queue_id: str) -> None: ...

    def refused(self, address: str, user: str, client: str, reason: str, reply: int) -> None: ...


class _NoDevices:
    """Keeps nothing (no console, no registry)."""

    def accepted(self, address: str, user: str, client: str, queue_id: str) -> None:
        """Nothing to remember."""

    def refused(self, address: str, user: str, client: str, reason: str, reply: int) -> None:
        """Nothing to remember."""


NO_DEVICES: DeviceRecorder = _NoDevices()


@dataclass
class Device:
    """What is known about one sending address (and AUTH user)."""

    address: str
    user: str = ""
    client: str = ""  # the client rule that matched ("" when none did)
    first_seen: float = 0.0
    last_seen: float = 0.0
    last_accepted: float = 0.0
    days: dict[str, int] = field(default_factory=dict)  # "YYYY-MM-DD" (UTC) -> accepted
    last_refusal: dict[str, Any] | None = None  # {at, reason, reply}
    last_failure: dict[str, Any] | None = None  # {at, reason, code, queue_id}

    @property
    def key(self) -> str:
        return f"{self.address}|{self.user}"


def _day(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).date().isoformat()


class DeviceRegistry:
    """Devices by address and user, fed by the SMTP handler and the delivery engine."""

    def __init__(
        self,
        path: Path | None,
        *,
        silent_after: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._silent_after = silent_after
        self._clock = clock
        self._devices: dict[str, Device] = {}
        self._messages: OrderedDict[str, str] = OrderedDict()  # queue ID -> device key
        self._save: asyncio.TimerHandle | None = None
        self._writing = threading.Lock()

    # -- what happens --------------------------------------------------------------------------

    def _device(self, address: str, user: str, client: str) -> Device:
        now = self._clock()
        key = f"{address}|{user}"
        device = self._devices.get(key)
        if device is None:
            if len(self._devices) >= _MAX_DEVICES:  # forget the longest unseen
                oldest = min(self._devices.values(), key=lambda d: d.last_seen)
                del self._devices[oldest.key]
            device = Device(address, user, client, first_seen=now)
            self._devices[key] = device
        device.last_seen = now
        if client:
            device.client = client
        self._changed()
        return device

    def accepted(self, address: str, user: str, client: str, queue_id: str) -> None:
        """A message from this device was queued."""
        device = self._device(address, user, client)
        device.last_accepted = device.last_seen
        today = _day(device.last_seen)
        device.days[today] = device.days.get(today, 0) + 1
        for day in sorted(device.days)[:-DAYS_KEPT]:
            del device.days[day]
        self._messages[queue_id] = device.key
        while len(self._messages) > _MAX_TRACKED_MESSAGES:
            self._messages.popitem(last=False)

    def refused(self, address: str, user: str, client: str, reason: str, reply: int) -> None:
        """Something from this device was refused (connection, login, sender, recipient …)."""
        device = self._device(address, user, client)
        device.last_refusal = {"at": device.last_seen, "reason": reason, "reply": reply}

    def delivery(self, event: DeliveryEvent) -> None:
        """A delivery attempt ended: a failure is remembered on the device that sent it."""
        if event.result == "delivered":
            self._messages.pop(event.queue_id, None)
            return
        device = self._devices.get(self._messages.get(event.queue_id, ""))
        if device is None:
            return
        device.last_failure = {
            "at": self._clock(),
            "result": event.result,
            "reason": event.reason,
            "code": event.code,
            "status": event.status,
            "queue_id": event.queue_id,
        }
        if event.result == "held":
            self._messages.pop(event.queue_id, None)
        self._changed()

    # -- reading -------------------------------------------------------------------------------

    def silent(self, device: Device, now: float | None = None) -> bool:
        """Whether a device that sent regularly has been quiet for `silent_after`."""
        now = self._clock() if now is None else now
        if not device.last_accepted or now - device.last_accepted < self._silent_after:
            return False
        week = {_day(device.last_accepted - days * 86400) for days in range(7)}
        return sum(1 for day in week if device.days.get(day)) >= REGULAR_DAYS

    def silent_count(self) -> int:
        now = self._clock()
        return sum(1 for device in self._devices.values() if self.silent(device, now))

    def listing(self) -> list[dict[str, Any]]:
        """Every device, the silent ones first, then the most recently seen."""
        now = self._clock()
        today = _day(now)
        week = {_day(now - days * 86400) for days in range(7)}
        rows = []
        for device in self._devices.values():
            row = asdict(device)
            del row["days"]
            row["today"] = device.days.get(today, 0)
            row["week"] = sum(count for day, count in device.days.items() if day in week)
            row["silent"] = self.silent(device, now)
            rows.append(row)
        rows.sort(key=lambda row: (not row["silent"], -row["last_seen"]))
        return rows

    # -- keeping it across restarts ------------------------------------------------------------

    def load(self) -> None:
        """Read the saved devices (a missing file is an empty registry; a broken one is
        logged and set aside)."""
        if self._path is None:
            return
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            devices = [Device(**item) for item in data["devices"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning(
                "devices_unreadable",
                path=str(self._path),
                error=type(error).__name__,
                action="the device list starts empty; the file was kept as .broken",
            )
            with contextlib.suppress(OSError):
                self._path.replace(self._path.with_suffix(".broken"))
            return
        self._devices = {device.key: device for device in devices}

    def _document(self) -> str:
        """The devices as JSON (made on the event loop, which alone changes them)."""
        return json.dumps({"devices": [asdict(device) for device in self._devices.values()]})

    def _write(self, text: str) -> None:
        """Replace the file atomically (blocking)."""
        assert self._path is not None
        temporary = self._path.with_suffix(".tmp")
        with self._writing:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                temporary.write_text(text, encoding="utf-8")
                temporary.replace(self._path)
            except OSError as error:
                log.warning("devices_not_saved", path=str(self._path), error=error.strerror)

    def _changed(self) -> None:
        """Save a while after a change (many changes, one write)."""
        if self._path is None or self._save is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._save = loop.call_later(SAVE_DELAY, self._save_soon, loop)

    def _save_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._save = None
        loop.run_in_executor(None, self._write, self._document())

    def close(self) -> None:
        """Save now (at shutdown; blocking)."""
        if self._save is not None:
            self._save.cancel()
            self._save = None
        if self._path is not None:
            self._write(self._document())
