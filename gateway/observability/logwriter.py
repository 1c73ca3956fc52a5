"""Log lines leave the caller at once; one thread writes them to the real stream.

A blocked stderr must not stop the gateway taking and delivering mail. That happens when
journald is stuck, a pipe has no reader, a terminal is paused, or a container's log driver
falls behind. A blocking write on the event loop would stall every SMTP session. So `write`
only appends to a bounded buffer, and a thread writes whatever has gathered in one go. That is
also one system call for many lines under load.

When the buffer is full, further lines are counted and dropped. Once the stream takes lines
again, one line says how many were lost. `drain` waits until what was written so far has
reached the stream (for an exit, and for tests that read their log). `close` drains for a
bounded time, because a stuck stream must not hold up an exit for ever.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TextIO

CAPACITY = 10_000  # lines: at ~300 bytes each about 3 MB held at worst


class LogWriter:
    """A file-like object for loggers: `write` never blocks on the stream."""

    def __init__(
        self, stream: TextIO, notice: Callable[[int], str], *, capacity: int = CAPACITY
    ) -> None:
        self.stream = stream
        self._notice = notice
        self._capacity = capacity
        self._lines: deque[str] = deque()
        self._partial = ""
        self._dropped = 0
        self._busy = False
        self._closing = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        """Queue `text` for the stream; drop it (and count it) if the buffer is full.

        Text up to a newline is one line: a line written in pieces (`print` writes the newline
        on its own) is kept or dropped whole, never cut.
        """
        with self._condition:
            if not text.endswith("\n"):
                self._partial += text
                return len(text)
            line, self._partial = self._partial + text, ""
            if len(self._lines) >= self._capacity:
                self._dropped += 1
            else:
                self._lines.append(line)
                self._condition.notify_all()
        return len(text)

    def flush(self) -> None:
        """Nothing to do: the writer thread flushes after every batch."""

    def isatty(self) -> bool:
        """Whether the real stream is a terminal (for readable output)."""
        return self.stream.isatty()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every line written so far has reached the stream; False on timeout."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._lines and not self._busy and not self._dropped, timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        """Write what is buffered (waiting at most `timeout`), then stop the thread."""
        self.drain(timeout)
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._lines or self._dropped or self._closing)
                if self._closing and not self._lines and not self._dropped:
                    return
                batch = "".join(self._lines)
                self._lines.clear()
                dropped, self._dropped = self._dropped, 0
                self._busy = True
            if dropped:
                batch += self._notice(dropped)
            try:
                self.stream.write(batch)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # the stream is closed or broken: there is nowhere to say so
            with self._condition:
                self._busy = False
                self._condition.notify_all()
