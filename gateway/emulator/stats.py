"""Counters a test or an operator reads to see how a client treated the emulated service.

Token requests (also by grant type), Graph requests by status, every Graph request in order,
and, per mailbox, the highest number of Graph requests that were in flight at once: Graph allows
4 concurrent requests per app and mailbox, so `max_concurrency_by_mailbox` shows whether a client
respects that (`max_concurrency`: the same over all mailboxes together). For the SMTP
listener: connections, AUTH successes and failures, messages taken. Requests to the managed
identity endpoints, and the federated assertions accepted (issuer, subject and `jti`: which
token a client presented, never the token).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class FederatedUse(NamedTuple):
    """A federated client assertion the token endpoint accepted."""

    client_id: str
    issuer: str
    subject: str
    jti: str


class RequestRecord(NamedTuple):
    """One Graph (or upload URL) request: when, what, for which mailbox, and the answer."""

    time: float
    method: str
    path: str
    mailbox: str | None
    status: int


@dataclass
class EmulatorStats:
    token_requests: int = 0
    token_requests_by_grant: dict[str, int] = field(default_factory=dict)
    graph_requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    max_concurrency_by_mailbox: dict[str, int] = field(default_factory=dict)
    max_concurrency: int = 0
    requests: list[RequestRecord] = field(default_factory=list)
    smtp_connections: int = 0
    smtp_auth_successes: int = 0
    smtp_auth_failures: int = 0
    smtp_messages: int = 0
    managed_identity_requests: int = 0
    federated_assertions: list[FederatedUse] = field(default_factory=list)
    _in_flight: Counter[str] = field(default_factory=Counter, repr=False)

    def enter(self, mailbox: str | None) -> int:
        """Count a request as in flight; returns how many are in flight for its mailbox."""
        if mailbox is None:
            return 1
        self._in_flight[mailbox] += 1
        self.max_concurrency = max(self.max_concurrency, self._in_flight.total())
        current = self._in_flight[mailbox]
        if current > self.max_concurrency_by_mailbox.get(mailbox, 0):
            self.max_concurrency_by_mailbox[mailbox] = current
        return current

    def leave(self, mailbox: str | None) -> None:
        if mailbox is not None:
            self._in_flight[mailbox] -= 1
            if self._in_flight[mailbox] <= 0:
                del self._in_flight[mailbox]

    def record(self, record: RequestRecord) -> None:
        self.graph_requests += 1
        self.by_status[record.status] = self.by_status.get(record.status, 0) + 1
        self.requests.append(record)

    def in_flight(self, mailbox: str) -> int:
        return self._in_flight.get(mailbox, 0)

    def clear(self) -> None:
        """Forget history; requests still in flight stay counted so `leave` stays balanced."""
        self.token_requests = 0
        self.token_requests_by_grant.clear()
        self.graph_requests = 0
        self.by_status.clear()
        self.max_concurrency_by_mailbox.clear()
        self.max_concurrency = 0
        self.requests.clear()
        self.smtp_connections = self.smtp_auth_successes = 0
        self.smtp_auth_failures = self.smtp_messages = 0
        self.managed_identity_requests = 0
        self.federated_assertions.clear()

    def count_token_request(self, grant_type: str | None) -> None:
        self.token_requests += 1
        key = grant_type or "(none)"
        self.token_requests_by_grant[key] = self.token_requests_by_grant.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "token_requests_by_grant": dict(self.token_requests_by_grant),
            "graph_requests": self.graph_requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "max_concurrency_by_mailbox": dict(self.max_concurrency_by_mailbox),
            "requests": [r._asdict() for r in self.requests],
            "smtp_connections": self.smtp_connections,
            "smtp_auth_successes": self.smtp_auth_successes,
            "smtp_auth_failures": self.smtp_auth_failures,
            "smtp_messages": self.smtp_messages,
            "managed_identity_requests": self.managed_identity_requests,
            "federated_assertions": [use._asdict() for use in self.federated_assertions],
        }
