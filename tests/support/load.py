"""An SMTP load of uniquely numbered messages whose 250 answers are recorded, for crash tests."""

from __future__ import annotations

import smtplib
import threading
from dataclasses import dataclass, field


def load_message(message_id: str, sender: str = "scanner@contoso.com") -> bytes:
    return (
        f"From: Load <{sender}>\r\nTo: alice@contoso.com\r\nSubject: load {message_id}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nbody of {message_id}\r\n"
    ).encode()


@dataclass
class Load:
    """Senders that keep submitting until told to stop or the server goes away."""

    port: int
    prefix: str
    senders: int = 8
    per_sender: int = 100
    acknowledged: list[str] = field(default_factory=list)
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run_sender(self, number: int) -> None:
        """One session per message, like most devices; record every Message-ID answered 250."""
        for index in range(self.per_sender):
            if self.stop.is_set():
                return
            message_id = f"{self.prefix}-{number}-{index}@load.test"
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.sendmail(
                        "scanner@contoso.com", ["alice@contoso.com"], load_message(message_id)
                    )
            except (OSError, smtplib.SMTPException):
                with self._lock:
                    self.failures += 1
                return  # the server went away (killed): this sender is done
            with self._lock:
                self.acknowledged.append(message_id)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.run_sender, args=(n,), daemon=True)
            for n in range(self.senders)
        ]
        for thread in threads:
            thread.start()
        return threads
