"""The systemd notify protocol (sd_notify), without a library: READY, RELOADING, STOPPING,
STATUS and watchdog pings, sent as datagrams to `$NOTIFY_SOCKET`. A no-op outside systemd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time


class Notifier:
    """Talks to the service manager named by the environment (if any)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        wanted = watchdog_pid is None or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdigit() and wanted else 0.0

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self._address)

    def send(self, **fields: str | int) -> None:
        """Send `KEY=value` lines, e.g. `send(READY=1, STATUS="serving")`. Never raises."""
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, self._address)

    def reloading(self) -> None:
        """RELOADING=1 with the monotonic timestamp systemd 253+ expects."""
        self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    async def watchdog(self) -> None:
        """Ping the watchdog at half its interval while the event loop is healthy."""
        if not self.watchdog_interval:
            return
        while True:
            self.send(WATCHDOG=1)
            await asyncio.sleep(self.watchdog_interval)
